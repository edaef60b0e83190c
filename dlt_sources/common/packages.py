"""Keep dlt's local working folder a cache of the warehouse, never the truth.

Two repairs run before every load. ``forget_state_unknown_to_warehouse``: dlt trusts
a local pipeline state over a warehouse that holds none (dlt 1.31 wipes the local one
only when the dataset itself is missing), so a re-created warehouse, or one whose
schemas an admin created in advance, would have its cursors skip every row loaded
before. ``discard_committed_extracts``: dlt's normalize commits a package by renaming
its normalized copy into place and *then* deleting the extracted copy (dlt 1.31,
normalize.py logs "do not kill this process" there). A SIGKILL between the two leaves
``normalize/extracted/<load_id>`` without its job files, and every later ``normalize()``
of that pipeline fails with ``FileNotFoundError: …/new_jobs``. The package's data is
already safe in the normalized (or loaded) copy, so the leftover can go.
"""

from __future__ import annotations

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation


def forget_state_unknown_to_warehouse(pipeline: dlt.Pipeline) -> bool:
    """Drop the local working folder when the warehouse holds no state of this pipeline.

    Safe: a state that never reached the warehouse was never acknowledged to a source (a
    CDC slot is confirmed only up to the warehouse's position), so the run re-reads it.
    Returns True when the local folder was dropped.
    """
    if pipeline.first_run or not pipeline.default_schema_name:
        return False
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(pipeline.default_schema.state_table_name)
            column = pipeline.default_schema.naming.normalize_identifier("pipeline_name")
            sql = f"select count(*) from {table} where {column} = %s"
            rows = client.execute_sql(sql, pipeline.pipeline_name)
    except DatabaseUndefinedRelation:
        rows = [(0,)]
    if rows and rows[0][0]:
        return False
    pipeline.drop()
    return True


def discard_committed_extracts(pipeline: dlt.Pipeline) -> list[str]:
    """Delete extracted packages that normalize already committed; returns their load ids."""
    extracted = set(pipeline.list_extracted_load_packages())
    committed = set(pipeline.list_normalized_load_packages()) | set(pipeline.list_completed_load_packages())
    leftovers = sorted(extracted & committed)
    if leftovers:
        # dlt has no public call for this; the storage is the one normalize itself uses
        storage = pipeline._get_normalize_storage()
        for load_id in leftovers:
            storage.extracted_packages.delete_package(load_id)
    return leftovers
