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

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from flows.secrets import use_prefect_secret_blocks

PROJECT_DIR = Path(__file__).resolve().parents[1]
TRANSFORM_DIR = PROJECT_DIR / "transform"
CHECKS_DIR = PROJECT_DIR / "checks"

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
}


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
    credentials: Any = field(default=None, repr=False)

    @property
    def pipelines_dir(self) -> Path:
        return data_dir() / "dlt" / "pipelines"

    def dlt_destination(self) -> Any:
        """The dlt destination; load files are parquet (see ``LOADER_FILE_FORMAT``)."""
        import dlt

        if self.warehouse is Warehouse.DUCKDB:
            return dlt.destinations.duckdb(str(self.duckdb_path))
        if self.warehouse is Warehouse.SNOWFLAKE:
            return dlt.destinations.snowflake(credentials=self.credentials)
        return dlt.destinations.bigquery(credentials=self.credentials)

    def tool_environment(self) -> dict[str, str]:
        """Environment variables read by ``transform/profiles.yml`` and the Soda data sources."""
        env = {
            "ELT_WAREHOUSE": self.warehouse.value,
            "ELT_DBT_TARGET": self.warehouse.value,
            "ELT_DBT_SCHEMA": self.dbt_schema,
        }
        if self.warehouse is Warehouse.DUCKDB:
            env["ELT_DUCKDB_PATH"] = str(self.duckdb_path)
        elif self.warehouse is Warehouse.SNOWFLAKE:
            creds = self.credentials
            env |= {
                "ELT_SNOWFLAKE_ACCOUNT": creds.host,
                "ELT_SNOWFLAKE_USER": creds.username,
                "ELT_SNOWFLAKE_PASSWORD": creds.password or "",
                "ELT_SNOWFLAKE_DATABASE": creds.database,
                "ELT_SNOWFLAKE_WAREHOUSE": creds.warehouse or "",
            }
            if creds.role:
                env["ELT_SNOWFLAKE_ROLE"] = creds.role
        else:
            creds = self.credentials
            env |= {
                "ELT_BIGQUERY_PROJECT": creds.project_id,
                "ELT_BIGQUERY_CLIENT_EMAIL": creds.client_email,
                "ELT_BIGQUERY_PRIVATE_KEY": creds.private_key,
                "ELT_BIGQUERY_LOCATION": os.environ.get("ELT_BIGQUERY_LOCATION", "US"),
            }
        return env

    def export_tool_environment(self) -> None:
        """Make the derived settings visible to dbt and Soda, which run in this process."""
        os.environ.update(self.tool_environment())

    @property
    def soda_datasource(self) -> Path:
        return CHECKS_DIR / "datasources" / f"{self.warehouse.value}.yml"


LOADER_FILE_FORMAT = "parquet"


def load_settings(warehouse: str | None = None) -> Settings:
    """Resolve the warehouse (argument, else ``ELT_WAREHOUSE``, else DuckDB) and its credentials."""
    apply_runtime_environment()
    use_prefect_secret_blocks()
    chosen = Warehouse.parse(warehouse or os.environ.get("ELT_WAREHOUSE") or "duckdb")
    duckdb_path = Path(os.environ.get("ELT_DUCKDB_PATH") or data_dir() / "warehouse.duckdb").resolve()
    return Settings(
        warehouse=chosen,
        duckdb_path=duckdb_path,
        dbt_schema=os.environ.get("ELT_DBT_SCHEMA", "analytics"),
        ingest_retries=_int_setting("ELT_INGEST_RETRIES", 2),
        credentials=_warehouse_credentials(chosen),
    )


def flow_retries() -> int:
    """``ELT_FLOW_RETRIES`` (default 0): how often Prefect retries a failed ``elt`` run.

    A retry re-ingests (already loaded rows are not loaded again) and re-runs only the
    dbt nodes that failed and their children; read when flows/elt.py is imported.
    """
    return _int_setting("ELT_FLOW_RETRIES", 0)


def _int_setting(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def _warehouse_credentials(warehouse: Warehouse) -> Any:
    """Resolve cloud credentials through dlt's providers: env vars or ``.dlt/secrets.toml``."""
    if warehouse is Warehouse.DUCKDB:
        return None
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
    except ConfigFieldMissingException as exc:
        missing = ", ".join(
            f"DESTINATION__{warehouse.value.upper()}__CREDENTIALS__{name.upper()}" for name in exc.traces
        )
        raise ConfigError(
            f"{warehouse.value} credentials are incomplete: set {missing} "
            f"(or [destination.{warehouse.value}.credentials] in .dlt/secrets.toml)"
        ) from None
