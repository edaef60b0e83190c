"""Soda v4 data-contract gate: verify contracts and fail closed.

Soda itself reports a contract as fine when checks could not be evaluated, or a
query errored: ``soda contract verify`` exits 0 and ``is_ok`` is True for a
schema check that ended NOT_EVALUATED. Here a contract passes only when it has
at least one check and every check PASSED (WARN is tolerated), with no errors.

The logic is plain Python (``verify_contract`` / ``verify_contracts``); the only
Prefect code is the ``run_contracts`` task at the bottom.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from ruamel.yaml import YAML, YAMLError

from flows.config import CHECKS_DIR, Settings, Warehouse
from flows.redact import redact, secret_values
from flows.results import CheckRecord, ContractResult, Outcome

# Soda reads this once, when soda_core's API module is first imported, and would
# otherwise send anonymous usage traces to collect.soda.io (and install a global
# OpenTelemetry exporter). Soda is only imported lazily below, after this line.
os.environ["SODA_CORE_TELEMETRY_ENABLED"] = "false"

LAYERS: tuple[str, ...] = ("raw", "marts")

logger = logging.getLogger(__name__)

# Soda's own substitution syntax, e.g. ${env.ELT_DUCKDB_PATH} or ${var.MARTS_SCHEMA}.
_ENV_REF = re.compile(r"\$\{ *env\.([a-zA-Z_][a-zA-Z_0-9]*) *\}")
_YAML_ERRORS: tuple[type[Exception], ...] = (YAMLError, OSError, UnicodeDecodeError)


# Contracts spell column types as DuckDB does. Where a warehouse names a type otherwise
# and Soda's own synonyms for that warehouse do not cover it, the contract's type is
# translated before Soda compares it (keys: the contract's spelling, lower case).
WAREHOUSE_DATA_TYPES: dict[Warehouse, dict[str, str]] = {
    Warehouse.DUCKDB: {},
    Warehouse.SNOWFLAKE: {
        "json": "variant",
        "timestamp with time zone": "timestamp_tz",
    },
    Warehouse.BIGQUERY: {
        "bigint": "int64",
        "varchar": "string",
        "double": "float64",
        "boolean": "bool",
        "decimal": "numeric",
        "timestamp with time zone": "timestamp",
    },
}

# Column properties a warehouse's Soda dialect cannot read back, dropped before Soda runs.
# soda-bigquery reports every NUMERIC column as numeric(38,9), whatever it was declared
# (BigQuery's INFORMATION_SCHEMA.COLUMNS has no precision or scale): "expected
# numeric(12,2) got numeric(38,9)".
WAREHOUSE_UNCHECKED_COLUMN_KEYS: dict[Warehouse, tuple[str, ...]] = {
    Warehouse.BIGQUERY: ("numeric_precision", "numeric_scale"),
}


@dataclass(frozen=True)
class ContractTarget:
    """Where a contract, written once for every warehouse, is checked.

    Contracts name their table ``warehouse/<schema>/<table>`` and spell types as DuckDB
    does, so one file serves DuckDB, Snowflake and BigQuery and a newcomer finds it by the
    table's name. Before Soda reads it, the catalog the warehouse needs goes in front of
    the schema (Snowflake database, BigQuery project), literal schema names get the
    environment's prefix (``dev_alice_raw_shop``), and types are translated.
    """

    catalog: str | None = None
    schema_prefix: str = ""
    data_types: Mapping[str, str] = field(default_factory=dict)
    # Snowflake stores the names dlt and dbt create in upper case, and Soda quotes every
    # name as written ("raw_shop"."orders" does not exist there): schema, table and column
    # names go upper case. (The emulator's DuckDB ignores case in quoted names, but its
    # INFORMATION_SCHEMA does not: a lower-case contract ends its schema check NOT_EVALUATED.)
    upper_case_names: bool = False
    unchecked_column_keys: tuple[str, ...] = ()

    @classmethod
    def for_settings(cls, settings: Settings) -> ContractTarget:
        return cls(
            catalog=settings.catalog,
            schema_prefix=settings.schema_prefix,
            data_types=WAREHOUSE_DATA_TYPES[settings.warehouse],
            upper_case_names=settings.warehouse is Warehouse.SNOWFLAKE,
            unchecked_column_keys=WAREHOUSE_UNCHECKED_COLUMN_KEYS.get(settings.warehouse, ()),
        )

    @property
    def is_identity(self) -> bool:
        return (
            self.catalog is None
            and not self.schema_prefix
            and not self.data_types
            and not self.upper_case_names
            and not self.unchecked_column_keys
        )

    def render_variables(self, contract_doc: Any, variables: Mapping[str, str]) -> dict[str, str]:
        """Variables as this warehouse needs them: those naming a schema in ``dataset`` upper-cased."""
        rendered = dict(variables)
        if self.upper_case_names and isinstance(contract_doc, dict):
            for name in re.findall(r"\$\{ *var\.(\w+) *\}", str(contract_doc.get("dataset", ""))):
                if name in rendered:
                    rendered[name] = rendered[name].upper()
        return rendered

    def _name(self, name: str) -> str:
        return name.upper() if self.upper_case_names and not name.startswith("${") else name

    def render(self, contract_doc: dict[str, Any]) -> dict[str, Any]:
        """The contract as this warehouse and environment need it (the input is not changed)."""
        rendered = dict(contract_doc)
        datasource, *prefixes, table = str(contract_doc["dataset"]).split("/")
        # a schema given by a variable (${var.MARTS_SCHEMA}) is the flow's, already prefixed
        schemas = [part if part.startswith("${") else self.schema_prefix + part for part in prefixes]
        catalog = [self.catalog] if self.catalog else []
        rendered["dataset"] = "/".join([datasource, *catalog, *map(self._name, schemas), self._name(table)])
        if "columns" in contract_doc:
            rendered["columns"] = [self._render_column(column) for column in contract_doc["columns"]]
        if self.upper_case_names and "checks" in contract_doc:
            rendered["checks"] = [self._render_check(check) for check in contract_doc["checks"] or []]
        return rendered

    def _render_column(self, column: dict[str, Any]) -> dict[str, Any]:
        if isinstance(column.get("name"), str):
            column = column | {"name": self._name(column["name"])}
        if self.unchecked_column_keys:
            column = {key: value for key, value in column.items() if key not in self.unchecked_column_keys}
        data_type = column.get("data_type")
        if not isinstance(data_type, str) or data_type.lower() not in self.data_types:
            return column
        return column | {"data_type": self.data_types[data_type.lower()]}

    def _render_check(self, check: Any) -> Any:
        """A dataset check naming a column (freshness's ``column:``) names it as the warehouse does."""
        if not isinstance(check, dict):
            return check
        return {
            kind: (body | {"column": self._name(body["column"])})
            if isinstance(body, dict) and isinstance(body.get("column"), str)
            else body
            for kind, body in check.items()
        }


class ContractsFailed(Exception):
    """Raised by ``run_contracts`` after all contracts of a layer ran and any failed."""

    def __init__(self, message: str, results: list[ContractResult] | None = None) -> None:
        super().__init__(message)
        self.results: list[ContractResult] = results or []


def verify_contract(
    contract: Path,
    datasource: Path,
    variables: dict[str, str] | None = None,
    target: ContractTarget | None = None,
) -> ContractResult:
    """Verify one contract with Soda's Python API; never raises for a bad contract or warehouse.

    ``target`` (default: DuckDB, production names) renders the contract for the warehouse.
    """
    contract = Path(contract)
    datasource = Path(datasource)
    started = time.perf_counter()
    dataset = contract.stem

    def failed(error: str) -> ContractResult:
        return ContractResult(
            contract=contract,
            dataset=dataset,
            passed=False,
            error=error,
            duration_s=time.perf_counter() - started,
        )

    if not contract.is_file():
        return failed(f"contract file {contract} not found")
    if not datasource.is_file():
        return failed(f"data source file {datasource} not found")

    try:
        env_names = _env_references(_load_yaml(datasource))
    except _YAML_ERRORS as exc:
        return failed(f"data source {datasource} is not valid YAML: {exc}")
    missing_env = sorted(name for name in env_names if name not in os.environ)
    if missing_env:
        # Soda would keep the literal '${env.X}' text, and DuckDB would happily create a file of that name.
        return failed(
            f"data source {datasource} needs environment variable(s) {', '.join(missing_env)}, not set"
        )
    secrets = secret_values(sorted(env_names))

    try:
        contract_doc = _load_yaml(contract)
    except _YAML_ERRORS as exc:
        return failed(f"contract is not valid YAML: {exc}")
    if isinstance(contract_doc, dict) and isinstance(contract_doc.get("dataset"), str):
        dataset = contract_doc["dataset"].rsplit("/", 1)[-1]
    schema_errors = _contract_schema_errors(contract_doc)
    if schema_errors:
        # Soda ignores unknown keys (a typo'd 'threshhold' or 'allow_extra_column' is silently dropped),
        # so validate against the JSON schema Soda ships but does not enforce.
        return failed("contract does not match Soda's contract schema: " + "; ".join(schema_errors))

    try:
        with _soda_logging(secrets), _rendered(contract, contract_doc, target) as contract_file:
            from soda_core.contracts.api.verify_api import verify_contract_locally

            session = verify_contract_locally(
                data_source_file_path=str(datasource),
                contract_file_path=str(contract_file),
                variables=target.render_variables(contract_doc, variables or {})
                if target is not None
                else dict(variables or {}),
            )
    except Exception as exc:
        return failed(redact(f"{type(exc).__name__}: {exc}", secrets))

    return _to_contract_result(contract, dataset, session, secrets, time.perf_counter() - started)


def verify_contracts(
    paths: list[Path],
    datasource: Path,
    variables: dict[str, str] | None = None,
    target: ContractTarget | None = None,
) -> list[ContractResult]:
    """Verify every contract, in order, without stopping at the first failure."""
    return [verify_contract(path, datasource, variables, target) for path in paths]


def contract_paths(
    layer: str, checks_dir: Path = CHECKS_DIR, sources: Sequence[str] | None = None
) -> list[Path]:
    """All contracts of a layer, ``checks/<layer>/**/*.yml``, sorted for stable reports.

    ``sources`` narrows the raw layer to ``checks/raw/<source>/`` for runs that
    load only some sources.
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown contract layer {layer!r}; expected one of {', '.join(LAYERS)}")
    folders = [Path(checks_dir) / layer]
    if sources is not None and layer == "raw":
        folders = [folder / source for folder in folders for source in sources]
    return sorted(p for folder in folders for p in folder.glob("**/*.yml") if p.is_file())


# NO_CACHE: the same inputs must re-verify the data, which may have changed since the last call.
@task(name="run-contracts", cache_policy=NO_CACHE)
def run_contracts(
    layer: str,
    datasource: Path,
    variables: dict[str, str] | None = None,
    checks_dir: Path = CHECKS_DIR,
    sources: Sequence[str] | None = None,
    target: ContractTarget | None = None,
) -> list[ContractResult]:
    """Gate a layer: verify all of its contracts, log each, raise ContractsFailed if any failed."""
    log = _task_logger()
    paths = contract_paths(layer, checks_dir, sources)
    if not paths:
        # An empty gate would pass everything; a missing checks dir is a deployment bug.
        raise ContractsFailed(f"no contracts found for layer {layer!r} under {Path(checks_dir) / layer}")

    results = verify_contracts(paths, datasource, variables, target)
    for result in results:
        (log.info if result.passed else log.error)(result.summary())

    failures = [result for result in results if not result.passed]
    if failures:
        message = f"{len(failures)} of {len(results)} {layer} contracts failed:\n" + "\n".join(
            result.failure_message() for result in failures
        )
        raise ContractsFailed(message, results)
    log.info("all %d %s contracts passed", len(results), layer)
    return results


# --- helpers -----------------------------------------------------------------------------------------


def _to_contract_result(
    contract: Path, dataset: str, session: Any, secrets: list[str], duration_s: float
) -> ContractResult:
    """Turn Soda's session result into our fail-closed ContractResult."""
    errors = [redact(message, secrets) for message in session.get_errors()]
    results = session.contract_verification_results
    if len(results) != 1:
        error = "; ".join(errors) or f"Soda returned {len(results)} results for one contract"
        return ContractResult(
            contract=contract,
            dataset=dataset,
            passed=False,
            error=error,
            duration_s=duration_s,
        )

    soda_result = results[0]
    run_errored = bool(errors) or soda_result.has_errors
    checks = [_to_check_record(check_result, run_errored) for check_result in soda_result.check_results]
    collection = soda_result.check_collection
    error = "; ".join(errors) if errors else ("Soda reported an error" if soda_result.has_errors else None)
    passed = bool(checks) and all(check.ok for check in checks) and error is None
    return ContractResult(
        contract=contract,
        dataset=_table_name(collection.soda_qualified_dataset_name) or dataset,
        passed=passed,
        checks=checks,
        error=error,
        qualified_name=collection.soda_qualified_dataset_name,
        duration_s=duration_s,
    )


@contextmanager
def _rendered(contract: Path, contract_doc: Any, target: ContractTarget | None) -> Iterator[Path]:
    """The contract file Soda reads: the file itself, or its rendering for the target."""
    if target is None or target.is_identity:
        yield contract
        return
    with tempfile.TemporaryDirectory(prefix="elt-contract-") as folder:
        rendered = Path(folder) / contract.name
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        with rendered.open("w") as handle:
            yaml.dump(target.render(contract_doc), handle)
        yield rendered


def _table_name(qualified: str | None) -> str | None:
    """``warehouse/raw_shop/orders`` → ``raw_shop.orders``: what a person searches the warehouse for."""
    if not qualified or "/" not in qualified:
        return None
    return ".".join(qualified.split("/")[1:])


def _to_check_record(check_result: Any, run_errored: bool) -> CheckRecord:
    """Map one Soda CheckResult; a check skipped because of an error becomes ERROR."""
    check = check_result.check
    outcome = Outcome(check_result.outcome.name)
    if outcome is Outcome.NOT_EVALUATED and run_errored:
        outcome = Outcome.ERROR
    diagnostics = dict(check_result.diagnostic_metric_values or {})
    value = check_result.threshold_value
    # Name the measured value after the diagnostic that carries it: missing_count, or missing_percent
    # when the threshold uses `metric: percent`.
    candidates = (f"{check.type}_count", f"{check.type}_percent", "schema_events_count")
    metric = next(
        (key for key in candidates if key in diagnostics and diagnostics[key] == value),
        check.type,
    )
    return CheckRecord(
        name=check.name or check.type,
        type=check.type,
        column=check.column_name,
        outcome=outcome,
        metric=metric if value is not None else None,
        value=value,
        details=_schema_details(check_result) if check.type == "schema" else None,
        diagnostics=diagnostics,
    )


def _schema_details(check_result: Any) -> str | None:
    """Say which columns are missing, unexpected or mistyped, not just how many."""
    facts = []
    missing = getattr(check_result, "expected_column_names_not_actual", None)
    if missing:
        facts.append(f"missing columns: {', '.join(missing)}")
    extra = getattr(check_result, "actual_column_names_not_expected", None)
    if extra:
        facts.append(f"unexpected columns: {', '.join(extra)}")
    mismatches = getattr(check_result, "column_data_type_mismatches", None)
    if mismatches:
        facts.append(
            "type mismatches: "
            + ", ".join(f"{m.column} expected {m.get_expected()} got {m.get_actual()}" for m in mismatches)
        )
    if getattr(check_result, "are_columns_out_of_order", False):
        facts.append("columns out of order")
    if check_result.outcome.name == "NOT_EVALUATED" and not getattr(check_result, "actual_columns", None):
        facts.append("no columns found for the dataset; check the qualifier is <datasource>/<schema>/<table>")
    return "; ".join(facts) or None


def _env_references(node: Any) -> set[str]:
    """Names of ``${env.X}`` references in string values (Soda ignores them in comments and keys)."""
    if isinstance(node, dict):
        return set().union(*(_env_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_references(value) for value in node))
    if isinstance(node, str):
        return set(_ENV_REF.findall(node))
    return set()


def _load_yaml(path: Path) -> Any:
    """Parse YAML the way Soda does (ruamel is a soda-core dependency)."""
    return YAML(typ="safe", pure=True).load(path.read_text())


@functools.cache
def _contract_validator() -> Any:
    """soda-core ships this JSON schema but (in 4.28) never validates against it."""
    import jsonschema
    import soda_core.contracts

    schema_file = Path(soda_core.contracts.__file__).parent / "soda_data_contract_json_schema_1_0_0.json"
    schema = json.loads(schema_file.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _contract_schema_errors(contract_doc: Any) -> list[str]:
    """Validate against soda_core's bundled contract JSON schema (unknown keys, wrong shapes)."""
    import jsonschema

    messages = []
    for error in _contract_validator().iter_errors(contract_doc):
        best = jsonschema.exceptions.best_match([error])
        location = best.json_path if best.path else error.json_path
        messages.append(f"{location}: {best.message}")
    return sorted(set(messages))


class _MaskSecrets(logging.Filter):
    """Replace secret values in Soda's log records before any handler sees them."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and self.secrets:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True


@contextmanager
def _soda_logging(secrets: list[str]) -> Iterator[None]:
    """Keep Soda's INFO chatter (result tables, 'Found N columns') out of our logs and mask secrets.

    The 'soda' logger must keep propagating: Soda detects errors through a handler on the root logger,
    so raising its level above ERROR or disabling propagation would hide errors from Soda itself.
    """
    soda_logger = logging.getLogger("soda")
    previous_level = soda_logger.level
    # Respect an explicit level someone set for debugging.
    if previous_level == logging.NOTSET:
        soda_logger.setLevel(logging.WARNING)
    mask = _MaskSecrets(secrets)
    soda_logger.addFilter(mask)
    try:
        yield
    finally:
        soda_logger.removeFilter(mask)
        soda_logger.setLevel(previous_level)


def _task_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run, the module logger when called via ``run_contracts.fn``."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger
