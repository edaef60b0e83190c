"""Rules about the code's shape that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

TEST_SUITE_DIR = Path(__file__).resolve().parents[1]
# A test module or a conftest: pytest's files, never a library for other tests.
TEST_MODULE_NAME = re.compile(r"test_\w*|conftest")


def suite_files() -> Iterator[Path]:
    """Every .py under tests/, hidden folders left out (the BigQuery emulator's own .venv)."""
    for folder, subfolders, files in os.walk(TEST_SUITE_DIR):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        yield from (Path(folder, name) for name in sorted(files) if name.endswith(".py"))


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
        f"{path.relative_to(TEST_SUITE_DIR.parent)}:{line}: imports {name}"
        for path in suite_files()
        for line, name in sorted(imports_of_test_modules(path.read_text()).items())
    ]
    assert not found, "test modules imported as libraries (move the helper to tests/support/):\n" + "\n".join(
        found
    )
