"""BigQuery: a service-account key or application-default credentials, one project.

The access token is fetched and a free dry-run query checked while the settings are
resolved, so a wrong key, project or expired login stops the run before any tool starts.
google-cloud-bigquery and google-auth are imported only inside functions: they come
with the optional extra (``uv sync --extra bigquery``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from flows.errors import ConfigError
from flows.redact import first_line
from flows.setting_values import int_setting
from flows.warehouses.base import ContractDialect, PublishStrategy, Warehouse

if TYPE_CHECKING:
    from flows.config import Settings

_SCOPES = ("https://www.googleapis.com/auth/bigquery",)
# dlt, dbt and Soda all build google-cloud-bigquery clients: a client's own timeout, and
# the deadline for fetching an access token before any of them starts.
_TOKEN_TIMEOUT_S = 10.0
# the IAM role that reads a dataset's tables (BigQuery's GRANT takes IAM roles)
_READER_ROLE = "roles/bigquery.dataViewer"


@dataclass(frozen=True)
class BigQueryCredentials:
    """Everything dlt, dbt and Soda need to reach one BigQuery project.

    ``service_account`` holds the key (service-account JSON) or is None for
    application-default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
    application-default login``, workload identity). ``source`` says which setting the
    credentials came from, for error messages; the key itself never appears in a repr.
    """

    project_id: str
    location: str
    source: str
    service_account: dict[str, Any] | None = field(default=None, repr=False)
    api_endpoint: str = ""
    google_credentials: Any = field(default=None, repr=False, compare=False)

    @property
    def method(self) -> str:
        """dbt-bigquery's ``method`` for these credentials."""
        return "service-account-json" if self.service_account else "oauth"


class BigQuery(Warehouse):
    name: ClassVar[str] = "bigquery"
    # BigQuery cannot load a ``json`` column from parquet (dlt refuses: "Destination
    # `bigquery` cannot load `data_type=json` from `file_format=parquet` files"), and the
    # raw tables keep API payloads as json columns; jsonl carries them.
    loader_file_format: ClassVar[str] = "jsonl"
    dialect: ClassVar[ContractDialect] = ContractDialect(
        data_types={
            "bigint": "int64",
            "varchar": "string",
            "double": "float64",
            "boolean": "bool",
            "decimal": "numeric",
            "timestamp with time zone": "timestamp",
        },
        # soda-bigquery reports every NUMERIC column as numeric(38,9), whatever it was declared
        # (BigQuery's INFORMATION_SCHEMA.COLUMNS has no precision or scale): "expected
        # numeric(12,2) got numeric(38,9)".
        unchecked_column_keys=("numeric_precision", "numeric_scale"),
    )
    publish_strategy: ClassVar[PublishStrategy] = PublishStrategy.TABLE_COPY
    float_type: ClassVar[str] = "float64"
    text_type: ClassVar[str] = "string"

    def resolve_credentials(self) -> BigQueryCredentials:
        return _resolve_credentials()

    def dlt_destination(self, settings: Settings) -> Any:
        import dlt

        creds = settings.credentials
        return dlt.destinations.bigquery(
            # the google-auth object resolved (and token fetched) in _resolve_credentials
            credentials=creds.google_credentials,
            project_id=creds.project_id,
            location=creds.location,
        )

    def tool_environment(self, settings: Settings) -> dict[str, str]:
        """Every name transform/profiles.yml and checks/datasources/bigquery*.yml read, always set.

        With a service account, dbt gets the key's fields and Soda the whole JSON; with
        application-default credentials both find them as dlt did (google.auth.default()).
        """
        creds = settings.credentials
        key = creds.service_account or {}
        return {
            "ELT_BIGQUERY_PROJECT": creds.project_id,
            "ELT_BIGQUERY_LOCATION": creds.location,
            "ELT_BIGQUERY_METHOD": creds.method,
            "ELT_BIGQUERY_API_ENDPOINT": creds.api_endpoint,
            "ELT_BIGQUERY_CLIENT_EMAIL": key.get("client_email", ""),
            "ELT_BIGQUERY_PRIVATE_KEY": key.get("private_key", ""),
            "ELT_BIGQUERY_PRIVATE_KEY_ID": key.get("private_key_id", ""),
            "ELT_BIGQUERY_TOKEN_URI": key.get("token_uri", "https://oauth2.googleapis.com/token"),
            "ELT_BIGQUERY_KEYFILE_JSON": json.dumps(key) if key else "",
        }

    def catalog(self, settings: Settings) -> str | None:
        return settings.credentials.project_id

    def soda_datasource(self, settings: Settings) -> str:
        # Soda picks the login method from the keys present: a key given as a value has its
        # own file; application-default credentials use bigquery.yml
        return "bigquery_service_account" if settings.credentials.service_account else self.name

    def information_schema(self, settings: Settings, schema: str) -> str:
        """BigQuery keeps one per dataset."""
        return f"{_dataset(settings, schema)}.INFORMATION_SCHEMA"

    def sample_sql(self, table: str, rows: int, total: int) -> str:
        """BigQuery samples storage blocks by percent; a little over the share asked for."""
        percent = min(100.0, 100.0 * rows / max(total, 1) * 1.2)
        return f"(select * from {table} tablesample system ({percent:.4f} percent))"

    def drop_schema_sql(self, settings: Settings, schema: str) -> str:
        return f"drop schema if exists {_dataset(settings, schema)} cascade"

    def lineage_namespace(self, settings: Settings) -> str:
        """``bigquery``: OpenLineage puts the project in the dataset's name, not the namespace."""
        return self.name

    def schemas_sql(self, settings: Settings) -> str:
        """The project's datasets in its location (INFORMATION_SCHEMA is regional)."""
        creds = settings.credentials
        region = _backquoted(f"region-{(creds.location or 'US').lower()}")
        return f"select schema_name from {_backquoted(creds.project_id)}.{region}.INFORMATION_SCHEMA.SCHEMATA"

    def quoted_table(self, settings: Settings, schema: str, table: str) -> str:
        return f"{_dataset(settings, schema)}.{_backquoted(table)}"

    def quoted_column(self, column: str) -> str:
        return _backquoted(column)

    def text_sql(self, column: str, data_type: str) -> str:
        """A JSON column as its JSON text: BigQuery casts no JSON to STRING. A JSON value that
        is itself a string holding JSON (as a load may store it) is unwrapped first, or its
        quotes would come back escaped."""
        if data_type.lower() == "json":
            return f"coalesce(json_value({column}), to_json_string({column}))"
        return f"cast({column} as string)"

    def json_field_sql(self, column: str, field: str) -> str:
        return f"json_value({column}, '$.{field}')"

    def contains_sql(self, text: str) -> str:
        return f"strpos({text}, %s) > 0"

    def retention_sql(self, settings: Settings, tables: Sequence[tuple[str, str]]) -> list[str]:
        """The datasets' time travel window at BigQuery's minimum, 48 hours (then 7 days of
        fail-safe, readable by Google support only; README: Privacy)."""
        hours = int_setting("PRIVACY__TIME_TRAVEL_HOURS", 48)
        schemas = sorted({schema for schema, _ in tables})
        return [
            f"alter schema {_dataset(settings, s)} set options (max_time_travel_hours = {hours})"
            for s in schemas
        ]

    def grant_select_sql(self, settings: Settings, schema: str, grantee: str) -> tuple[str, ...] | None:
        """``grantee`` is an IAM principal (``group:analysts@example.com``), granted the reader role."""
        return (f"grant `{_READER_ROLE}` on schema {_dataset(settings, schema)} to {json.dumps(grantee)}",)

    # mask_column_sql stays None: BigQuery masks a column through a policy tag bound to data
    # policies (the Data Policy API and the table's schema), not through a SQL statement.


def _dataset(settings: Settings, schema: str) -> str:
    """The dataset's full name: project and dataset each in BigQuery's backquotes."""
    return ".".join(_backquoted(name) for name in (settings.credentials.project_id, schema))


def _backquoted(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _resolve_credentials() -> BigQueryCredentials:
    """Resolve BigQuery credentials, project, location and API endpoint; fail fast and say which setting.

    Settings (environment, ``.dlt/secrets.toml`` / ``config.toml`` or Prefect Secret blocks):

    - ``DESTINATION__BIGQUERY__CREDENTIALS``: service-account JSON, as the value itself or
      the path of the key file; or its fields ``DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID``,
      ``__CLIENT_EMAIL``, ``__PRIVATE_KEY``. Unset: application-default credentials.
    - ``DESTINATION__BIGQUERY__PROJECT_ID`` (default: the credentials' project),
      ``DESTINATION__BIGQUERY__LOCATION`` (default ``US``), ``DESTINATION__BIGQUERY__API_ENDPOINT``
      (optional, e.g. a Private Service Connect endpoint).

    The access token is fetched here, once, under a short timeout, so a wrong key or an
    expired login stops the run before any tool starts (and retries against Google).
    """
    import dlt

    info, source = _service_account_info(dlt.secrets.get("destination.bigquery.credentials"))
    if info is None:
        fields = {
            name: dlt.secrets.get(f"destination.bigquery.credentials.{name}")
            for name in ("project_id", "client_email", "private_key", "private_key_id", "token_uri")
        }
        if any(fields.values()):
            info = {"type": "service_account"} | {name: value for name, value in fields.items() if value}
            source = "DESTINATION__BIGQUERY__CREDENTIALS__*"
    if info is not None:
        google_credentials = _service_account_credentials(info, source)
        default_project = info.get("project_id")
    else:
        google_credentials, default_project, source = _application_default_credentials()

    project = dlt.config.get("destination.bigquery.project_id") or default_project
    if not project:
        raise ConfigError(
            "BigQuery project is not set: set DESTINATION__BIGQUERY__PROJECT_ID "
            f"(the credentials from {source} name no project)"
        )
    secrets = [str(value) for value in (info or {}).values()]
    _fetch_access_token(google_credentials, source, secrets)
    credentials = BigQueryCredentials(
        project_id=str(project),
        # ELT_BIGQUERY_LOCATION: the older name, still honoured
        location=str(
            dlt.config.get("destination.bigquery.location") or os.environ.get("ELT_BIGQUERY_LOCATION") or "US"
        ),
        source=source,
        service_account=info,
        api_endpoint=str(dlt.config.get("destination.bigquery.api_endpoint") or ""),
        google_credentials=google_credentials,
    )
    _check_project(credentials, secrets)
    return credentials


def _check_project(creds: BigQueryCredentials, secrets: list[str]) -> None:
    """Dry-run ``select 1`` in the project: the token is accepted and jobs may run there.

    Free (a dry run bills nothing) and bounded by a short timeout without retries, so a
    wrong project or a revoked token fails here, named, instead of deep inside dlt.
    """
    from google.api_core import exceptions as api_errors
    from google.auth import exceptions as auth_errors
    from google.cloud import bigquery

    client = bigquery.Client(
        project=creds.project_id,
        credentials=creds.google_credentials,
        location=creds.location,
        client_options={"api_endpoint": creds.api_endpoint} if creds.api_endpoint else None,
    )
    try:
        client.query(
            "select 1",
            job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False),
            retry=bigquery.DEFAULT_RETRY.with_predicate(_transient_api_error).with_deadline(_TOKEN_TIMEOUT_S),
            job_retry=None,  # the client's own job retry would retry a refused token for 10 minutes
            timeout=_TOKEN_TIMEOUT_S,
        )
    except (api_errors.NotFound, api_errors.Forbidden) as exc:
        raise ConfigError(
            f"BigQuery project {creds.project_id!r} does not exist or the credentials from {creds.source} "
            f"may not run jobs there (check DESTINATION__BIGQUERY__PROJECT_ID): {first_line(exc, secrets)}"
        ) from None
    except (api_errors.Unauthorized, auth_errors.GoogleAuthError) as exc:
        raise ConfigError(
            f"BigQuery rejected the credentials from {creds.source} (expired or revoked?): "
            f"{first_line(exc, secrets)}"
        ) from None
    except api_errors.GoogleAPICallError as exc:
        raise ConfigError(
            f"BigQuery did not accept a test query in {creds.project_id!r}: {first_line(exc, secrets)}"
        ) from None
    finally:
        client.close()


def _transient_api_error(exc: BaseException) -> bool:
    """Worth retrying: a busy or unreachable API. Not: a token nobody can refresh."""
    import requests
    from google.api_core import exceptions as api_errors

    busy = (api_errors.TooManyRequests, api_errors.InternalServerError, api_errors.ServiceUnavailable)
    unreachable = (api_errors.BadGateway, api_errors.GatewayTimeout, requests.ConnectionError)
    return isinstance(exc, (*busy, *unreachable))


def _service_account_info(raw: Any) -> tuple[dict[str, Any] | None, str]:
    """``DESTINATION__BIGQUERY__CREDENTIALS`` as a dict: JSON text, a key file's path, or a TOML table."""
    setting = "DESTINATION__BIGQUERY__CREDENTIALS"
    if raw is None or raw == "":
        return None, setting
    if isinstance(raw, dict):
        return _checked_service_account(dict(raw), setting), setting
    text = str(raw).strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        setting = f"{setting} (key file {path})"
        if not path.is_file():
            raise ConfigError(f"{setting}: the service-account key file does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{setting}: cannot read the key file ({type(exc).__name__})") from None
    try:
        info = json.loads(text)
    except ValueError as exc:
        # the position only: the text is a secret
        raise ConfigError(
            f"{setting} is not valid service-account JSON (line {exc.lineno}, column {exc.colno})"  # type: ignore[attr-defined]
        ) from None
    if not isinstance(info, dict):
        raise ConfigError(f"{setting} is not valid service-account JSON (expected an object)")
    return _checked_service_account(info, setting), setting


def _checked_service_account(info: dict[str, Any], setting: str) -> dict[str, Any]:
    kind = info.get("type", "service_account")
    if kind != "service_account":
        raise ConfigError(
            f"{setting} holds {kind!r} credentials; give a service-account key here, or point "
            "GOOGLE_APPLICATION_CREDENTIALS at other credentials and leave this unset"
        )
    missing = [name for name in ("client_email", "private_key") if not info.get(name)]
    if missing:
        raise ConfigError(f"{setting}: the service-account JSON lacks {', '.join(missing)}")
    return {"type": "service_account", **info}


def _service_account_credentials(info: dict[str, Any], source: str) -> Any:
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_info(info, scopes=_SCOPES)
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{source}: the service-account private_key is not a readable PEM key") from None


def _application_default_credentials() -> tuple[Any, str | None, str]:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    source = (
        f"GOOGLE_APPLICATION_CREDENTIALS ({key_file})"
        if key_file
        else "application-default credentials (gcloud auth application-default login)"
    )
    try:
        credentials, project = google.auth.default(scopes=_SCOPES)
    except DefaultCredentialsError:
        detail = "the file does not exist or is not valid credentials JSON" if key_file else "none found"
        raise ConfigError(
            f"no BigQuery credentials: set DESTINATION__BIGQUERY__CREDENTIALS (service-account JSON or key "
            f"file path) or GOOGLE_APPLICATION_CREDENTIALS; {source}: {detail}"
        ) from None
    return credentials, project, source


def _fetch_access_token(credentials: Any, source: str, secrets: list[str]) -> None:
    """Get a token now unless the credentials already hold a valid one (errors name ``source``)."""
    import functools

    import google.auth.exceptions
    import google.auth.transport.requests

    if credentials.valid:
        return
    request = functools.partial(google.auth.transport.requests.Request(), timeout=_TOKEN_TIMEOUT_S)
    try:
        credentials.refresh(request)
    except google.auth.exceptions.GoogleAuthError as exc:
        held = [getattr(credentials, name, None) or "" for name in ("token", "refresh_token")]
        reason = first_line(exc, secrets + held)
        raise ConfigError(f"BigQuery credentials from {source} were not accepted: {reason}") from None
