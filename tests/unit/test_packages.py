"""discard_committed_extracts: a folder left by a kill inside dlt's normalize commit."""

from __future__ import annotations

import shutil
from pathlib import Path

import dlt
import pytest

from dlt_sources.common.packages import discard_committed_extracts


def test_leftover_of_a_committed_package_is_discarded_and_normalize_works_again(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        pipeline_name="leftover",
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    pipeline.extract([{"id": 1}], table_name="items")
    (load_id,) = pipeline.list_extracted_load_packages()
    extracted = Path(pipeline.working_dir) / "normalize" / "extracted" / load_id
    kept = tmp_path / "kept"
    shutil.copytree(extracted, kept)
    pipeline.normalize()
    # the kill: the normalized copy is committed, the extracted one only half deleted
    shutil.copytree(kept, extracted)
    shutil.rmtree(extracted / "new_jobs")
    with pytest.raises(Exception, match="new_jobs"):
        pipeline.normalize()

    assert discard_committed_extracts(pipeline) == [load_id]

    pipeline.normalize()
    pipeline.load().raise_on_failed_jobs()
    assert pipeline.list_extracted_load_packages() == []
    assert discard_committed_extracts(pipeline) == []
