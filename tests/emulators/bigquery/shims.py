"""Every patch bqemulator 1.4.0 needs before it can serve this project's clients.

Why one file: each function below closes one measured gap between the emulator and
real BigQuery, so the product code (flows/, transform/, checks/) stays written for
real BigQuery. Each docstring quotes the error the gap caused. Runs inside the
emulator's own environment (tests/emulators/bigquery/.venv), never the project's.
"""

from __future__ import annotations

import functools
import re
import traceback
from typing import Any


def apply_all(project: str, token: str | None) -> None:
    """Apply every shim; call before the server is built.

    ``project`` is the only project that exists; ``token``, when given, the only access
    token accepted (as BigQuery accepts only valid tokens).
    """
    one_project_and_one_token(project, token)
    optional_spatial_extension()
    translation_crashes_are_bad_requests()
    synchronous_queries_like_bigquery()
    information_schema_in_any_quoting()
    json_columns_stay_json()
    same_named_tables_keep_their_columns()
    create_table_copy()


def optional_spatial_extension() -> None:
    """Start without DuckDB's spatial extension (only GEOGRAPHY needs it).

    Avoids, offline: ``InternalError: DuckDB spatial extension is required for
    bqemulator (GEOGRAPHY support). INSTALL/LOAD spatial failed`` (``INSTALL spatial``
    is a download from extensions.duckdb.org). Loads it only when already installed.
    """
    from bqemulator.storage.engine import DuckDBEngine

    def load_spatial_if_present(self: DuckDBEngine) -> None:
        try:
            self.connection.execute("LOAD spatial")
        except Exception:  # GEOGRAPHY queries then fail, nothing else does
            return

    DuckDBEngine._load_spatial = load_spatial_if_present  # type: ignore[method-assign]


def translation_crashes_are_bad_requests() -> None:
    """An unexpected exception while translating or running SQL is a 400, not a 500.

    Avoids a retry storm: the emulator answers ``500 internalError: An internal
    error occurred`` for SQL its translator crashes on, and google-cloud-bigquery,
    dlt and dbt retry a 5xx until their deadline (minutes). BigQuery itself answers
    such SQL with ``400 invalidQuery``, which the clients raise at once.
    """
    from bqemulator.api.routes import jobs
    from bqemulator.domain.errors import DomainError, InvalidQueryError
    from bqemulator.jobs import executor

    original = executor.execute_query_job

    @functools.wraps(original)
    async def execute_query_job(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except DomainError:
            raise
        except Exception as exc:  # reported to the client, with its text
            traceback.print_exc()  # into the emulator's log, for whoever fixes the next gap
            raise InvalidQueryError(f"emulator could not run this SQL: {type(exc).__name__}: {exc}") from exc

    executor.execute_query_job = execute_query_job
    jobs.execute_query_job = execute_query_job  # the routes imported it by name


def synchronous_queries_like_bigquery() -> None:
    """``jobs.query`` (POST /projects/P/queries) honours ``defaultDataset`` and fails loudly.

    Avoids two silent wrong answers from google-cloud-bigquery's ``query_and_wait``
    (dlt's state and schema reads, Soda's metadata queries): (1) the endpoint ignores
    ``defaultDataset``, so ``select ... from _dlt_version`` fails with ``Not found:
    Table _dlt_version was not found``; (2) that failure, like every SQL error, comes
    back as HTTP 200 with ``rows: []`` and an ``errors`` list the client never reads,
    so the caller sees an empty result (dlt: "no stored state", a full reload). Real
    BigQuery answers an HTTP error (400 invalidQuery, 404 notFound, ...).
    """
    from bqemulator.api.routes import jobs
    from bqemulator.domain.errors import (
        AlreadyExistsError,
        InvalidQueryError,
        NotFoundError,
        PermissionDeniedError,
    )

    by_reason = {
        NotFoundError.bq_reason: NotFoundError,
        AlreadyExistsError.bq_reason: AlreadyExistsError,
        PermissionDeniedError.bq_reason: PermissionDeniedError,
    }
    path = "/projects/{project_id}/queries"
    route = next(r for r in jobs.router.routes if r.path == jobs.router.prefix + path and "POST" in r.methods)
    original = route.endpoint

    @functools.wraps(original)
    async def query(project_id: str, request: Any, ctx: Any, caller: Any) -> Any:
        body = await request.json()  # Starlette caches it: the original reads this same dict
        if isinstance(body, dict) and isinstance(body.get("query"), str):
            body["query"] = jobs._apply_default_dataset(body["query"], body, request_project_id=project_id)
        response = await original(project_id, request, ctx, caller)
        errors = response.get("errors") if isinstance(response, dict) else None
        if errors:
            first = errors[0]
            kind = by_reason.get(first.get("reason"), InvalidQueryError)
            raise kind(first.get("message", "query failed"), location=first.get("location"))
        return response

    jobs.router.routes.remove(route)
    jobs.router.add_api_route(path, query, methods=["POST"])


# A dotted name, each part bare or in backticks, that reads INFORMATION_SCHEMA somewhere.
_NAME_PART = r"(?:`[^`]+`|[A-Za-z0-9_\-]+)"
_DOTTED_NAME = re.compile(rf"{_NAME_PART}(?:\s*\.\s*{_NAME_PART})*")


def _plain_information_schema(sql: str) -> str:
    """Spell every ``INFORMATION_SCHEMA`` reference as `` `project`.`dataset`.INFORMATION_SCHEMA.VIEW ``."""

    def plain(match: re.Match[str]) -> str:
        text = match.group(0)
        if "INFORMATION_SCHEMA" not in text.upper():
            return text
        parts = [part for quoted in re.split(r"\s*\.\s*", text) for part in quoted.strip("`").split(".")]
        upper = [part.upper() for part in parts]
        if "INFORMATION_SCHEMA" not in upper:
            return text
        at = upper.index("INFORMATION_SCHEMA")
        prefix = ".".join(f"`{part}`" for part in parts[:at])
        rest = ".".join(["INFORMATION_SCHEMA", *parts[at + 1 :]])
        return f"{prefix}.{rest}" if prefix else rest

    return _DOTTED_NAME.sub(plain, sql)


def information_schema_in_any_quoting() -> None:
    """``INFORMATION_SCHEMA`` views are found however the name is quoted.

    The emulator recognises `` `p`.`d`.INFORMATION_SCHEMA.COLUMNS `` only. dlt's queries
    carry a default dataset, which the emulator applies by re-rendering the SQL as
    `` `p`.`d`.`INFORMATION_SCHEMA.COLUMNS` ``; Soda writes
    `` `p`.`d`.`INFORMATION_SCHEMA`.`COLUMNS` ``. The view is then half replaced and
    the query fails: ``TokenError: Error tokenizing '(?, ?, ?, ?) ORDER BY table_name,
    ordinal_positio'`` (``Missing ` from 1:86``), or reads an empty view.
    """
    from bqemulator.sql import inner_query

    original = inner_query.expand_information_schema

    @functools.wraps(original)
    def expand_information_schema(bq_sql: str, *args: Any, **kwargs: Any) -> str:
        if "INFORMATION_SCHEMA" in bq_sql.upper():
            bq_sql = _plain_information_schema(bq_sql)
        return original(bq_sql, *args, **kwargs)

    inner_query.expand_information_schema = expand_information_schema


def json_columns_stay_json() -> None:
    """A ``JSON`` column created by SQL (dlt's ``CREATE TABLE``, dbt's CTAS) is catalogued as JSON.

    The emulator rebuilds a created table's schema from DuckDB's Arrow export, where JSON
    is plain text, so ``tables.get`` and ``INFORMATION_SCHEMA.COLUMNS`` report ``STRING``
    and Soda's schema check fails: ``type mismatches: metadata expected json got string``.
    BigQuery reports ``JSON``. DuckDB itself still knows: its column type is ``JSON``.
    """
    from bqemulator.catalog import ddl_sync

    original = ddl_sync._introspect_schema

    @functools.wraps(original)
    def introspect_schema(project_id: str, dataset_id: str, table_id: str, ctx: Any) -> Any:
        schema = original(project_id, dataset_id, table_id, ctx)
        target = ddl_sync.quoted_table_ref(project_id, dataset_id, table_id)
        duckdb_types = {
            row[0]: str(row[1]).upper() for row in ctx.engine.execute(f"DESCRIBE {target}").fetchall()
        }
        fields = tuple(
            field.model_copy(update={"type": "JSON"})
            if field.type == "STRING" and duckdb_types.get(field.name) == "JSON"
            else field
            for field in schema.fields
        )
        return schema.model_copy(update={"fields": fields})

    ddl_sync._introspect_schema = introspect_schema


def same_named_tables_keep_their_columns() -> None:
    """Two tables of one name in different datasets keep their own columns in one query.

    The translator types columns from a schema keyed by bare table name, so in a query
    reading ``raw_shop.customers`` and ``raw_stripe.customers`` (dbt's relationships test
    between two staging views, which the emulator inlines) one table's columns are given
    to the other and ``select *`` expands to columns it lacks: ``Binder Error: Table
    "customers" does not have a column named "first_name"``. An ambiguous name is left
    out of the schema, so the translator does not type it (as for any unknown table).
    """
    import sqlglot
    from bqemulator.sql import catalog_schema, inner_query

    original = inner_query.build_catalog_schema

    @functools.wraps(original)
    def build_catalog_schema(bq_sql: str, *, project_id: str, catalog: Any) -> dict[str, dict[str, str]]:
        schema = original(bq_sql, project_id=project_id, catalog=catalog)
        if not schema:
            return schema
        try:
            tree = sqlglot.parse_one(bq_sql, read="bigquery")
        except sqlglot.errors.SqlglotError:
            return {}
        homes: dict[str, set[tuple[str, str, str]]] = {}
        for table in tree.find_all(sqlglot.exp.Table):
            resolved = catalog_schema._resolve_table_ref(table, project_id=project_id)
            if resolved is not None:
                homes.setdefault(resolved[2], set()).add(resolved)
        return {name: columns for name, columns in schema.items() if len(homes.get(name, ())) <= 1}

    inner_query.build_catalog_schema = build_catalog_schema


_CREATE_TABLE_COPY = re.compile(
    r"^(?P<comments>(?:\s*/\*.*?\*/)*)\s*create\s+(?:or\s+replace\s+)?table\s+(?P<target>[^\s(]+)"
    r"\s+(?:copy|clone)\s+(?P<source>[^\s;]+)\s*;?\s*$",
    flags=re.IGNORECASE | re.DOTALL,
)


def create_table_copy() -> None:
    """``CREATE OR REPLACE TABLE a COPY b`` (and ``CLONE``) run, as a full copy of ``b``.

    The publish step of write-audit-publish (transform/macros/publish_marts.sql, bigquery)
    replaces each published mart by an atomic table copy; the emulator's parser has no
    such statement: ``Query execution failed: Parser Error: syntax error at or near "COPY"``.
    """
    from bqemulator.api.routes import jobs
    from bqemulator.jobs import executor

    original = executor.execute_query_job

    @functools.wraps(original)
    async def execute_query_job(project_id: str, job_id: str, bq_sql: str, *args: Any, **kwargs: Any) -> Any:
        copy = _CREATE_TABLE_COPY.match(bq_sql)
        if copy:
            replace = f"CREATE OR REPLACE TABLE {copy['target']} AS SELECT * FROM {copy['source']}"
            bq_sql = f"{copy['comments']}\n{replace}"
        return await original(project_id, job_id, bq_sql, *args, **kwargs)

    executor.execute_query_job = execute_query_job
    jobs.execute_query_job = execute_query_job


def one_project_and_one_token(project: str, token: str | None) -> None:
    """Unknown projects are 404 and wrong access tokens 401, as on BigQuery.

    The emulator serves any project id and ignores the ``Authorization`` header, so a
    misconfigured project or a revoked token would pass every test. BigQuery answers
    ``404 Not found: Project <id>`` and ``401 Request had invalid authentication
    credentials``; the clients do not retry either.
    """
    from bqemulator import server
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    project_path = re.compile(r"^(?:/upload)?/bigquery/v2/projects/(?P<project>[^/]+)")
    original = server.create_app

    def error(code: int, status: str, reason: str, message: str) -> JSONResponse:
        body = {"code": code, "message": message, "errors": [{"reason": reason, "message": message}]}
        return JSONResponse(status_code=code, content={"error": body | {"status": status}})

    @functools.wraps(original)
    def create_app(context: Any) -> Any:
        app = original(context)

        @app.middleware("http")
        async def check_project_and_token(request: Request, call_next: Any) -> Any:
            match = project_path.match(request.url.path)
            if match is None:
                return await call_next(request)
            if token is not None and request.headers.get("authorization") != f"Bearer {token}":
                return error(
                    401,
                    "UNAUTHENTICATED",
                    "unauthorized",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                )
            if match["project"] != project:
                return error(404, "NOT_FOUND", "notFound", f"Not found: Project {match['project']}")
            return await call_next(request)

        return app

    server.create_app = create_app
