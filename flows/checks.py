"""Soda v4 data-contract gate: verify contracts and fail closed.

Soda itself reports a contract as fine when checks could not be evaluated, or a
query errored: ``soda contract verify`` exits 0 and ``is_ok`` is True for a
schema check that ended NOT_EVALUATED. Here a contract passes only when it has
at least one check and every check PASSED (WARN is tolerated), with no errors.

The logic is plain Python (``verify_contract`` / ``verify_contracts``); the only
Prefect code is the ``run_contracts`` task at the bottom.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from flows.config import CHECKS_DIR
from flows.contract_target import ContractTarget, rendered_contract
from flows.redact import redact, secret_values
from flows.results import CheckRecord, ContractResult, Outcome
from flows.soda_support import (
    YAML_ERRORS,
    contract_schema_errors,
    env_references,
    load_yaml,
    quiet_soda_logging,
)

# Soda reads this once, when soda_core's API module is first imported, and would
# otherwise send anonymous usage traces to collect.soda.io (and install a global
# OpenTelemetry exporter). Soda is only imported lazily below, after this line.
os.environ["SODA_CORE_TELEMETRY_ENABLED"] = "false"

LAYERS: tuple[str, ...] = ("raw", "marts")

logger = logging.getLogger(__name__)


class ContractsFailed(Exception):
    """Raised by ``run_contracts`` after all contracts of a layer ran and any failed."""

    def __init__(self, message: str, results: list[ContractResult] | None = None) -> None:
        super().__init__(message)
        self.results: list[ContractResult] = results or []

    @property
    def failed_tables(self) -> list[str]:
        """The failing contracts' tables, without their schema, in name order."""
        return sorted({result.dataset.rsplit(".", 1)[-1] for result in self.results if not result.passed})


def verify_contract(
    contract: Path,
    datasource: Path,
    variables: dict[str, str] | None = None,
    target: ContractTarget | None = None,
    connected: Any | None = None,
) -> ContractResult:
    """Verify one contract with Soda's Python API; never raises for a bad contract or warehouse.

    ``target`` (default: DuckDB, production names) renders the contract for the warehouse;
    ``connected``: ``datasource`` already open (``verify_contracts``), else Soda opens it.
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
        env_names = env_references(load_yaml(datasource))
    except YAML_ERRORS as exc:
        return failed(f"data source {datasource} is not valid YAML: {exc}")
    missing_env = sorted(name for name in env_names if name not in os.environ)
    if missing_env:
        # Soda would keep the literal '${env.X}' text, and DuckDB would happily create a file of that name.
        return failed(
            f"data source {datasource} needs environment variable(s) {', '.join(missing_env)}, not set"
        )
    secrets = secret_values(sorted(env_names))

    try:
        contract_doc = load_yaml(contract)
    except YAML_ERRORS as exc:
        return failed(f"contract is not valid YAML: {exc}")
    if isinstance(contract_doc, dict) and isinstance(contract_doc.get("dataset"), str):
        dataset = contract_doc["dataset"].rsplit("/", 1)[-1]
    schema_errors = contract_schema_errors(contract_doc)
    if schema_errors:
        # Soda ignores unknown keys (a typo'd 'threshhold' or 'allow_extra_column' is silently dropped),
        # so validate against the JSON schema Soda ships but does not enforce.
        return failed("contract does not match Soda's contract schema: " + "; ".join(schema_errors))

    try:
        with quiet_soda_logging(secrets), rendered_contract(contract, contract_doc, target) as contract_file:
            from soda_core.contracts.api.verify_api import verify_contract_locally

            session = verify_contract_locally(
                data_source_file_path=None if connected else str(datasource),
                data_sources=[connected] if connected else [],
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
    with _connected(datasource) as connected:
        return [verify_contract(path, datasource, variables, target, connected) for path in paths]


@contextmanager
def _connected(datasource: Path) -> Iterator[Any | None]:
    """The data source, opened once for a layer's contracts. Why: given only its file, Soda
    parses it and opens a connection for every contract (on DuckDB ~0.1 s an open, 21
    contracts a run). None when it cannot be opened here: each contract then reports the
    reason itself, as without this."""
    connected = None
    try:
        names = sorted(env_references(load_yaml(datasource)))
        if all(name in os.environ for name in names):
            with quiet_soda_logging(secret_values(names)):
                from soda_core.common.data_source_impl import DataSourceImpl
                from soda_core.common.yaml import DataSourceYamlSource

                source = DataSourceYamlSource.from_file_path(str(datasource))
                connected = DataSourceImpl.from_yaml_source(source)
                connected.open_connection()
    except Exception:  # reported by each contract's own attempt
        connected = None
    if connected is not None and not connected.has_open_connection():
        connected = None
    try:
        yield connected
    finally:
        if connected is not None:
            connected.close_connection()


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


def contracts_of(
    tables: Sequence[str], paths: Sequence[Path], folder: Path
) -> tuple[list[Path], list[ContractResult]]:
    """The contracts among ``paths`` of ``tables``, and a failed verdict for each table that
    has none: nothing is published, or passes a dev or CI build, unchecked."""
    kept = [path for path in paths if path.stem in tables]
    missing = [
        ContractResult(
            folder / f"{table}.yml",
            table,
            passed=False,
            error=f"table {table} has no contract; write one (`elt contracts scaffold {table}`)",
        )
        for table in sorted(set(tables) - {path.stem for path in kept})
    ]
    return kept, missing


# NO_CACHE: the same inputs must re-verify the data, which may have changed since the last call.
@task(name="run-contracts", cache_policy=NO_CACHE)
def run_contracts(
    layer: str,
    datasource: Path,
    variables: dict[str, str] | None = None,
    checks_dir: Path = CHECKS_DIR,
    sources: Sequence[str] | None = None,
    target: ContractTarget | None = None,
    tables: Sequence[str] | None = None,
) -> list[ContractResult]:
    """Gate a layer: verify all of its contracts, log each, raise ContractsFailed if any failed.

    ``tables`` narrows the gate to the contracts of those tables (the marts a run built);
    a table without a contract fails it: nothing is published unchecked.
    """
    log = _task_logger()
    paths = contract_paths(layer, checks_dir, sources)
    if not paths:
        # An empty gate would pass everything; a missing checks dir is a deployment bug.
        raise ContractsFailed(f"no contracts found for layer {layer!r} under {Path(checks_dir) / layer}")
    unchecked: list[ContractResult] = []
    if tables is not None:
        paths, unchecked = contracts_of(tables, paths, Path(checks_dir) / layer)

    results = verify_contracts(paths, datasource, variables, target) + unchecked
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


def _task_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run, the module logger when called via ``run_contracts.fn``."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger
