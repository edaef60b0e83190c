"""Sources declared in YAML, one file per source in a folder (REST APIs, SQL databases).

Why shared: both families find their files, validate every one up front (a typo fails
``elt --help``-time, not a scheduled run at night) and hand out one factory per source
name, resolving secrets only when the factory is called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import yaml


class _Named(Protocol):
    name: str


NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def read_declaration(path: Path, error: type[Exception]) -> Any:
    """The parsed YAML of one declaration file, whose name is the source name."""
    if not NAME_RE.match(path.stem):
        raise error(
            f"{path}: the file name is the source name and the dataset suffix (raw_<name>); "
            "use lower-case letters, digits and underscores, starting with a letter"
        )
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


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
