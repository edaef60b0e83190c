"""The shape of the code, checked: rules a reviewer would otherwise have to remember.

Each test names every offender (``file:line``), so a failure says what to change.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
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
# A test module or a conftest: pytest's files, never a library for other tests.
TEST_MODULE_NAME = re.compile(r"test_\w*|conftest")


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


def modules_named_in_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module an import may bring in, including
    ``from package import module`` (the names after ``import`` may be modules)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            yield node.lineno, module
            yield from ((node.lineno, f"{module}.{alias.name}") for alias in node.names)


def imports_of_test_modules(source: str) -> dict[int, str]:
    """Line -> name of each import in ``source`` that names a test module or a conftest at any
    depth: ``from test_x import`` (pytest's rootdir sys.path makes that form work),
    ``tests.unit.test_x``, ``from tests.integration import test_x``, ``from . import conftest``."""
    found: dict[int, str] = {}
    for line, name in modules_named_in_imports(ast.parse(source)):
        if any(TEST_MODULE_NAME.fullmatch(part) for part in name.split(".")):
            found.setdefault(line, name)
    return found


def test_the_import_check_sees_every_form() -> None:
    source = (
        "from test_cdc import ITEMS_SQL\n"
        "import tests.unit.test_cdc_pgoutput\n"
        "from tests.integration import test_stripe_source\n"
        "from .conftest import make_pipeline\n"
        "from tests.support.cdc import create_database\n"
        "import pytest, unittest\n"
    )
    assert sorted(imports_of_test_modules(source)) == [1, 2, 3, 4]


def test_no_test_module_imports_another() -> None:
    """Shared helpers and fixtures live in tests/support/ (or a conftest's fixtures, which pytest
    injects); a test module imported by another runs its module-level code and fixtures twice
    and hides what is shared."""
    found = [
        f"{_relative(path)}:{line}: imports {name}"
        for path in python_files("tests")
        for line, name in sorted(imports_of_test_modules(path.read_text()).items())
    ]
    assert not found, "test modules imported as libraries (move the helper to tests/support/):\n" + "\n".join(
        found
    )
