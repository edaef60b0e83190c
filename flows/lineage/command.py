"""``elt lineage TABLE[.COLUMN] [--upstream|--downstream]``: the stored lineage as a terminal tree.

Reads ``elt_audit.column_lineage`` (flows/lineage/store.py), so it answers on any machine
from what the runs recorded; a table without a column shows every column's tree.
"""

from __future__ import annotations

from rich.markup import escape
from rich.tree import Tree

from flows.config import Settings
from flows.lineage.store import ColumnGraph, Hop, Key, latest


def lineage_trees(settings: Settings, reference: str, upstream: bool = True) -> list[Tree]:
    """One tree per matching column: ``reference`` is ``schema.table.column`` or ``schema.table``.

    Raises LookupError naming what is known when nothing matches."""
    graph = ColumnGraph(latest(settings))
    found = graph.find(reference)
    if not found:
        raise LookupError(
            f"no lineage recorded for {reference!r}; run the pipeline first, or name a table as "
            "schema.table[.column] (e.g. analytics_marts.fct_payments.amount)"
        )
    warehouse = settings.warehouse.lineage_namespace(settings)
    trees = []
    for key, column in found:
        columns = [column] if column else graph.columns_of(key)
        if column and column not in graph.columns_of(key):
            raise LookupError(f"{_label(key, warehouse)} has no column {column!r} in the recorded lineage")
        for name in columns:
            trees.append(_tree(graph.walk(key, name, upstream=upstream), warehouse, upstream))
    return trees


def _tree(hop: Hop, warehouse: str, upstream: bool, parent: Tree | None = None) -> Tree:
    arrow = "←" if upstream else "→"
    dataset = escape(_label((hop.namespace, hop.dataset), warehouse))
    in_warehouse = hop.namespace == warehouse
    text = (
        f"{dataset}.[bold]{escape(hop.field)}[/]"
        if in_warehouse
        else f"{dataset} field [bold]{escape(hop.field)}[/]"
    )
    if hop.subtype:
        text = f"{arrow} {text}  [dim]{hop.subtype.lower()}[/]"
    node = Tree(text) if parent is None else parent.add(text)
    for beyond in hop.next:
        _tree(beyond, warehouse, upstream, node)
    return node


def _label(key: Key, warehouse: str) -> str:
    """``analytics_marts.fct_payments`` in the warehouse; an endpoint or a source table with its system."""
    namespace, dataset = key
    if namespace == warehouse:
        return dataset.split(".", 1)[-1]
    return f"{namespace}{dataset}" if dataset.startswith("/") else f"{namespace}/{dataset}"
