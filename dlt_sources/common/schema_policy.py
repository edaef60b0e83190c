"""What happens when a field of an API object changes type: the per-source schema policy.

Why our own check: Arrow tables skip dlt's row-by-row normalizer, and with it dlt's
``schema_contract`` on ``data_type``. A value of another type than its declared
column (an amount sent as a string) would break the Arrow conversion or slip
through. Each source applies its setting ``sources.<name>.schema_policy``:

- ``evolve`` (default): the value moves to a variant column ``<column>__v_<type>``
  (dlt's own naming), so nothing is lost and the run report lists the new column;
- ``discard``: the value is dropped, the row still loads;
- ``freeze``: the run fails with a message naming source, table and column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dlt_sources.errors import SourceError

POLICIES = ("evolve", "discard", "freeze")


def value_type(value: Any) -> str:
    """dlt's name for the type of one JSON value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "text"
    return "json"


def fits(declared: str, value: Any) -> bool:
    """JSON columns take anything; timestamps arrive as ISO text; numbers widen to double."""
    if declared == "json":
        return True
    got = value_type(value)
    if declared in ("timestamp", "date"):
        return got == "text"
    if declared == "double":
        return got in ("double", "bigint")
    return got == declared


def check_policy(source: str, policy: str) -> str:
    if policy not in POLICIES:
        raise SourceError(
            f"{source} source: `sources.{source}.schema_policy` is {policy!r}; "
            f"choose one of {', '.join(POLICIES)}"
        )
    return policy


def enforce(
    source: str,
    table: str,
    records: Sequence[dict[str, Any]],
    declared: Mapping[str, str],
    policy: str,
) -> list[dict[str, Any]]:
    """Records whose declared columns hold values of the declared type, per ``policy``."""
    out: list[dict[str, Any]] = []
    for record in records:
        row = record
        for name, data_type in declared.items():
            value = row.get(name)
            if value is None or fits(data_type, value):
                continue
            got = value_type(value)
            if policy == "freeze":
                raise SourceError(
                    f"{source} source: table `{table}`, column `{name}` changed type from "
                    f"{data_type} to {got} (object {row.get('id')!r}), and "
                    f"`sources.{source}.schema_policy` is freeze; set it to evolve or discard "
                    "to load it anyway."
                )
            row = {key: val for key, val in row.items() if key != name}
            if policy == "evolve":
                row[f"{name}__v_{got}"] = value
        out.append(row)
    return out
