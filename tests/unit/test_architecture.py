"""Rules about the code's shape that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]
# A test module or a conftest: pytest's files, never a library for other tests.
TEST_MODULE = re.compile(r"test_\w*|conftest")


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
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
    for line, name in imported_modules(ast.parse(source)):
        if any(TEST_MODULE.fullmatch(part) for part in name.split(".")):
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
        f"{path.relative_to(TESTS_DIR.parent)}:{line}: imports {name}"
        for path in sorted(TESTS_DIR.rglob("*.py"))
        if not any(part.startswith(".") for part in path.relative_to(TESTS_DIR).parts)
        for line, name in sorted(imports_of_test_modules(path.read_text()).items())
    ]
    assert not found, "test modules imported as libraries (move the helper to tests/support/):\n" + "\n".join(
        found
    )
