"""The one place where the settings are resolved: the warehouse, its credentials, the environment.

Why: the dlt destination, the dbt target and the Soda data source must all point
at the same warehouse with the same credentials. ``ELT_WAREHOUSE`` picks the plug-in
(``flows/warehouses/``); it reads its credentials once, through dlt's config providers
(environment variables, ``.dlt/secrets.toml``, or Prefect Secret blocks, see
``flows/secrets.py``), and hands them to dbt and Soda as process environment
variables that ``transform/profiles.yml`` and ``checks/datasources/*.yml`` read.
No tool keeps a second copy of a secret.

This module imports Prefect only when Prefect Secret blocks are switched on.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.errors import ConfigError
from flows.secrets import use_prefect_secret_blocks
from flows.setting_values import float_setting, int_setting
from flows.warehouses import DEFAULT_WAREHOUSE, Warehouse, warehouse_named

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

    # the plug-in of flows/warehouses/ that ELT_WAREHOUSE named
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
        environment = f"{self.warehouse.name}_{self.schema_prefix}".rstrip("_")
        return data_dir() / "dlt" / "pipelines" / environment

    def dlt_destination(self) -> Any:
        """The dlt destination of the chosen warehouse."""
        return self.warehouse.dlt_destination(self)

    def tool_environment(self) -> dict[str, str]:
        """Environment variables read by ``transform/profiles.yml`` and the Soda data sources."""
        return {
            "ELT_WAREHOUSE": self.warehouse.name,
            "ELT_DBT_TARGET": self.warehouse.name,
            # profiles.yml puts the prefix in front, as the dbt sources do
            "ELT_DBT_SCHEMA": self.dbt_schema.removeprefix(self.schema_prefix),
            "ELT_SCHEMA_PREFIX": self.schema_prefix,
        } | self.warehouse.tool_environment(self)

    def login_error(self, exc: BaseException) -> ConfigError | None:
        """A refused login or unreachable warehouse in ``exc``, as a ConfigError naming the setting."""
        return self.warehouse.login_error(self, exc)

    def export_tool_environment(self) -> None:
        """Make the derived settings visible to dbt and Soda, which run in this process."""
        os.environ.update(self.tool_environment())

    @property
    def catalog(self) -> str | None:
        """What a warehouse puts in front of schema names: Snowflake database, BigQuery project."""
        return self.warehouse.catalog(self)

    @property
    def soda_datasource(self) -> Path:
        """The Soda data source file for this warehouse and its login method."""
        return CHECKS_DIR / "datasources" / f"{self.warehouse.soda_datasource(self)}.yml"

    @property
    def loader_file_format(self) -> str:
        """dlt's load file format on this warehouse."""
        return self.warehouse.loader_file_format


def load_settings(warehouse: str | None = None) -> Settings:
    """Resolve the warehouse (argument, else ``ELT_WAREHOUSE``, else DuckDB) and its credentials."""
    apply_runtime_environment()
    use_prefect_secret_blocks()
    # imported here: the warehouse modules import ConfigError and the setting helpers from this one

    chosen = warehouse_named(warehouse or os.environ.get("ELT_WAREHOUSE") or DEFAULT_WAREHOUSE)
    duckdb_path = Path(os.environ.get("ELT_DUCKDB_PATH") or data_dir() / "warehouse.duckdb").resolve()
    prefix = schema_prefix()
    return Settings(
        warehouse=chosen,
        duckdb_path=duckdb_path,
        dbt_schema=prefix + os.environ.get("ELT_DBT_SCHEMA", "analytics"),
        ingest_retries=int_setting("ELT_INGEST_RETRIES", 2),
        retry_delay_s=float_setting("ELT_RETRY_DELAY_SECONDS", 10.0),
        credentials=chosen.resolve_credentials(),
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
        prefix = developer_prefix()
    else:
        prefix = ""
    if prefix and not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
        raise ConfigError(
            f"ELT_SCHEMA_PREFIX={prefix!r}: use lower-case letters, digits and underscores, "
            "starting with a letter"
        )
    return prefix


def developer_prefix() -> str:
    """``dev_<developer>_``: ``ELT_DEVELOPER``, else the login name, in lower-case letters, digits, ``_``."""
    developer = os.environ.get("ELT_DEVELOPER") or getpass.getuser()
    return "dev_" + re.sub(r"[^a-z0-9]+", "_", developer.lower()).strip("_") + "_"


def flow_retries() -> int:
    """``ELT_FLOW_RETRIES`` (default 0): how often Prefect retries a failed ``elt`` run.

    A retry re-ingests (already loaded rows are not loaded again) and re-runs only the
    dbt nodes that failed and their children; read when flows/elt.py is imported.
    """
    return int_setting("ELT_FLOW_RETRIES", 0)


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
