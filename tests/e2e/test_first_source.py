"""A team's first source: a fresh warehouse where only one source is configured.

Every team starts this way, so the first `elt run --source X` must pass: it builds what
the source feeds and whatever else has all its inputs, and lists the models that wait for
sources never loaded here instead of failing them. The second run, with nothing new, builds
nothing. Through the CLI, against the Stripe and GitHub stand-ins on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import environment
from standins import DEMO_GITHUB_TOKEN, DEMO_STRIPE_KEY, dataset, stripe_store_for
from standins.github_api import demo_store, serve_github
from standins.stripe_api import serve_stripe
from tests.support.dbt_selection import dbt_selects

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

NEVER_LOADED = {
    "stripe": ["raw_shop", "raw_github", "raw_example_tickets"],
    "github": ["raw_shop", "raw_stripe", "raw_example_tickets"],
}


@pytest.fixture(scope="module")
def settings_of() -> Iterator[dict[str, dict[str, str]]]:
    """Each source's settings, pointing at its stand-in; nothing else is configured."""
    with (
        serve_stripe(stripe_store_for(dataset.generate(300)), DEMO_STRIPE_KEY) as stripe_url,
        serve_github(github := demo_store(), DEMO_GITHUB_TOKEN) as github_url,
    ):
        yield {
            "stripe": {"SOURCES__STRIPE__BASE_URL": stripe_url, "SOURCES__STRIPE__API_KEY": DEMO_STRIPE_KEY},
            "github": {
                "SOURCES__GITHUB__BASE_URL": github_url,
                "SOURCES__GITHUB__ACCESS_TOKEN": DEMO_GITHUB_TOKEN,
                "SOURCES__GITHUB__REPOSITORIES": json.dumps(sorted(github.repos)),
            },
        }


@pytest.mark.parametrize("source", ["stripe", "github"])
def test_the_first_source_alone_builds_what_it_can_and_lists_what_waits(
    source: str, settings_of: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    target = tmp_path / "dbt"
    fresh = {"ELT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"), "DBT_TARGET_PATH": str(target)}
    with environment(settings_of[source] | fresh):
        # GIVEN a fresh warehouse and only this source configured WHEN its first run goes
        first = CliRunner().invoke(app, ["run", "--source", source])
        # THEN it passes, having built every model whose inputs all exist (dbt's own
        # selection says which: what the source feeds, minus what reads a missing table)
        assert first.exit_code == 0, first.output
        missing = " ".join(f"source:{schema}+" for schema in NEVER_LOADED[source])
        buildable = dbt_selects(f"source:raw_{source}+", exclude=missing)
        assert buildable and built_models(target) == buildable
        # AND each model it could not build is listed with the source it waits for
        lines = first.output.splitlines()
        waiting = {line.split(" waits for ")[0]: line for line in lines if " waits for " in line}
        fed = dbt_selects(f"source:raw_{source}+")
        assert set(waiting) == {uid.rsplit(".", 1)[-1] for uid in fed - buildable}
        assert all(line.endswith(": never loaded") for line in waiting.values()), waiting
        # WHEN it runs again with nothing new THEN it loads nothing and builds nothing
        second = CliRunner().invoke(app, ["run", "--source", source])
        assert second.exit_code == 0, second.output
        assert "dbt: nothing changed" in second.output, second.output


def built_models(target: Path) -> set[str]:
    """Models and snapshots that dbt's run_results.json says succeeded."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {
        result["unique_id"]
        for result in results
        if result["unique_id"].startswith(("model.", "snapshot.")) and result["status"] == "success"
    }
