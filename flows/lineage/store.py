"""Column lineage kept in the warehouse (``elt_audit.column_lineage``), and walking it.

Why stored: ``elt lineage`` must answer on any machine, from the truth, not from one
worker's event file; and it doubles as the cache that makes lineage cheap: a dbt node's
column lineage is worked out once per compiled-SQL hash (``source_hash``), then read back.
Append-only; a dataset's lineage is its rows with the latest ``recorded_at``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from flows.audit import query_audit
from flows.config import Settings
from flows.lineage.model import FieldSource

TABLE = "column_lineage"


@dataclass(frozen=True)
class LineageRow:
    """One input of one column (``input_*`` None: a column computed from no column, a literal)."""

    namespace: str
    dataset: str
    column_name: str
    input_namespace: str | None
    input_dataset: str | None
    input_field: str | None
    subtype: str | None
    masking: bool
    job_name: str
    source_hash: str
    recorded_at: datetime


@dataclass(frozen=True)
class DatasetLineage:
    """A dataset's latest column lineage and the hash of what it was computed from."""

    source_hash: str
    columns: Mapping[str, Sequence[FieldSource]]


Key = tuple[str, str]  # (namespace, dataset)


def latest(settings: Settings) -> dict[Key, DatasetLineage]:
    """Every dataset's latest column lineage; empty before the first run that stored any."""
    rows = query_audit(
        settings,
        TABLE,
        "select t.namespace, t.dataset, t.column_name, t.input_namespace, t.input_dataset, t.input_field,"
        " t.subtype, t.masking, t.source_hash from {table} as t where t.recorded_at = ("
        "select max(l.recorded_at) from {table} as l"
        " where l.namespace = t.namespace and l.dataset = t.dataset)",
    )
    hashes: dict[Key, str] = {}
    columns: dict[Key, dict[str, list[FieldSource]]] = defaultdict(dict)
    for namespace, dataset, column, in_ns, in_ds, in_field, subtype, masking, source_hash in rows:
        key = (namespace, dataset)
        hashes[key] = source_hash
        inputs = columns[key].setdefault(column, [])
        if in_field is not None:
            inputs.append(FieldSource(in_ns, in_ds, in_field, subtype or "IDENTITY", bool(masking)))
    return {key: DatasetLineage(hashes[key], columns[key]) for key in hashes}


def rows(
    lineage: Mapping[Key, tuple[str, str, Mapping[str, Sequence[FieldSource]]]], at: datetime
) -> list[LineageRow]:
    """The rows to append for new lineage: (namespace, dataset) → (job, source hash, column → inputs)."""
    return [
        LineageRow(namespace, dataset, column, *_input(source), job, source_hash, at)
        for (namespace, dataset), (job, source_hash, columns) in lineage.items()
        for column, sources in columns.items()
        for source in (sources or [None])
    ]


def _input(source: FieldSource | None) -> tuple[str | None, str | None, str | None, str | None, bool]:
    if source is None:
        return None, None, None, None, False
    return source.namespace, source.name, source.field, source.subtype, source.masking


@dataclass(frozen=True)
class Hop:
    """One step of a column's lineage: the field, how it was derived, and what lies beyond it."""

    namespace: str
    dataset: str
    field: str
    subtype: str
    next: tuple[Hop, ...]


class ColumnGraph:
    """Column-to-column edges over every stored dataset, walkable both ways."""

    def __init__(self, lineage: Mapping[Key, DatasetLineage]) -> None:
        self.upstream: dict[tuple[str, str, str], list[FieldSource]] = {}
        self.downstream: dict[tuple[str, str, str], list[FieldSource]] = defaultdict(list)
        self.datasets = set(lineage)
        for (namespace, dataset), stored in lineage.items():
            for column, sources in stored.columns.items():
                self.upstream[(namespace, dataset, column)] = list(sources)
                for source in sources:
                    self.datasets.add((source.namespace, source.name))
                    self.downstream[(source.namespace, source.name, source.field)].append(
                        FieldSource(namespace, dataset, column, source.subtype, source.masking)
                    )

    def find(self, reference: str) -> list[tuple[Key, str | None]]:
        """The datasets (and column) ``schema.table[.column]`` names: a dataset whose name is
        it or ends with ``.<it>``; the column is what is left after the longest match."""
        parts = reference.split(".")
        for cut in (len(parts), len(parts) - 1):
            table, column = ".".join(parts[:cut]), (".".join(parts[cut:]) or None)
            matches = [
                key for key in sorted(self.datasets) if key[1] == table or key[1].endswith(f".{table}")
            ]
            if matches and table:
                return [(key, column) for key in matches]
        return []

    def columns_of(self, key: Key) -> list[str]:
        columns = {column for (ns, ds, column) in self.upstream if (ns, ds) == key}
        columns |= {column for (ns, ds, column) in self.downstream if (ns, ds) == key}
        return sorted(columns)

    def walk(self, key: Key, column: str, upstream: bool = True, depth: int = 50) -> Hop:
        return self._walk(key, column, "", upstream, depth, frozenset())

    def _walk(self, key: Key, column: str, subtype: str, upstream: bool, depth: int, seen: frozenset) -> Hop:
        edges = (self.upstream if upstream else self.downstream).get((*key, column), [])
        here = (*key, column)
        beyond = tuple(
            self._walk(
                (edge.namespace, edge.name), edge.field, edge.subtype, upstream, depth - 1, seen | {here}
            )
            for edge in edges
            if depth > 0 and (edge.namespace, edge.name, edge.field) not in seen
        )
        return Hop(key[0], key[1], column, subtype, beyond)


def flatten(hop: Hop) -> Iterator[Hop]:
    yield hop
    for beyond in hop.next:
        yield from flatten(beyond)
