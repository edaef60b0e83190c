"""Column rules written in more than one place agree with the one place that is the truth.

Raw tables: the dlt declaration (``dlt_sources/<source>/``, or the source's YAML for
declarative sources) is the truth. The raw contract ``checks/raw/<source>/<table>.yml``
and the dbt sources YAML ``transform/models/staging/<source>/_<source>__sources.yml`` may
each list only columns it declares (plus ``_dlt_load_id``, which dlt adds), and a contract
type must be the DuckDB spelling of the declared dlt type. Neither file has to list every
declared column, and neither is a subset of the other today (GitHub's sources YAML
documents fewer columns than its contracts check, Stripe's documents some they do not),
so both are held to the declaration rather than to each other.

Marts: ``transform/models/marts/<mart>.yml``, where analytics engineers work, is the truth.
``checks/marts/<mart>.yml`` must list exactly its columns, with its ``data_type`` where it
states one, and state its not_null / unique / accepted_values tests as Soda ``missing`` /
``duplicate`` / ``invalid`` with ``valid_values``, and no such rule the dbt YAML lacks.

Fast on purpose: files are parsed and the sources' declarations imported; no warehouse,
no network. A failure names the file that disagrees, the table and the column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from dlt.common.schema.utils import dlt_load_id_column

from dlt_sources import rest
from dlt_sources.github import settings as github_settings
from dlt_sources.github.helpers import column_hints as github_column_hints
from dlt_sources.stripe.columns import COLUMNS as STRIPE_COLUMNS

# The scaffold writes contracts with this dlt -> DuckDB spelling; checking with the same
# table keeps scaffolded and hand-written contracts alike.
from flows.scaffold import _DUCKDB_TYPES

REPO = Path(__file__).resolve().parents[2]
RAW_CONTRACTS = REPO / "checks" / "raw"
MART_CONTRACTS = REPO / "checks" / "marts"
STAGING_MODELS = REPO / "transform" / "models" / "staging"
MART_MODELS = REPO / "transform" / "models" / "marts"

ColumnTypes = dict[str, str | None]
"""Column -> data type as the contracts spell it (DuckDB); None where none is stated."""

COLUMNS_READ_AT_LOAD_TIME: dict[str, str] = {
    "shop": "CDC (dlt_sources/postgres_cdc) reads its columns from PostgreSQL's catalog at load time",
}
"""Sources with no static column declaration, and why: their raw contract stands in as the truth."""


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO))


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ----------------------------------------------------------------------------- raw tables


@dataclass(frozen=True)
class Declared:
    """A table's columns, where they are declared and, if that is not dlt, why (for the messages)."""

    where: str
    columns: ColumnTypes
    why_there: str = ""


def _duckdb_type(dlt_type: str | None) -> str | None:
    """The contracts' spelling of a dlt data type; types DuckDB spells alike (decimal) pass through."""
    return _DUCKDB_TYPES.get(dlt_type, dlt_type) if dlt_type else None


def _duckdb_types(hints: Mapping[str, Mapping[str, Any]]) -> ColumnTypes:
    """DuckDB types of dlt column hints, with the `_dlt_load_id` dlt adds to every table."""
    load_id = dlt_load_id_column()
    columns = {**hints, load_id["name"]: load_id}
    return {name: _duckdb_type(hint.get("data_type")) for name, hint in columns.items()}


@cache
def dlt_declarations() -> dict[tuple[str, str], Declared]:
    """(source, table) -> its declared columns, for every source that declares them in code or YAML."""
    declarations = {
        ("stripe", table): Declared("dlt_sources/stripe", _duckdb_types(hints))
        for table, hints in STRIPE_COLUMNS.items()
    }
    declarations |= {
        ("github", table): Declared("dlt_sources/github", _duckdb_types(github_column_hints(table)))
        for table in github_settings.RESOURCES
    }
    for path in sorted(rest.DEFAULT_DIR.glob("*.yml")):
        config = rest.load_file(path)
        declarations |= {
            (config.name, resource.name): Declared(_shown(path), _duckdb_types(resource.columns))
            for resource in config.resources
        }
    return declarations


def raw_contract_path(source: str, table: str) -> Path:
    return RAW_CONTRACTS / source / f"{table}.yml"


def dbt_sources_path(source: str) -> Path:
    return STAGING_MODELS / source / f"_{source}__sources.yml"


def contract_columns(path: Path) -> dict[str, dict[str, Any]]:
    """A Soda contract's columns by name."""
    return {column["name"]: column for column in _read_yaml(path).get("columns") or []}


def dbt_source_tables(path: Path) -> dict[str, list[str]]:
    """Raw table -> the columns a dbt sources YAML documents for it."""
    return {
        table["name"]: [column["name"] for column in table.get("columns") or []]
        for source in _read_yaml(path)["sources"]
        for table in source.get("tables") or []
    }


def _raw_tables() -> list[tuple[str, str]]:
    """(source, table) of every raw contract and every table of a dbt sources YAML."""
    with_contract = {(path.parent.name, path.stem) for path in RAW_CONTRACTS.glob("*/*.yml")}
    in_dbt_sources = {
        (path.parent.name, table)
        for path in STAGING_MODELS.glob("*/_*__sources.yml")
        for table in dbt_source_tables(path)
    }
    return sorted(with_contract | in_dbt_sources)


def _raw_truth(source: str, table: str) -> Declared:
    """The dlt declaration of the table or, for a source that reads its columns at load time, its contract."""
    contract = raw_contract_path(source, table)
    if source in COLUMNS_READ_AT_LOAD_TIME:
        columns = {name: column.get("data_type") for name, column in contract_columns(contract).items()}
        why = f" (raw_{source} has no static dlt declaration: {COLUMNS_READ_AT_LOAD_TIME[source]})"
        return Declared(_shown(contract), columns, why)
    declared = dlt_declarations().get((source, table))
    if declared is None:
        pytest.fail(
            f"{_shown(contract)}: no dlt declaration of table `{table}` (raw_{source}) is known here; "
            "add it to dlt_declarations(), or the source to COLUMNS_READ_AT_LOAD_TIME if it has none"
        )
    return declared


def _undeclared(file: Path, columns: Iterable[str], truth: Declared, table: str) -> list[str]:
    return [
        f"{_shown(file)} lists column `{name}` that {truth.where} declares nowhere for table `{table}`"
        f"{truth.why_there}"
        for name in columns
        if name not in truth.columns
    ]


def _mistyped(contract: Path, columns: dict[str, dict[str, Any]], truth: Declared, table: str) -> list[str]:
    problems = []
    for name, column in columns.items():
        declared, typed = truth.columns.get(name), column.get("data_type")
        if declared is not None and typed != declared:
            problems.append(
                f"{_shown(contract)} types column `{name}` of table `{table}` as {typed or 'nothing'}, "
                f"where {truth.where} declares {declared}"
            )
    return problems


RAW_TABLES = _raw_tables()


@pytest.mark.parametrize(("source", "table"), RAW_TABLES, ids=[".".join(pair) for pair in RAW_TABLES])
def test_raw_columns_are_the_declared_ones(source: str, table: str) -> None:
    """The raw contract and the dbt sources YAML list only declared columns, contracts with their types.

    For a source whose columns are read at load time (COLUMNS_READ_AT_LOAD_TIME) the raw
    contract is the truth, and the dbt sources YAML is checked against it.
    """
    contract, dbt_sources = raw_contract_path(source, table), dbt_sources_path(source)
    assert contract.exists(), (
        f"{_shown(dbt_sources)} documents raw_{source}.{table}, which has no contract {_shown(contract)}"
    )
    documented = dbt_source_tables(dbt_sources) if dbt_sources.exists() else {}
    assert table in documented, (
        f"{_shown(contract)} checks raw_{source}.{table}, which {_shown(dbt_sources)} does not declare"
    )
    truth = _raw_truth(source, table)
    checked = contract_columns(contract)
    problems = [
        *_undeclared(contract, checked, truth, table),
        *_undeclared(dbt_sources, documented[table], truth, table),
        *_mistyped(contract, checked, truth, table),
    ]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------- marts


SODA_CHECK_OF_DBT_TEST = {"not_null": "missing", "unique": "duplicate", "accepted_values": "invalid"}
DBT_TEST_OF_SODA_CHECK = {check: test for test, check in SODA_CHECK_OF_DBT_TEST.items()}


@dataclass(frozen=True)
class ColumnRule:
    """A column rule both dbt and Soda state, named as dbt's generic test."""

    dbt_test: str
    accepted_values: tuple[str, ...] = ()

    def in_dbt(self) -> str:
        return (
            f"`{self.dbt_test}` {list(self.accepted_values)}"
            if self.accepted_values
            else f"`{self.dbt_test}`"
        )

    def in_soda(self) -> str:
        check = f"`{SODA_CHECK_OF_DBT_TEST[self.dbt_test]}`"
        return f"{check} with valid_values {list(self.accepted_values)}" if self.accepted_values else check


@dataclass(frozen=True)
class MartColumn:
    data_type: str | None
    rules: frozenset[ColumnRule]


MartColumns = dict[str, MartColumn]


def _values(values: Any) -> tuple[str, ...]:
    return tuple(sorted(str(value) for value in values or ()))


def _dbt_rule(test: str | dict[str, Any]) -> ColumnRule | None:
    """`not_null`, `unique` or `accepted_values` (its `arguments.values`); other tests have no Soda twin."""
    name, config = (test, {}) if isinstance(test, str) else next(iter(test.items()))
    if name not in SODA_CHECK_OF_DBT_TEST:
        return None
    return ColumnRule(name, _values((config or {}).get("arguments", {}).get("values")))


def _soda_rule(check: dict[str, Any]) -> ColumnRule | None:
    """`missing`, `duplicate` or `invalid` with `valid_values`; other `invalid` forms have no dbt twin."""
    ((kind, config),) = check.items()
    config = config or {}
    if kind not in DBT_TEST_OF_SODA_CHECK or (kind == "invalid" and "valid_values" not in config):
        return None
    return ColumnRule(DBT_TEST_OF_SODA_CHECK[kind], _values(config.get("valid_values")))


def _rules(items: list[Any], parse: Callable[[Any], ColumnRule | None]) -> frozenset[ColumnRule]:
    return frozenset(rule for rule in map(parse, items) if rule is not None)


def dbt_mart_columns(path: Path, mart: str) -> MartColumns:
    """The columns a mart's dbt YAML documents, with their data_type and column tests."""
    model = next(model for model in _read_yaml(path)["models"] if model["name"] == mart)
    return {
        column["name"]: MartColumn(column.get("data_type"), _rules(column.get("data_tests") or [], _dbt_rule))
        for column in model.get("columns") or []
    }


def contract_mart_columns(path: Path) -> MartColumns:
    """The columns a mart contract lists, with their data_type and column checks."""
    return {
        name: MartColumn(column.get("data_type"), _rules(column.get("checks") or [], _soda_rule))
        for name, column in contract_columns(path).items()
    }


def _marts() -> list[str]:
    return sorted(
        {path.stem for path in MART_CONTRACTS.glob("*.yml")}
        | {path.stem for path in MART_MODELS.glob("*.yml")}
    )


def _column_disagreements(
    model: str, contract: str, mart: str, truth: MartColumns, listed: MartColumns
) -> list[str]:
    """Columns only one file has, and types the contract spells differently from the dbt YAML."""
    problems = [
        f"{contract} lists column `{name}` that {model} does not document for `{mart}`"
        for name in sorted(listed.keys() - truth.keys())
    ]
    problems += [
        f"{model} documents column `{name}` of `{mart}` that {contract} does not list"
        for name in sorted(truth.keys() - listed.keys())
    ]
    problems += [
        f"{contract} types column `{name}` of `{mart}` as {listed[name].data_type or 'nothing'}, "
        f"where {model} says {column.data_type}"
        for name, column in sorted(truth.items())
        if name in listed
        and column.data_type
        and column.data_type.lower() != (listed[name].data_type or "").lower()
    ]
    return problems


def _rule_disagreements(
    model: str, contract: str, mart: str, truth: MartColumns, listed: MartColumns
) -> list[str]:
    """dbt column tests the contract lacks, and Soda rules the dbt YAML lacks."""
    problems = []
    for name in sorted(truth.keys() & listed.keys()):
        tested, checked = truth[name].rules, listed[name].rules
        problems += [
            f"{model} tests {rule.in_dbt()} on column `{name}` of `{mart}`; "
            f"{contract} has no {rule.in_soda()} for it"
            for rule in sorted(tested - checked, key=repr)
        ]
        problems += [
            f"{contract} checks {rule.in_soda()} on column `{name}` of `{mart}`, which {model} does not "
            f"test ({rule.in_dbt()}); the dbt YAML is the truth: add the test there or drop the check"
            for rule in sorted(checked - tested, key=repr)
        ]
    return problems


@pytest.mark.parametrize("mart", _marts())
def test_mart_contract_agrees_with_the_dbt_yaml(mart: str) -> None:
    """The contract lists the dbt YAML's columns and types, and states its column tests as Soda checks."""
    model_yaml, contract_yaml = MART_MODELS / f"{mart}.yml", MART_CONTRACTS / f"{mart}.yml"
    model, contract = _shown(model_yaml), _shown(contract_yaml)
    assert contract_yaml.exists(), f"{model} documents mart `{mart}`, which has no contract {contract}"
    assert model_yaml.exists(), f"{contract} checks mart `{mart}`, which has no dbt YAML {model}"
    truth, listed = dbt_mart_columns(model_yaml, mart), contract_mart_columns(contract_yaml)
    problems = _column_disagreements(model, contract, mart, truth, listed)
    problems += _rule_disagreements(model, contract, mart, truth, listed)
    assert not problems, "\n".join(problems)
