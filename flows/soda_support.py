"""Around Soda: the checks it leaves to us, and its logging kept quiet and free of secrets.

Soda ignores unknown keys in a contract (a typo'd ``threshhold`` is silently dropped) and
keeps an unset ``${env.X}`` in a data source as literal text; ``flows/checks.py`` refuses
both before Soda runs, with the helpers here.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from flows.redact import redact

# Soda's own substitution syntax, e.g. ${env.ELT_DUCKDB_PATH} or ${var.MARTS_SCHEMA}.
_ENV_REFERENCE = re.compile(r"\$\{ *env\.([a-zA-Z_][a-zA-Z_0-9]*) *\}")
# what reading a contract or data source file may raise
YAML_ERRORS: tuple[type[Exception], ...] = (YAMLError, OSError, UnicodeDecodeError)


def env_references(node: Any) -> set[str]:
    """Names of ``${env.X}`` references in string values (Soda ignores them in comments and keys)."""
    if isinstance(node, dict):
        return set().union(*(env_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(env_references(value) for value in node))
    if isinstance(node, str):
        return set(_ENV_REFERENCE.findall(node))
    return set()


def load_yaml(path: Path) -> Any:
    """Parse YAML the way Soda does (ruamel is a soda-core dependency)."""
    return YAML(typ="safe", pure=True).load(path.read_text())


@functools.cache
def _validator() -> Any:
    """soda-core ships this JSON schema but (in 4.28) never validates against it."""
    import jsonschema
    import soda_core.contracts

    schema_file = Path(soda_core.contracts.__file__).parent / "soda_data_contract_json_schema_1_0_0.json"
    schema = json.loads(schema_file.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def contract_schema_errors(contract_doc: Any) -> list[str]:
    """Validate against soda_core's bundled contract JSON schema (unknown keys, wrong shapes)."""
    import jsonschema

    messages = []
    for error in _validator().iter_errors(contract_doc):
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
def quiet_soda_logging(secrets: list[str]) -> Iterator[None]:
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
