"""The one way to build a dlt pipeline that writes to the configured warehouse.

Why one place: every pipeline the platform runs (a source's load, the audit tables, the
PII salt) must agree on the destination, the environment's dataset prefix and where dlt
keeps its local working folder; built three times, they drifted. The local folder is only
a cache: dlt's state lives in the warehouse next to the data.
"""

from __future__ import annotations

import dlt

from flows.config import Settings


def warehouse_pipeline(settings: Settings, name: str, dataset: str) -> dlt.Pipeline:
    """The pipeline ``name`` writing ``dataset`` (with the environment's prefix) in the warehouse."""
    return dlt.pipeline(
        pipeline_name=name,
        destination=settings.dlt_destination(),
        dataset_name=settings.dataset(dataset),
        pipelines_dir=str(settings.pipelines_dir),
    )


def raw_dataset(source: str, settings: Settings) -> str:
    """``raw_<source>``, with the environment's prefix (flows/config.py ``schema_prefix``)."""
    return settings.dataset(f"raw_{source}")


def source_pipeline(source: str, settings: Settings) -> dlt.Pipeline:
    """The pipeline that loads one source into ``raw_<source>``."""
    return warehouse_pipeline(settings, f"elt_{source}", f"raw_{source}")


def catalog_pipeline(settings: Settings, dataset: str) -> dlt.Pipeline:
    """A pipeline that only reads ``dataset`` (named in full, prefix included): what exists there."""
    return dlt.pipeline(
        pipeline_name="elt_catalog",
        destination=settings.dlt_destination(),
        dataset_name=dataset,
        pipelines_dir=str(settings.pipelines_dir),
    )
