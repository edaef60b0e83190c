"""Sources declared in YAML, one file per source in a folder (REST APIs, SQL databases).

Why shared: both families find their files, validate every one up front (a typo fails
``elt --help``-time, not a scheduled run at night) and hand out one factory per source
name, resolving secrets only when the factory is called.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol


class _Named(Protocol):
    name: str


def declared_in(
    folder: Path,
    folder_setting: str,
    load_file: Callable[[Path], Any],
    make_source: Callable[[Any], Any],
    error: type[Exception],
) -> dict[str, Callable[[], Any]]:
    """Source name -> factory for every ``*.yml`` / ``*.yaml`` in ``folder``.

    ``load_file`` validates one file (raising ``error`` with the file and field named) and
    returns a config with a ``name``; ``make_source(config)`` builds the dlt source.
    """
    if not folder.is_dir():
        raise error(f"{folder_setting}={folder} is not a folder")
    found: dict[str, Callable[[], Any]] = {}
    for path in sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml")):
        config: _Named = load_file(path)
        if config.name in found:
            raise error(f"{path}: a source named {config.name!r} is declared twice")
        found[config.name] = partial(make_source, config)
    return found
