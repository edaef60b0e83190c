"""Repair a dlt working folder left behind by a process killed at the wrong moment.

Why: dlt's normalize commits a package by renaming its normalized copy into place and
*then* deleting the extracted copy (dlt 1.31, normalize.py logs "do not kill this
process" there). A SIGKILL between the two leaves ``normalize/extracted/<load_id>``
without its job files, and every later ``normalize()`` of that pipeline fails with
``FileNotFoundError: …/new_jobs``. The package's data is already safe in the normalized
(or loaded) copy, so the leftover can go.
"""

from __future__ import annotations

import dlt


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
