"""Which dbt nodes a run builds: the graph of the project, and the plan drawn on it.

Why not ``dbt build`` of everything: a run that loaded new Stripe charges needs only the
nodes downstream of ``raw_stripe.charges``, and a run that loaded nothing needs nothing.
This is the idea of dbt's state-aware orchestration (which dbt-core lacks) built from what
dbt-core has: its manifest, ``state:modified`` for code, and our own load results for data.

A node is built when, since its last successful build, one of these happened:

* a source table it reads got rows (inserted, updated or deleted), as the loads recorded
  them: dbt's ``source_status:fresher`` reads timestamps in the data and misses deletes;
* its code changed (SQL, YAML, macros, vars, packages, the dbt version: ``state:modified``);
* it failed, was skipped or failed its contract (it is still *pending*);
* it declares that it depends on the clock (tag ``clock``: SQL using the current date);
* or any of this happened to one of its parents.

Plain Python on the manifest's JSON, so the planning is tested without dbt or a warehouse.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# the resource types a build runs for their own sake; their tests come with them
BUILT_TYPES: Final[frozenset[str]] = frozenset({"model", "snapshot", "seed"})
CHECK_TYPES: Final[frozenset[str]] = frozenset({"test", "unit_test"})
# a model tagged this way is rebuilt by every run it is in scope of (it reads the clock)
CLOCK_TAG: Final[str] = "clock"


@dataclass(frozen=True, order=True)
class SourceTable:
    """A raw table as dbt's sources name it: schema (the dataset) and table, lower case."""

    schema: str
    table: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class Node:
    unique_id: str
    resource_type: str
    name: str
    fqn: tuple[str, ...]
    parents: tuple[str, ...]
    tags: frozenset[str] = frozenset()
    schema: str = ""
    materialized: str | None = None

    @property
    def selector(self) -> str:
        """How ``dbt build --select`` names exactly this node."""
        return "fqn:" + ".".join(self.fqn)


@dataclass(frozen=True)
class DbtGraph:
    """The nodes of a dbt manifest and the source tables they read."""

    nodes: Mapping[str, Node]
    sources: Mapping[str, SourceTable]
    children: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> DbtGraph:
        """From the parsed ``manifest.json`` (nodes, unit tests and sources)."""
        nodes: dict[str, Node] = {}
        for unique_id, raw in {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}.items():
            resource_type = raw["resource_type"]
            if resource_type not in BUILT_TYPES | CHECK_TYPES:
                continue  # analyses, operations
            parents = list((raw.get("depends_on") or {}).get("nodes") or [])
            if resource_type == "unit_test" and raw.get("model"):
                parents.append(f"model.{raw.get('package_name')}.{raw['model']}")
            nodes[unique_id] = Node(
                unique_id=unique_id,
                resource_type=resource_type,
                name=raw["name"],
                fqn=tuple(raw.get("fqn") or (raw["name"],)),
                parents=tuple(dict.fromkeys(parents)),
                tags=frozenset(raw.get("tags") or ()),
                schema=str(raw.get("schema") or ""),
                materialized=(raw.get("config") or {}).get("materialized"),
            )
        sources = {unique_id: _source_table(raw) for unique_id, raw in manifest.get("sources", {}).items()}
        children: dict[str, list[str]] = {}
        for node in nodes.values():
            for parent in node.parents:
                children.setdefault(parent, []).append(node.unique_id)
        return cls(nodes, sources, {parent: tuple(kids) for parent, kids in children.items()})

    def descendants(self, starts: Iterable[str]) -> set[str]:
        """``starts`` (nodes or sources) and every node downstream of them."""
        seen: set[str] = set()
        queue = deque(starts)
        while queue:
            current = queue.popleft()
            if current in seen:
                continue
            seen.add(current)
            queue.extend(self.children.get(current, ()))
        return seen

    def ancestor_sources(self, unique_id: str) -> set[str]:
        """The source nodes ``unique_id`` reads, through however many models."""
        seen: set[str] = set()
        queue = deque([unique_id])
        while queue:
            current = queue.popleft()
            node = self.nodes.get(current)
            for parent in node.parents if node else ():
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return seen & set(self.sources)

    def readers_of(self, tables: Iterable[SourceTable]) -> set[str]:
        """The dbt source nodes naming any of ``tables``."""
        wanted = set(tables)
        return {unique_id for unique_id, table in self.sources.items() if table in wanted}

    def source_tables_of(self, schemas: Iterable[str]) -> set[SourceTable]:
        """Every source table declared in the given schemas (datasets)."""
        wanted = {schema.lower() for schema in schemas}
        return {table for table in self.sources.values() if table.schema in wanted}

    def marts(self, unique_ids: Iterable[str]) -> list[Node]:
        """The published tables among ``unique_ids``: models under ``models/marts`` that are
        materialized as tables (what ``publish_marts`` copies), in name order."""
        found = [self.nodes[uid] for uid in unique_ids if uid in self.nodes]
        return sorted(
            (node for node in found if is_mart(node)),
            key=lambda node: node.name,
        )


def _source_table(raw: Mapping[str, Any]) -> SourceTable:
    return SourceTable(str(raw["schema"]).lower(), str(raw.get("identifier") or raw["name"]).lower())


def is_mart(node: Node) -> bool:
    return (
        node.resource_type == "model"
        and len(node.fqn) > 1
        and node.fqn[1] == "marts"
        and node.materialized in ("table", "incremental")
    )


@dataclass(frozen=True)
class Changes:
    """What happened since the last build, read from the warehouse (flows/build_state.py)."""

    # source tables that got rows in loads no build has consumed yet
    loaded: frozenset[SourceTable] = frozenset()
    # nodes whose code differs from the last build's manifest (None: no manifest, all of them)
    modified: frozenset[str] | None = None
    # nodes whose last outcome was not a success (failed, skipped, contract failed, waiting)
    pending: frozenset[str] = frozenset()
    # source tables that exist in the warehouse; a node reading any other one waits
    existing: frozenset[SourceTable] = frozenset()


@dataclass(frozen=True)
class BuildPlan:
    """The nodes one run builds, and why."""

    # the models, snapshots and seeds to build, and tests to run on their own
    selected: frozenset[str] = frozenset()
    # built node → the missing source tables it waits for (never loaded here)
    waiting: Mapping[str, tuple[SourceTable, ...]] = field(default_factory=dict)
    # why nodes are in: reason → how many nodes it started from
    reasons: Mapping[str, int] = field(default_factory=dict)
    full_build: bool = False

    @property
    def empty(self) -> bool:
        return not self.selected

    def selectors(self, graph: DbtGraph) -> list[str]:
        """``dbt build --select`` arguments naming exactly the selected nodes.

        Tests of selected models come in through ``--indirect-selection buildable``; a
        test that is itself pending or modified is named too.
        """
        return sorted(graph.nodes[uid].selector for uid in self.selected if uid in graph.nodes)

    def describe(self, graph: DbtGraph) -> str:
        """One line: how many nodes, of how many, and why."""
        built = [uid for uid in self.selected if graph.nodes[uid].resource_type in BUILT_TYPES]
        total = sum(1 for node in graph.nodes.values() if node.resource_type in BUILT_TYPES)
        if self.empty:
            return f"dbt: nothing changed, 0 of {total} models built"
        why = ", ".join(f"{count} {reason}" for reason, count in self.reasons.items() if count)
        scope = "full build" if self.full_build else why
        return f"dbt: {len(built)} of {total} models to build ({scope})"

    def waiting_lines(self, graph: DbtGraph) -> list[str]:
        """``fct_orders waits for raw_shop: never loaded``, one line per model or snapshot."""
        lines = []
        for uid in sorted(self.waiting, key=lambda uid: graph.nodes[uid].name):
            schemas = sorted({table.schema for table in self.waiting[uid]})
            lines.append(f"{graph.nodes[uid].name} waits for {', '.join(schemas)}: never loaded")
        return lines


def plan_build(
    graph: DbtGraph,
    changes: Changes,
    *,
    scope: Iterable[str] | None = None,
    full_build: bool = False,
) -> BuildPlan:
    """The nodes to build, given what changed.

    ``scope`` (schemas such as ``raw_stripe``) limits the run to the nodes downstream of
    those sources (``elt run --source stripe``); anything pending outside it stays pending.
    Nodes that read a source table missing from the warehouse are left out and listed as
    waiting, with everything downstream of them.
    """
    buildable = {uid for uid, node in graph.nodes.items() if node.resource_type in BUILT_TYPES}
    if scope is not None:
        in_scope = graph.descendants(graph.readers_of(graph.source_tables_of(scope)))
    else:
        in_scope = set(graph.nodes) | set(graph.sources)
    missing = {uid: table for uid, table in graph.sources.items() if table not in changes.existing}
    waiting: dict[str, tuple[SourceTable, ...]] = {}
    for source_id, table in sorted(missing.items(), key=lambda item: item[1]):
        for uid in graph.descendants([source_id]) - {source_id}:
            waiting[uid] = (*waiting.get(uid, ()), table)
    blocked = set(waiting)

    reasons: dict[str, int] = {}
    if full_build or changes.modified is None:
        starts = set(graph.nodes)
        reasons["without an earlier build" if changes.modified is None else "full build"] = len(buildable)
    else:
        clock = {uid for uid in buildable if CLOCK_TAG in graph.nodes[uid].tags}
        loaded = graph.readers_of(changes.loaded)
        fed = {kid for source in loaded for kid in graph.children.get(source, ())}
        # a changed source definition (schema, identifier) changes what its readers read
        modified = set(changes.modified) & (set(graph.nodes) | set(graph.sources))
        pending = set(changes.pending) & set(graph.nodes)
        starts = fed | modified | pending | clock
        reasons = {
            "fed by new rows": len(fed & in_scope),
            "changed code": len(modified & in_scope),
            "pending": len(pending & in_scope),
            "reading the clock": len(clock & in_scope),
        }
    # a change outside the scope waits for a run that covers it, whatever it feeds inside
    starts &= in_scope
    # models, snapshots and seeds; dbt adds their tests (--indirect-selection buildable)
    selected = (graph.descendants(starts) & in_scope & buildable) - blocked
    # a test that failed or changed is named itself, unless one of its parents waits
    checks = {
        uid
        for uid in starts & set(graph.nodes)
        if graph.nodes[uid].resource_type in CHECK_TYPES and not set(graph.nodes[uid].parents) & blocked
    }
    return BuildPlan(
        selected=frozenset(selected | checks),
        waiting={uid: tables for uid, tables in waiting.items() if uid in in_scope and uid in buildable},
        reasons=reasons,
        full_build=full_build,
    )
