"""A folder every process of the session shares: the pytest process, or with ``-n`` xdist's
controller and all its workers. Files there are how a worker learns what another made
(the light crash campaign's verdict, BigQuery's marts for the cross-warehouse agreement).

A pytest plugin (registered in ``tests/conftest.py``); the controller makes the folder
and removes it at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

_KEY = "elt_shared_folder"
_FOLDER = pytest.StashKey[Path]()


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def worker_count() -> int:
    """How many processes run tests (1 without xdist)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def shared_folder(config: pytest.Config) -> Path:
    """The session's shared folder (made on first use, so any plugin may ask at configure time)."""
    if _FOLDER not in config.stash:
        if is_worker(config):
            config.stash[_FOLDER] = Path(config.workerinput[_KEY])  # type: ignore[attr-defined]
        else:
            config.stash[_FOLDER] = Path(tempfile.mkdtemp(prefix="elt-tests-shared-"))
    return config.stash[_FOLDER]


def publish(path: Path, value: Any) -> None:
    """Write ``value`` as JSON at once: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value))
    partial.replace(path)


def wait_for(path: Path, timeout: float, what: str) -> Any:
    """The JSON another process publishes at ``path``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not arrive in {timeout:.0f} s ({path})")
        time.sleep(1)
    return json.loads(path.read_text())


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller: every worker learns where the shared folder is."""
    node.workerinput[_KEY] = str(shared_folder(node.config))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if not is_worker(config) and _FOLDER in config.stash:
        shutil.rmtree(config.stash[_FOLDER], ignore_errors=True)
