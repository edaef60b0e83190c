"""The shape of the code, checked: rules a reviewer would otherwise have to remember.

Each test names every offender (``file:line``), so a failure says what to change.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]

# Only these may know which warehouse they are talking to: the plug-ins and the resolver
# that picks one by name. (dbt macros and Soda data-source files are not Python.)
WAREHOUSE_AWARE = ("flows/warehouses/", "flows/config.py")
WAREHOUSE_NAMES = frozenset({"duckdb", "snowflake", "bigquery"})
# names of the registry's constants and of the plug-in classes (compared upper-cased)
WAREHOUSE_SYMBOLS = frozenset({"DUCKDB", "SNOWFLAKE", "BIGQUERY", "DEFAULT_WAREHOUSE"})
MAX_MODULE_LINES = 400


def python_files(*folders: str) -> list[Path]:
    """Every ``.py`` file under the given top-level folders, sorted; virtual environments skipped."""
    return sorted(
        path
        for folder in folders
        for path in (PROJECT_DIR / folder).rglob("*.py")
        if ".venv" not in path.relative_to(PROJECT_DIR).parts
    )


def _relative(path: Path) -> str:
    return path.relative_to(PROJECT_DIR).as_posix()


def _names_a_warehouse(node: ast.AST) -> bool:
    """A warehouse's name as a string, a registry constant, a plug-in class, or a collection of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip().lower() in WAREHOUSE_NAMES
    if isinstance(node, ast.Name):
        return node.id.upper() in WAREHOUSE_SYMBOLS
    if isinstance(node, ast.Attribute):
        return node.attr.upper() in WAREHOUSE_SYMBOLS
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_warehouse(element) for element in node.elts)
    return False


def warehouse_comparisons(source: str) -> list[int]:
    """Lines that branch on the warehouse: comparisons, ``isinstance`` checks and match cases."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            operands = node.args[1:]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        elif isinstance(node, ast.MatchClass):
            operands = [node.cls]
        else:
            continue
        if any(_names_a_warehouse(operand) for operand in operands):
            lines.append(node.lineno)
    return sorted(lines)


@pytest.mark.parametrize(
    "branch",
    [
        'if settings.warehouse.name == "snowflake": pass',
        "if warehouse is Warehouse.DUCKDB: pass",
        'ok = name in ("snowflake", "bigquery")',
        "ok = name != DEFAULT_WAREHOUSE",
        "ok = isinstance(warehouse, BigQuery)",
        'match name:\n    case "duckdb": pass',
        "match warehouse:\n    case Snowflake(): pass",
    ],
)
def test_the_warehouse_rule_sees_each_way_of_branching(branch: str) -> None:
    assert warehouse_comparisons(branch) != []


def test_only_the_warehouse_modules_and_the_resolver_branch_on_the_warehouse() -> None:
    offenders = [
        f"{_relative(path)}:{line}"
        for path in python_files("flows", "dlt_sources", "standins", "bench")
        if not _relative(path).startswith(WAREHOUSE_AWARE)
        for line in warehouse_comparisons(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, (
        "compares a warehouse name outside flows/warehouses/ and flows/config.py; "
        "ask the warehouse plug-in instead: " + ", ".join(offenders)
    )


def test_no_module_under_flows_is_over_400_lines() -> None:
    offenders = [
        f"{_relative(path)} ({lines} lines)"
        for path in python_files("flows")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not offenders, f"over {MAX_MODULE_LINES} lines, split by responsibility: " + ", ".join(offenders)
