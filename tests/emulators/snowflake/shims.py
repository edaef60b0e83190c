"""Every gap of the Snowflake emulator (fakesnow 0.12.1 in server mode), patched in one place.

Why here and nowhere else: the product (flows/, transform/, checks/) must run unchanged
on real Snowflake, so nothing there may know about the emulator. Each gap below was
seen as an error on this machine; its comment quotes the error it avoids. Two kinds:

* server-side patches, applied by ``apply()`` in the emulator's process before it
  serves (the test process never imports fakesnow);
* ``CLIENT_SETTINGS``: generic product settings (environment variables the product
  reads anyway) whose emulator values the test fixture sets.

Pinned to fakesnow==0.12.1: the patches wrap its internals, so a new version must be
re-checked against this file (``check_version`` refuses any other version).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

FAKESNOW_VERSION = "0.12.1"

# --- client side: product settings with their emulator values -----------------------------------------
CLIENT_SETTINGS: dict[str, str] = {
    # dlt sends a job's statements joined by ';' when the destination supports multiple
    # statements; the emulator parses one statement per request: "SchemaUpdateTransientError:
    # dlt cannot update tables [...] Cause: 001003 (42000): Parser Error: syntax error at or
    # near "CREATE"" (flows/warehouses/snowflake.py reads this as dlt's
    # supports_multiple_statements).
    "ELT_SNOWFLAKE_MULTIPLE_STATEMENTS": "false",
    # dbt retries a failed login once by default; against a local emulator a failure is final.
    "ELT_SNOWFLAKE_CONNECT_RETRIES": "0",
}
# Connector timeouts, as options of dlt's connection string (flows/warehouses/snowflake.py
# hands the same values to dbt and Soda). A statement the emulator can't run used to be an HTTP 500 that
# the connector retried for minutes; _rewrite_statements_and_errors answers it as a SQL
# error now, and these bound whatever else might hang (an unreachable host, a stuck server).
LOGIN_TIMEOUT_S = 10
NETWORK_TIMEOUT_S = 60


def check_version() -> None:
    from importlib.metadata import version

    found = version("fakesnow")
    if found != FAKESNOW_VERSION:
        raise RuntimeError(
            f"tests/emulators/snowflake/shims.py patches fakesnow {FAKESNOW_VERSION}, found {found}: "
            "re-check every shim before changing the pin"
        )


def apply(expected_user: str, expected_password: str, public_key_pem: bytes | None) -> None:
    """Patch fakesnow in this process; call before ``import fakesnow.server``."""
    check_version()
    _keep_null_timestamps()
    _columns_view_with_datetime_precision()
    _merge_runs_in_duckdb()
    _put_to_quoted_stage_names()
    _to_timestamp_tz_keeps_its_type()
    import fakesnow.server

    _rewrite_statements_and_errors(fakesnow.server)
    _check_logins(fakesnow.server, expected_user, expected_password, public_key_pem)


# --- gap: NULL timestamps ----------------------------------------------------------------------------
def _keep_null_timestamps() -> None:
    """NULL TIMESTAMP_NTZ/_TZ values come back as datetime(1970, 1, 1, 0, 0) in server mode
    (seen: `insert into t values (null, null); select * from t`): the arrow struct carrying
    epoch/fraction is built without the column's null mask. dlt would read a 1970 cursor
    and Soda count no missing values."""
    import fakesnow.arrow
    import pyarrow as pa
    import pyarrow.compute as pc

    original = fakesnow.arrow.timestamp_to_sf_struct

    def timestamp_to_sf_struct(ts: Any) -> Any:
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        struct = original(ts)
        if ts.null_count == 0:
            return struct
        return pa.StructArray.from_arrays(
            [struct.field(i) for i in range(struct.type.num_fields)],
            fields=list(struct.type),
            mask=pc.is_null(ts),
        )

    fakesnow.arrow.timestamp_to_sf_struct = timestamp_to_sf_struct


# --- gap: INFORMATION_SCHEMA.COLUMNS without DATETIME_PRECISION ----------------------------------------
def _columns_view_with_datetime_precision() -> None:
    """Soda's schema check reads DATETIME_PRECISION: "002043 (02000): Binder Error: Referenced
    column "DATETIME_PRECISION" not found in FROM clause!" and the check ends NOT_EVALUATED.
    Real Snowflake reports 9 for every timestamp type."""
    import fakesnow.info_schema as info_schema

    view = info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW
    anchor = "case when columns.data_type='DOUBLE' then NULL else columns.numeric_scale end as NUMERIC_SCALE,"
    assert anchor in view, "fakesnow's columns view changed"
    info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW = view.replace(
        anchor,
        anchor + "\ncase when starts_with(columns.data_type, 'TIMESTAMP') then 9 end as DATETIME_PRECISION,",
    )


# --- gaps: MERGE (dbt's unqualified VALUES; MERGE inside BEGIN ... COMMIT) -----------------------------
def _merge_runs_in_duckdb() -> None:
    """fakesnow splits a MERGE into a TEMPORARY candidates table plus DELETE/UPDATE/INSERT,
    which breaks twice:

    1. dbt writes ``when not matched then insert ("ID", ...) values ("ID", ...)`` with bare
       column names, which fakesnow selects from a join of target and source: "Binder Error:
       Ambiguous reference to column name "ID"".
    2. The candidates table lives in DuckDB's ``temp`` catalog; inside BEGIN ... COMMIT (dbt's
       snapshots and incremental models) DuckDB refuses "Attempting to write to database X in
       a transaction that has already modified database temp".

    DuckDB (>= 1.4) runs MERGE INTO itself, with Snowflake's semantics for both; hand it the
    statement whole. Only the result differs: one "Count" column instead of Snowflake's
    per-operation counts (dbt reads the cursor's row count; dlt does not use MERGE).
    """
    import fakesnow.transforms as transforms
    from sqlglot import exp

    original = transforms.merge

    def merge(expression: Any) -> list[Any]:
        return [expression] if isinstance(expression, exp.Merge) else original(expression)

    transforms.merge = merge

    # The server describes each result by running "DESCRIBE <statement>", which DuckDB can't
    # parse for a MERGE: "Parser Error: syntax error at or near "INTO"". Describe it directly.
    from fakesnow.cursor import FakeSnowflakeCursor

    describe = FakeSnowflakeCursor._describe_last_sql

    def describe_last_sql(self: Any) -> list:
        if isinstance(self._last_transformed, exp.Merge):
            return [("number of rows affected", "BIGINT", "YES", None, None, None)]
        return describe(self)

    FakeSnowflakeCursor._describe_last_sql = describe_last_sql


# --- gap: TO_TIMESTAMP_TZ(<unix seconds>, <scale>) returns TIMESTAMP_NTZ ---------------------------------
def _to_timestamp_tz_keeps_its_type() -> None:
    """fakesnow turns every numeric TO_TIMESTAMP*(n, scale) into its NTZ function, so
    transform/macros/unix_to_timestamp.sql's ``to_timestamp_tz(created, 0)`` built a
    TIMESTAMP_NTZ column and the mart contract failed: "type mismatches: OCCURRED_AT expected
    timestamp_tz got timestamp_ntz(9)". Cast the result to the type Snowflake returns."""
    import fakesnow.transforms as transforms
    from sqlglot import exp

    original = transforms.to_timestamp
    zoned = (exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ)

    def to_timestamp(expression: Any) -> Any:
        target = expression.args.get("target_type") if isinstance(expression, exp.UnixToTime) else None
        result = original(expression)
        if isinstance(target, exp.DataType) and target.this in zoned and result is not expression:
            return exp.Cast(this=result, to=exp.DataType.build("TIMESTAMPTZ"))
        return result

    transforms.to_timestamp = to_timestamp


# --- gap: PUT to a quoted stage name --------------------------------------------------------------------
def _put_to_quoted_stage_names() -> None:
    """dlt stages each file with ``PUT 'file://…' '@"SCHEMA"."%TABLE"/"load_id"'`` (the stage
    as a quoted string, legal in Snowflake); fakesnow reads the quotes as part of the name:
    "SQL compilation error: '@"RAW_EXP"."%_DLT_PIPELINE_STATE"/…' does not start with @"."""
    import fakesnow.transforms as transforms
    from sqlglot import exp

    original = transforms.put_stage

    def put_stage(expression: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(expression, exp.Put) and isinstance(target := expression.args.get("target"), exp.Var):
            text = target.name
            if len(text) > 1 and text[0] == text[-1] == "'":
                expression.set("target", exp.Var(this=text[1:-1]))
        return original(expression, *args, **kwargs)

    transforms.put_stage = put_stage


# --- gaps in statements the emulator can't parse or run at all ----------------------------------------
# (pattern, replacement) applied to each statement's text before fakesnow parses it.
_STATEMENT_REWRITES: list[tuple[re.Pattern[str], Any]] = [
    # dlt's COPY INTO says MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE' (quoted, legal in Snowflake):
    # "009999 (99999): MATCH_BY_COLUMN_NAME with param.expression.__class__=<class
    # 'sqlglot.expressions.core.Literal'> not implemented".
    (re.compile(r"MATCH_BY_COLUMN_NAME\s*=\s*'(\w+)'", re.IGNORECASE), r"MATCH_BY_COLUMN_NAME = \1"),
    # dlt separates FILE_FORMAT options with commas, e.g. (TYPE = 'PARQUET', BINARY_AS_TEXT = FALSE,
    # USE_LOGICAL_TYPE = TRUE) or (TYPE = 'JSON', BINARY_FORMAT = 'BASE64'); fakesnow's parser
    # turns each comma into a SequenceProperties node and answers HTTP 500 "AssertionError:
    # <class 'sqlglot.expressions.ddl.SequenceProperties'> is not a Property". Blanks are
    # equally valid separators in Snowflake.
    (
        re.compile(r"FILE_FORMAT\s*=\s*\(([^()]*)\)", re.IGNORECASE),
        lambda m: "FILE_FORMAT = (" + re.sub(r",\s*(?=\w+\s*=)", " ", m[1]) + ")",
    ),
    # Snowflake's DROP SCHEMA drops the schema's tables (CASCADE is its default); DuckDB's
    # default is RESTRICT: "Dependency Error: Cannot drop entry "X" because there are
    # entries that depend on it" (publish_marts drops the swapped-out schema).
    (
        re.compile(
            r"^(\s*(?:/\*.*?\*/\s*)*drop\s+schema\s+(?:if\s+exists\s+)?[\w.\"]+)\s*;?\s*(/\*.*?\*/)?\s*$",
            re.I | re.S,
        ),
        r"\1 cascade \2",
    ),
    # publish_marts clones each published mart (`create or replace table S.T clone A.T`);
    # fakesnow has no table CLONE. A copy holds the same rows, which is all a clone promises.
    (
        re.compile(
            r"^(\s*(?:/\*.*?\*/\s*)*create\s+or\s+replace\s+table\s+[\w.\"]+)\s+clone\s+([\w.\"]+)\s*;?\s*(/\*.*?\*/)?\s*$",
            re.I | re.S,
        ),
        r"\1 as select * from \2 \3",
    ),
    # dbt-snowflake creates session-scoped helpers fully qualified: its unit tests
    # `create or replace temporary table "DB"."SCHEMA"."X"`, its incremental models (merge
    # strategy) `create or replace temporary view DB.SCHEMA.X__dbt_tmp`. DuckDB keeps
    # temporary objects in its own catalog: "Parser Error: TEMPORARY table names can *only*
    # use the "temp" catalog". A transient table / plain view in that schema behaves the
    # same for dbt, which drops it when the node ends.
    (
        re.compile(
            r"^(\s*(?:/\*.*?\*/\s*)*create\s+(?:or\s+replace\s+)?)temporary(\s+table\s+(?:\"?\w+\"?\.){2})",
            re.IGNORECASE | re.DOTALL,
        ),
        r"\1transient\2",
    ),
    (
        re.compile(
            r"^(\s*(?:/\*.*?\*/\s*)*create\s+(?:or\s+replace\s+)?)temporary\s+(view\s+(?:\"?\w+\"?\.){2})",
            re.IGNORECASE | re.DOTALL,
        ),
        r"\1\2",
    ),
]


def _rewrite_statements_and_errors(server: Any) -> None:
    """Statement rewrites (above), schema CLONE/SWAP, and 500s turned into SQL errors.

    * fakesnow answers anything it can't run with HTTP 500, and the connector retries a
      500 for minutes ("Unhandled exception" in the emulator log, a silent hang in the
      client). Answer it as the SQL error it is, so the caller fails at once.
    * ``create or replace schema S clone T`` and ``alter schema S swap with T`` (used by
      transform/macros/publish_marts.sql on Snowflake) are "not implemented" / a parse
      error; emulate them by copying the schemas' tables.
    """
    import gzip
    import json

    from starlette.requests import Request
    from starlette.responses import JSONResponse

    original = server.query_request

    async def query_request(request: Request) -> JSONResponse:
        body = await request.body()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        payload = json.loads(body)
        sql = payload.get("sqlText", "")
        for pattern, replacement in _STATEMENT_REWRITES:
            sql = pattern.sub(replacement, sql)
        if (schema_op := _schema_clone_or_swap(sql)) is not None:
            return _run_schema_op(server, request, *schema_op)
        payload["sqlText"] = sql
        encoded = json.dumps(payload).encode()
        headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"content-encoding"]
        scope = dict(request.scope, headers=headers)
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": encoded, "more_body": False}

        response = await original(Request(scope, receive))
        if response.status_code == 500:
            error = json.loads(response.body)
            return JSONResponse(
                {
                    "data": {"errorCode": error["code"], "sqlState": "0A000"},
                    "code": error["code"],
                    "message": error["message"],
                    "success": False,
                }
            )
        return response

    for route in server.app.router.routes:
        if getattr(route, "path", None) == "/queries/v1/query-request":
            route.endpoint = query_request
            route.app = _request_response(query_request)
    server.query_request = query_request


def _request_response(endpoint: Any) -> Any:
    from starlette.routing import request_response

    return request_response(endpoint)


_CLONE = re.compile(
    r"^\s*create\s+or\s+replace\s+schema\s+(?P<target>[\w.\"]+)\s+clone\s+(?P<source>[\w.\"]+)\s*;?\s*$",
    re.IGNORECASE,
)
_SWAP = re.compile(
    r"^\s*alter\s+schema\s+(?P<target>[\w.\"]+)\s+swap\s+with\s+(?P<source>[\w.\"]+)\s*;?\s*$",
    re.IGNORECASE,
)
# dbt adds a /* query comment */ to every statement (dbt-snowflake: at the end)
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def _schema_clone_or_swap(sql: str) -> tuple[str, str, str] | None:
    sql = _COMMENT.sub(" ", sql)
    for kind, pattern in (("clone", _CLONE), ("swap", _SWAP)):
        if match := pattern.match(sql):
            return kind, match["target"], match["source"]
    return None


def _run_schema_op(server: Any, request: Any, kind: str, target: str, source: str) -> Any:
    """Emulate a schema clone or swap by copying tables (the data in tests is small)."""
    from starlette.responses import JSONResponse

    conn = server.to_conn(server.to_token(request))
    cur = conn.cursor()

    def tables(schema: str) -> list[str]:
        database, name = _split_schema(schema, conn.database)
        cur.execute(
            "select table_name from information_schema.tables"
            f" where table_catalog = '{database}' and table_schema = '{name}' and table_type = 'BASE TABLE'"
        )
        return [row[0] for row in cur.fetchall()]

    def copy(from_schema: str, to_schema: str) -> None:
        # fakesnow's CREATE OR REPLACE SCHEMA does not drop the tables of the old one
        cur.execute(f"drop schema if exists {to_schema} cascade")
        cur.execute(f"create schema {to_schema}")
        for table in tables(from_schema):
            cur.execute(f'create table {to_schema}."{table}" as select * from {from_schema}."{table}"')

    try:
        if kind == "clone":
            copy(source, target)
        else:
            scratch = f"{_split_schema(target, conn.database)[0]}._FS_SWAP_{uuid.uuid4().hex[:8].upper()}"
            copy(target, scratch)
            copy(source, target)
            copy(scratch, source)
            cur.execute(f"drop schema {scratch} cascade")
    except Exception as exc:
        return JSONResponse(
            {"data": {"errorCode": "002003", "sqlState": "02000"}, "code": "002003", "message": str(exc)}
            | {"success": False}
        )
    message = "Statement executed successfully."
    return JSONResponse(
        {
            "data": {
                "rowtype": [
                    {"name": "status", "type": "text", "length": 256, "precision": None, "scale": None}
                    | {"nullable": True}
                ],
                "rowset": [[message]],
                "queryResultFormat": "json",
                "total": 1,
                "queryId": uuid.uuid4().hex,
                "statementTypeId": 0x3000,
                "finalDatabaseName": conn.database,
                "finalSchemaName": conn.schema,
            },
            "success": True,
        }
    )


def _split_schema(schema: str, current_database: str | None) -> tuple[str, str]:
    parts = [part.strip('"') for part in schema.split(".")]
    if len(parts) == 1:
        return (current_database or "").upper(), parts[0].upper()
    return parts[-2].upper(), parts[-1].upper()


# --- gap: no authentication at all -----------------------------------------------------------------------
def _check_logins(server: Any, user: str, password: str, public_key_pem: bytes | None) -> None:
    """fakesnow accepts any user and password, so a wrong password or key could never fail
    in a test. Check them as Snowflake does and answer with its error 390100."""
    import gzip
    import json

    import jwt
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    original = server.login_request

    async def login_request(request: Request) -> JSONResponse:
        body = await request.body()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        data = json.loads(body)["data"]
        ok = data.get("LOGIN_NAME", "").lower() == user.lower()
        if data.get("AUTHENTICATOR") == "SNOWFLAKE_JWT":
            try:
                claims = jwt.decode(data.get("TOKEN", ""), public_key_pem or b"", algorithms=["RS256"])
                ok = (
                    ok and public_key_pem is not None and claims["sub"].split(".")[-1].lower() == user.lower()
                )
            except (jwt.PyJWTError, ValueError, KeyError):
                ok = False
        else:
            ok = ok and data.get("PASSWORD") == password
        if not ok:
            return JSONResponse(
                {
                    "data": {"nextAction": "RETRY_LOGIN", "authnMethod": "PASSWORD"},
                    "code": "390100",
                    "message": "Incorrect username or password was specified.",
                    "success": False,
                }
            )
        return await original(request)

    for route in server.app.router.routes:
        if getattr(route, "path", None) == "/session/v1/login-request":
            route.endpoint = login_request
            route.app = _request_response(login_request)
    server.login_request = login_request
