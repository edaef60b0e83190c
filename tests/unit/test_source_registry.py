"""The source registry (dlt_sources/registry.py) is the one place a source is registered: every
file that follows a source's name (contracts, staging models, deployments, README) agrees
with it, and a mismatch fails here naming the source and the file."""

from __future__ import annotations

import ast
import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from dlt_sources.errors import SourceError
from dlt_sources.registry import SOURCES, cdc_sources
from dlt_sources.rest.config import RestConfigError, load_file
from dlt_sources.shop.settings import TABLES as SHOP_TABLES
from dlt_sources.spec import FreshnessSla, SourceSpec
from flows.config import CHECKS_DIR, PROJECT_DIR, TRANSFORM_DIR
from flows.deploy import PREFECT_FILE, deployment_drift
from flows.freshness import freshness_slas

STAGING_DIR = TRANSFORM_DIR / "models" / "staging"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_table_of_a_source_has_its_raw_contract(name: str) -> None:
    folder = CHECKS_DIR / "raw" / name
    contracts = {path.stem for path in folder.glob("*.yml")}
    tables = set(SOURCES[name].tables)
    assert not tables - contracts, f"source {name}: no contract in {folder} for {sorted(tables - contracts)}"
    assert not contracts - tables, f"{folder}: {sorted(contracts - tables)} are not tables of source {name}"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_table_of_a_source_has_its_staging_model_and_dbt_source(name: str) -> None:
    folder = STAGING_DIR / name
    models = {path.stem.removeprefix(f"stg_{name}__") for path in folder.glob(f"stg_{name}__*.sql")}
    tables = set(SOURCES[name].tables)
    assert not tables - models, f"source {name}: no staging model in {folder} for {sorted(tables - models)}"
    declared = yaml.safe_load((folder / f"_{name}__sources.yml").read_text())["sources"]
    (raw,) = [entry for entry in declared if entry["name"] == f"raw_{name}"]
    assert {table["name"] for table in raw["tables"]} == tables, f"{folder}/_{name}__sources.yml"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_the_demo_points_every_source_at_a_stand_in(name: str) -> None:
    # `elt demo` loads every registered source, each from the stand-in DemoSources.environment() names
    standins = PROJECT_DIR / "standins" / "__init__.py"
    assert f'"SOURCES__{name.upper()}__' in standins.read_text(), (
        f"source {name}: no setting of it in {standins.relative_to(PROJECT_DIR)} DemoSources.environment()"
    )


def test_prefect_yaml_has_a_deployment_per_scheduled_source_on_its_cron() -> None:
    assert deployment_drift() == []


def test_a_deployment_that_disagrees_with_the_registry_is_named(tmp_path: Path) -> None:
    # GIVEN prefect.yaml without the stripe deployment and with github on another cron
    document = yaml.safe_load(PREFECT_FILE.read_text())
    document["deployments"] = [d for d in document["deployments"] if d["name"] != "ingest-stripe"]
    (github,) = [d for d in document["deployments"] if d["name"] == "ingest-github"]
    github["schedules"] = [{"cron": "0 * * * *", "timezone": "UTC"}]
    edited = tmp_path / "prefect.yaml"
    edited.write_text(yaml.safe_dump(document))
    # WHEN it is checked THEN each problem is one line naming the file and the source
    missing, moved = sorted(deployment_drift(edited), key=lambda line: "stripe" not in line)
    assert missing.startswith(f"{edited}: source stripe has a schedule but no deployment; add {{name:")
    assert "cron: 20 * * * *" in missing
    assert moved.startswith(f"{edited}: deployment ingest-github of source github: schedules is")


def test_the_readme_lists_each_source_deployment_on_its_cron() -> None:
    listed = dict(
        re.findall(r"^\| `ingest-source/ingest-([a-z-]+)` \| .* \| `([^`]+)` \|$", _readme(), re.MULTILINE)
    )
    scheduled = {name.replace("_", "-"): spec.schedule for name, spec in SOURCES.items() if spec.schedule}
    assert listed == scheduled, "README.md, 'Running on a schedule': the table disagrees with the registry"


def test_freshness_slas_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELT_FRESHNESS_FILE", raising=False)
    slas = freshness_slas()
    assert slas[("shop", "*")] == timedelta(hours=2) and slas[("shop", "orders")] == timedelta(hours=1)
    assert {source for source, _ in slas} == {name for name, spec in SOURCES.items() if spec.freshness}


def test_a_freshness_file_replaces_the_registry_slas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "freshness.yml"
    path.write_text("stripe:\n  default: 30m\n")
    monkeypatch.setenv("ELT_FRESHNESS_FILE", str(path))
    assert freshness_slas() == {("stripe", "*"): timedelta(minutes=30)}


def test_cdc_sources_are_the_shop_with_its_tables() -> None:
    assert {name: spec.cdc_tables for name, spec in cdc_sources().items()} == {"shop": SHOP_TABLES}


def test_a_record_naming_a_table_the_source_does_not_load_is_refused() -> None:
    shop = SOURCES["shop"]
    with pytest.raises(SourceError, match="source shop: freshness SLA tables refunds are not among its"):
        dataclasses.replace(shop, freshness=FreshnessSla(tables={"refunds": timedelta(hours=1)}))
    with pytest.raises(SourceError, match="source shop: schedule 'hourly' is not a five-field cron"):
        dataclasses.replace(shop, schedule="hourly")


def test_a_declared_source_reads_its_schedule_and_freshness(tmp_path: Path) -> None:
    document = yaml.safe_load((PROJECT_DIR / "dlt_sources" / "rest" / "example_tickets.yml").read_text())
    path = tmp_path / "helpdesk.yml"
    path.write_text(yaml.safe_dump(document | {"freshness": {"tables": {"tickets": "90m"}}}))
    config = load_file(path)
    assert (config.schedule, config.freshness) == (
        "50 * * * *",
        FreshnessSla(tables={"tickets": timedelta(minutes=90)}),
    )
    path.write_text(yaml.safe_dump(document | {"freshness": {"default": "soon"}}))
    with pytest.raises(RestConfigError, match=r"helpdesk.yml: freshness.default: 'soon' is not a duration"):
        load_file(path)


def test_python_sources_are_records_without_prefect() -> None:
    assert all(isinstance(spec, SourceSpec) for spec in SOURCES.values())
    for module in (PROJECT_DIR / "dlt_sources").rglob("*.py"):
        assert "prefect" not in _imported(module), f"{module.relative_to(PROJECT_DIR)} imports Prefect"


def test_report_and_audit_take_result_types_from_flows_results() -> None:
    stage_modules = {"flows.ingest", "flows.checks", "flows.transform"}
    for module in ("report.py", "audit.py"):
        stages = _imported(PROJECT_DIR / "flows" / module) & stage_modules
        assert not stages, f"flows/{module} imports {sorted(stages)}; result types live in flows/results.py"


def test_only_flows_pipelines_builds_dlt_pipelines() -> None:
    flows = PROJECT_DIR / "flows"
    builders = [
        str(path.relative_to(flows)) for path in flows.rglob("*.py") if "dlt.pipeline(" in path.read_text()
    ]
    assert builders == ["pipelines.py"]


def _imported(module: Path) -> set[str]:
    """Top-level names of every module ``module`` imports (``flows.ingest``, ``prefect``)."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, node.module.split(".")[0]}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names} | {alias.name.split(".")[0] for alias in node.names}
    return names


def _readme() -> str:
    return (PROJECT_DIR / "README.md").read_text()
