"""The one place where the warehouse setting and its credentials are resolved.

Why: the dlt destination, the dbt target and the Soda data source must all point
at the same warehouse with the same credentials. ``ELT_WAREHOUSE`` picks it;
credentials are read once, through dlt's config providers (environment
variables, ``.dlt/secrets.toml``, or Prefect Secret blocks, see
``flows/secrets.py``), and handed to dbt and Soda as process environment
variables that ``transform/profiles.yml`` and ``checks/datasources/*.yml`` read.
No tool keeps a second copy of a secret.

This module imports Prefect only when Prefect Secret blocks are switched on.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from flows.redact import first_line
from flows.secrets import use_prefect_secret_blocks

PROJECT_DIR = Path(__file__).resolve().parents[1]
TRANSFORM_DIR = PROJECT_DIR / "transform"
# the Soda contracts; ELT_CHECKS_DIR points a deployment (or the reliability campaign) elsewhere
CHECKS_DIR = Path(os.environ.get("ELT_CHECKS_DIR") or PROJECT_DIR / "checks")

# Every run must stay offline and quiet: these tools phone home by default.
TELEMETRY_OFF = {
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "SODA_CORE_TELEMETRY_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
}

# dlt defaults we change for every pipeline. Arrow batches skip dlt's normalizer,
# which otherwise stamps each row with the load that wrote it; lineage needs it.
DLT_DEFAULTS = {
    "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID": "true",
    # dlt keeps every loaded file under the worker's pipeline folder: raw rows (emails and
    # other PII, the PII salt) would pile up on disk. The warehouse holds them; drop the copies.
    "LOAD__DELETE_COMPLETED_JOBS": "true",
}


N = TypeVar("N", int, float)


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the setting, never a secret."""


class Warehouse(StrEnum):
    DUCKDB = "duckdb"
    SNOWFLAKE = "snowflake"
    BIGQUERY = "bigquery"

    @classmethod
    def parse(cls, value: str) -> Warehouse:
        try:
            return cls(value.strip().lower())
        except ValueError:
            choices = ", ".join(w.value for w in cls)
            raise ConfigError(
                f"ELT_WAREHOUSE={value!r} is not a known warehouse; choose one of {choices}"
            ) from None


def data_dir() -> Path:
    """Local state (DuckDB file, dlt working dirs, demo databases): a cache, never the truth."""
    return Path(os.environ.get("ELT_DATA_DIR", PROJECT_DIR / "data")).resolve()


def apply_runtime_environment() -> None:
    """Switch telemetry off and keep every tool's working files inside the data folder.

    Values already set by the user win, so a deployment can still override them.
    """
    for key, value in (TELEMETRY_OFF | DLT_DEFAULTS).items():
        os.environ.setdefault(key, value)
    base = data_dir()
    base.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DLT_DATA_DIR", str(base / "dlt"))
    os.environ.setdefault("DLT_PROJECT_DIR", str(PROJECT_DIR))
    os.environ.setdefault("PREFECT_HOME", str(base / "prefect"))
    # The temporary API server migrates its database on first start; on a busy
    # 2-core machine that takes longer than Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("DBT_LOG_PATH", str(base / "dbt" / "logs"))
    os.environ.setdefault("DBT_TARGET_PATH", str(base / "dbt" / "target"))


@dataclass(frozen=True)
class Settings:
    """Everything derived from the warehouse choice."""

    warehouse: Warehouse
    duckdb_path: Path
    dbt_schema: str
    ingest_retries: int = 2
    retry_delay_s: float = 10.0
    credentials: Any = field(default=None, repr=False)
    schema_prefix: str = ""

    def dataset(self, name: str) -> str:
        """A dataset (schema) name in this environment: ``raw_shop`` → ``dev_alice_raw_shop``."""
        return f"{self.schema_prefix}{name}"

    @property
    def pipelines_dir(self) -> Path:
        """dlt's local working folders, one set per warehouse and environment.

        Why apart: dlt trusts a local pipeline state over the warehouse's, so a cursor cached
        while loading DuckDB would make a first Snowflake load skip rows.
        """
        environment = f"{self.warehouse.value}_{self.schema_prefix}".rstrip("_")
        return data_dir() / "dlt" / "pipelines" / environment

    def dlt_destination(self) -> Any:
        """The dlt destination; load files are parquet (see ``LOADER_FILE_FORMAT``)."""
        import dlt

        if self.warehouse is Warehouse.DUCKDB:
            return dlt.destinations.duckdb(str(self.duckdb_path))
        if self.warehouse is Warehouse.SNOWFLAKE:
            return dlt.destinations.snowflake(
                credentials=self.credentials,
                # dlt writes its own state tables in the preferred format: parquet too, not jsonl
                preferred_loader_file_format=LOADER_FILE_FORMAT,
                supports_multiple_statements=_bool_setting("ELT_SNOWFLAKE_MULTIPLE_STATEMENTS", True),
                # the contracts' "timestamp with time zone" is TIMESTAMP_TZ to Soda; dlt defaults to _LTZ
                use_timestamp_tz=True,
            )
        creds = self.credentials
        return dlt.destinations.bigquery(
            # the google-auth object resolved (and token fetched) in _bigquery_credentials
            credentials=creds.google_credentials,
            project_id=creds.project_id,
            location=creds.location,
        )

    def tool_environment(self) -> dict[str, str]:
        """Environment variables read by ``transform/profiles.yml`` and the Soda data sources."""
        env = {
            "ELT_WAREHOUSE": self.warehouse.value,
            "ELT_DBT_TARGET": self.warehouse.value,
            # profiles.yml puts the prefix in front, as the dbt sources do
            "ELT_DBT_SCHEMA": self.dbt_schema.removeprefix(self.schema_prefix),
            "ELT_SCHEMA_PREFIX": self.schema_prefix,
        }
        if self.warehouse is Warehouse.DUCKDB:
            env["ELT_DUCKDB_PATH"] = str(self.duckdb_path)
        elif self.warehouse is Warehouse.SNOWFLAKE:
            env |= _snowflake_tool_environment(self.credentials)
        else:
            env |= _bigquery_tool_environment(self.credentials)
        return env

    def export_tool_environment(self) -> None:
        """Make the derived settings visible to dbt and Soda, which run in this process."""
        os.environ.update(self.tool_environment())

    @property
    def catalog(self) -> str | None:
        """What a warehouse puts in front of schema names: Snowflake database, BigQuery project."""
        if self.warehouse is Warehouse.SNOWFLAKE:
            return self.credentials.database
        if self.warehouse is Warehouse.BIGQUERY:
            return self.credentials.project_id
        return None

    @property
    def soda_datasource(self) -> Path:
        if self.warehouse is Warehouse.SNOWFLAKE and self.credentials.private_key:
            # Soda picks the login method from the keys present, so key-pair has its own file
            return CHECKS_DIR / "datasources" / "snowflake_key_pair.yml"
        if self.warehouse is Warehouse.BIGQUERY and self.credentials.service_account:
            # likewise: a key given as a value, not application-default credentials
            return CHECKS_DIR / "datasources" / "bigquery_service_account.yml"
        return CHECKS_DIR / "datasources" / f"{self.warehouse.value}.yml"

    @property
    def loader_file_format(self) -> str:
        """dlt's load file format: parquet, except on BigQuery.

        BigQuery cannot load a ``json`` column from parquet (dlt refuses: "Destination
        `bigquery` cannot load `data_type=json` from `file_format=parquet` files"), and the
        raw tables keep API payloads as json columns; jsonl carries them.
        """
        return "jsonl" if self.warehouse is Warehouse.BIGQUERY else LOADER_FILE_FORMAT


LOADER_FILE_FORMAT = "parquet"


def load_settings(warehouse: str | None = None) -> Settings:
    """Resolve the warehouse (argument, else ``ELT_WAREHOUSE``, else DuckDB) and its credentials."""
    apply_runtime_environment()
    use_prefect_secret_blocks()
    chosen = Warehouse.parse(warehouse or os.environ.get("ELT_WAREHOUSE") or "duckdb")
    duckdb_path = Path(os.environ.get("ELT_DUCKDB_PATH") or data_dir() / "warehouse.duckdb").resolve()
    prefix = schema_prefix()
    return Settings(
        warehouse=chosen,
        duckdb_path=duckdb_path,
        dbt_schema=prefix + os.environ.get("ELT_DBT_SCHEMA", "analytics"),
        ingest_retries=_int_setting("ELT_INGEST_RETRIES", 2),
        retry_delay_s=_float_setting("ELT_RETRY_DELAY_SECONDS", 10.0),
        credentials=_warehouse_credentials(chosen),
        schema_prefix=prefix,
    )


def schema_prefix() -> str:
    """The prefix of every dataset and schema the platform writes, per environment.

    ``ELT_ENV=prod`` (the default) writes ``raw_shop``, ``analytics_marts``…; ``ELT_ENV=dev``
    writes ``dev_<developer>_raw_shop``… (``ELT_DEVELOPER``, else the login name), so
    developers share one warehouse without touching production or each other.
    ``ELT_SCHEMA_PREFIX`` sets the prefix outright (e.g. ``ci_`` for a CI environment).
    """
    environment = (os.environ.get("ELT_ENV") or "prod").strip().lower()
    if environment not in ("prod", "dev"):
        raise ConfigError(f"ELT_ENV={environment!r} is not known; choose prod or dev")
    explicit = os.environ.get("ELT_SCHEMA_PREFIX")
    if explicit is not None:
        prefix = explicit.strip().lower()
    elif environment == "dev":
        developer = os.environ.get("ELT_DEVELOPER") or getpass.getuser()
        prefix = "dev_" + re.sub(r"[^a-z0-9]+", "_", developer.lower()).strip("_") + "_"
    else:
        prefix = ""
    if prefix and not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
        raise ConfigError(
            f"ELT_SCHEMA_PREFIX={prefix!r}: use lower-case letters, digits and underscores, "
            "starting with a letter"
        )
    return prefix


def flow_retries() -> int:
    """``ELT_FLOW_RETRIES`` (default 0): how often Prefect retries a failed ``elt`` run.

    A retry re-ingests (already loaded rows are not loaded again) and re-runs only the
    dbt nodes that failed and their children; read when flows/elt.py is imported.
    """
    return _int_setting("ELT_FLOW_RETRIES", 0)


def _float_setting(name: str, default: float) -> float:
    return _number_setting(name, default, float, "a number")


def _int_setting(name: str, default: int) -> int:
    return _number_setting(name, default, int, "a whole number")


def _number_setting(name: str, default: N, parse: Callable[[str], N], kind: str) -> N:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {kind}") from None


def _warehouse_credentials(warehouse: Warehouse) -> Any:
    """Resolve cloud credentials through dlt's providers: env vars or ``.dlt/secrets.toml``."""
    if warehouse is Warehouse.DUCKDB:
        return None
    if warehouse is Warehouse.BIGQUERY:
        return _bigquery_credentials()
    from dlt.common.configuration import resolve_configuration
    from dlt.common.configuration.exceptions import ConfigFieldMissingException

    if warehouse is Warehouse.SNOWFLAKE:
        from dlt.destinations.impl.snowflake.configuration import SnowflakeCredentials

        spec: Any = SnowflakeCredentials()
    else:
        from dlt.common.configuration.specs import GcpServiceAccountCredentials

        spec = GcpServiceAccountCredentials()
    section = ("destination", warehouse.value)
    try:
        return resolve_configuration(spec, sections=section)
    except ValueError:
        if warehouse is Warehouse.SNOWFLAKE and getattr(spec, "private_key_path", None):
            raise ConfigError(
                "DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PATH: no readable PEM private key at "
                f"{spec.private_key_path!r}"
            ) from None
        raise
    except ConfigFieldMissingException as exc:
        missing = ", ".join(
            f"DESTINATION__{warehouse.value.upper()}__CREDENTIALS__{name.upper()}" for name in exc.traces
        )
        raise ConfigError(
            f"{warehouse.value} credentials are incomplete: set {missing} "
            f"(or [destination.{warehouse.value}.credentials] in .dlt/secrets.toml)"
        ) from None


def _bool_setting(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not true or false")


# Connector options dlt passes through from the connection string's query
# (``snowflake://…/DB?host=…&login_timeout=30``); dbt and Soda get the same values.
_SNOWFLAKE_CONNECTOR_OPTIONS = ("host", "port", "protocol", "login_timeout", "network_timeout")


def _snowflake_tool_environment(creds: Any) -> dict[str, str]:
    """Snowflake settings for dbt and Soda, from the one resolved set of dlt credentials.

    Password or key pair: a key (from ``private_key`` or ``private_key_path``) is checked
    here, so a wrong passphrase fails before any tool connects, and handed on as PEM, the
    one form dbt and Soda both read. Host, port and protocol default to the account's
    public endpoint. Timeouts default to 120 s to log in (the connector's own default) and
    600 s per request (the connector has none; long queries are polled, so a request that
    takes longer hangs): Soda's data source needs a number, never an empty value.
    """
    options = {name: str((creds.query or {}).get(name) or "") for name in _SNOWFLAKE_CONNECTOR_OPTIONS}
    env = {
        "ELT_SNOWFLAKE_ACCOUNT": creds.host,
        "ELT_SNOWFLAKE_USER": creds.username or "",
        "ELT_SNOWFLAKE_DATABASE": creds.database,
        "ELT_SNOWFLAKE_WAREHOUSE": creds.warehouse or "",
        "ELT_SNOWFLAKE_ROLE": creds.role or "",
        "ELT_SNOWFLAKE_HOST": options["host"] or f"{creds.host}.snowflakecomputing.com",
        "ELT_SNOWFLAKE_PORT": options["port"] or "443",
        "ELT_SNOWFLAKE_PROTOCOL": options["protocol"] or "https",
        "ELT_SNOWFLAKE_LOGIN_TIMEOUT": options["login_timeout"] or "120",
        "ELT_SNOWFLAKE_NETWORK_TIMEOUT": options["network_timeout"] or "600",
    }
    if creds.private_key:
        env["ELT_SNOWFLAKE_PRIVATE_KEY"] = _snowflake_private_key_pem(
            str(creds.private_key), creds.private_key_passphrase
        )
        env["ELT_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"] = str(creds.private_key_passphrase or "")
        env["ELT_SNOWFLAKE_PASSWORD"] = ""
    else:
        # cleared, or a key exported by an earlier run in this process would win over the password
        env |= {"ELT_SNOWFLAKE_PRIVATE_KEY": "", "ELT_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": ""}
        env["ELT_SNOWFLAKE_PASSWORD"] = creds.password or ""
    return env


def _snowflake_private_key_pem(key: str, passphrase: str | None) -> str:
    """The key as PEM (PKCS#8, still encrypted with its passphrase when it has one).

    dlt accepts PEM or base64 DER; Soda reads only PEM. The error names the setting, never the key.
    """
    import base64

    from cryptography.hazmat.primitives import serialization

    password = passphrase.encode() if passphrase else None
    try:
        if key.lstrip().startswith("-----BEGIN"):
            loaded = serialization.load_pem_private_key(key.encode(), password=password)
        else:
            loaded = serialization.load_der_private_key(base64.b64decode(key), password=password)
    except (ValueError, TypeError):
        raise ConfigError(
            "DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY (or PRIVATE_KEY_PATH) is not a readable "
            "private key, or DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PASSPHRASE does not open it"
        ) from None
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


# --- BigQuery -------------------------------------------------------------------------------------

_BIGQUERY_SCOPES = ("https://www.googleapis.com/auth/bigquery",)
# dlt, dbt and Soda all build google-cloud-bigquery clients: a client's own timeout, and
# the deadline for fetching an access token before any of them starts.
_BIGQUERY_TOKEN_TIMEOUT_S = 10.0


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


def _bigquery_credentials() -> BigQueryCredentials:
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
            retry=bigquery.DEFAULT_RETRY.with_predicate(_transient_api_error).with_deadline(
                _BIGQUERY_TOKEN_TIMEOUT_S
            ),
            job_retry=None,  # the client's own job retry would retry a refused token for 10 minutes
            timeout=_BIGQUERY_TOKEN_TIMEOUT_S,
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


def _bigquery_tool_environment(creds: BigQueryCredentials) -> dict[str, str]:
    """What transform/profiles.yml and checks/datasources/bigquery.yml read (every name always set).

    With a service account, dbt gets the key's fields and Soda the whole JSON; with
    application-default credentials both find them as dlt did (google.auth.default()).
    """
    import json

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


def _service_account_info(raw: Any) -> tuple[dict[str, Any] | None, str]:
    """``DESTINATION__BIGQUERY__CREDENTIALS`` as a dict: JSON text, a key file's path, or a TOML table."""
    import json

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
        return service_account.Credentials.from_service_account_info(info, scopes=_BIGQUERY_SCOPES)
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
        credentials, project = google.auth.default(scopes=_BIGQUERY_SCOPES)
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
    request = functools.partial(google.auth.transport.requests.Request(), timeout=_BIGQUERY_TOKEN_TIMEOUT_S)
    try:
        credentials.refresh(request)
    except google.auth.exceptions.GoogleAuthError as exc:
        held = [getattr(credentials, name, None) or "" for name in ("token", "refresh_token")]
        reason = first_line(exc, secrets + held)
        raise ConfigError(f"BigQuery credentials from {source} were not accepted: {reason}") from None


# snowflake-connector-python error numbers: the login was refused (bad password, key or
# user) or the account's endpoint never answered; anything else is not a settings problem.
_SNOWFLAKE_LOGIN_REFUSED = frozenset({390100, 390144, 390101, 390102, 390156, 394300, 394304})
_SNOWFLAKE_UNREACHABLE = frozenset({250001, 250003, 251011, 251012})


def warehouse_error(settings: Settings, exc: BaseException) -> ConfigError | None:
    """A refused login or unreachable warehouse in ``exc``'s cause chain, as a ConfigError
    that names the setting to fix (never its value), or None for any other failure.

    Why: dlt wraps the connector's error several levels deep, and the connector's words
    ("250001: Could not connect to Snowflake backend after 2 attempt(s)") don't say which
    setting is wrong; a settings error is also never worth a retry.
    """
    if settings.warehouse is not Warehouse.SNOWFLAKE:
        return None
    creds = settings.credentials
    for error in cause_chain(exc):
        errno = getattr(error, "errno", None)
        if not type(error).__module__.startswith("snowflake.connector") or errno is None:
            continue
        if errno in _SNOWFLAKE_LOGIN_REFUSED:
            return ConfigError(
                f"snowflake refused the login of user {creds.username!r} to account {creds.host!r} "
                f"(error {errno}): check the password or private key in DESTINATION__SNOWFLAKE__CREDENTIALS "
                "(…__PASSWORD, …__PRIVATE_KEY_PATH / …__PRIVATE_KEY and …__PRIVATE_KEY_PASSPHRASE)"
            )
        if errno in _SNOWFLAKE_UNREACHABLE:
            query = creds.query or {}
            host = query.get("host") or f"{creds.host}.snowflakecomputing.com"
            endpoint = f"{host}:{query.get('port') or 443}"
            return ConfigError(
                f"snowflake account {creds.host!r} did not answer at {endpoint} (error {errno}): check the "
                "account in DESTINATION__SNOWFLAKE__CREDENTIALS (…__HOST) and any host/port options in it"
            )
    return None


def cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes; dlt keeps the wrapped error in ``.exception``."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return chain


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them.

    dlt reads its settings from the environment; a flow uses this to give one load a
    setting (a backfill window) without leaving it behind for the next.
    """
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
