"""A pull request in a real git repository, for ``elt ci`` and ``elt dev``: a copy of this
project's dbt project and contracts, committed on ``main``, and a branch that changes one
mart and one staging model.

The change and what it must do to the data, each computed here with SQL of its own
against production (never with flows/data_diff.py):

* ``fct_orders``: orders dated by day (``ordered_at`` truncated) and a new column
  ``is_large_order``, which the mart's contract does not declare: its ``schema`` check fails;
* ``stg_shop__products``: product names in upper case, so ``dim_products`` changes too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flows.cli import app
from flows.config import PROJECT_DIR
from tests.support.dbt_selection import dbt_selects

Query = Callable[[str], list[tuple[Any, ...]]]
BRANCH = "orders-by-day"
BY_DAY = (
    "        orders.ordered_at,\n",
    "        {{ dbt.date_trunc('day', 'orders.ordered_at') }} as ordered_at,\n",
)


def checkout(root: Path) -> Path:
    """``root`` as a git repository holding transform/ and checks/ on ``main``."""
    root.mkdir(parents=True)
    for folder in ("transform", "checks"):
        shutil.copytree(
            PROJECT_DIR / folder,
            root / folder,
            ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
        )
    git(root, "init", "-q", "-b", "main")
    commit(root, "the project as production runs it")
    return root


def git(root: Path, *arguments: str) -> str:
    identity = ["-c", "user.name=CI", "-c", "user.email=ci@example.com"]
    return subprocess.run(
        ["git", *identity, "-C", str(root), *arguments], check=True, capture_output=True, text=True
    ).stdout


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def date_orders_by_day(root: Path) -> None:
    """The mart change: orders dated by day, and an undeclared column."""
    edit(
        root / "transform/models/marts/fct_orders.sql",
        BY_DAY,
        (
            "        end as payment_status\n",
            "        end as payment_status,\n        order_total >= 100 as is_large_order\n",
        ),
    )


def upper_case_product_names(root: Path) -> None:
    """The staging change."""
    edit(
        root / "transform/models/staging/shop/stg_shop__products.sql",
        ("cast(name as {{ dbt.type_string() }})", "cast(upper(name) as {{ dbt.type_string() }})"),
    )


def by_day_only(root: Path) -> None:
    """The mart change without the new column: a change whose contracts pass."""
    edit(root / "transform/models/marts/fct_orders.sql", BY_DAY)


def open_pull_request(root: Path) -> None:
    """Branch ``orders-by-day`` off ``main`` with both changes committed."""
    git(root, "checkout", "-q", "-b", BRANCH)
    date_orders_by_day(root)
    upper_case_product_names(root)
    commit(root, "date orders by day; upper-case product names")


def edit(path: Path, *replacements: tuple[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"{path.name} no longer contains {old!r}: update tests/support/pull_requests.py"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def truncated_to_day(column: str) -> str:
    """A timestamp's day in DuckDB's and Snowflake's SQL."""
    return f"date_trunc('day', {column})"


def expected_diffs(
    query: Query, marts: str, raw_shop: str, day_of: Callable[[str], str] = truncated_to_day
) -> dict[str, dict[str, Any]]:
    """What the pull request does to each model it changes directly, from production's tables
    (``marts``: the published schema; ``raw_shop``: the shop's raw dataset; ``day_of``: the
    warehouse's SQL for a timestamp's day)."""
    redated_sql = f"select count(*) from {marts}.fct_orders where ordered_at <> {day_of('ordered_at')}"
    (redated,) = query(redated_sql)[0]
    (renamed_products,) = query(
        f"select count(*) from {marts}.dim_products where product_name <> upper(product_name)"
    )[0]
    (renamed_raw,) = query(f"select count(*) from {raw_shop}.products where name <> upper(name)")[0]
    return {
        "fct_orders": {
            "added": 0,
            "removed": 0,
            "changed": redated,
            "changed_values": {"ordered_at": redated} if redated else {},
            "columns_added": ["is_large_order"],
        },
        "dim_products": {
            "added": 0,
            "removed": 0,
            "changed": renamed_products,
            "changed_values": {"product_name": renamed_products} if renamed_products else {},
        },
        "stg_shop__products": {
            "added": 0,
            "removed": 0,
            "changed": renamed_raw,
            "changed_values": {"product_name": renamed_raw} if renamed_raw else {},
        },
    }


def assert_ci_caught_the_pull_request(
    repo: Path,
    expected: dict[str, dict[str, Any]],
    warehouse_args: list[str],
    details: Callable[[], str] = lambda: "",
) -> None:
    """Run ``elt ci`` for the pull request in ``repo``: it must fail naming the mart and the
    check the new column broke, build exactly the changed models and their children (as
    dbt's run results say; snapshots keep production's history), report the ``expected``
    diff numbers (SQL of the test's own), and see no change in the hashed columns, which
    are salted from production's salt. ``details``: what else to show if the exit code is wrong."""
    outcome = CliRunner().invoke(app, ["ci", "--base", "main", "--repo", str(repo), *warehouse_args])
    assert outcome.exit_code == 1, f"{outcome.output}\n{details()}"
    assert "analytics_marts_audit.fct_orders, check 'schema' failed" in outcome.output.lower()
    artifacts = repo / "transform/target/ci"
    assert models_built(artifacts) == models_selected("fct_orders+ stg_shop__products+")
    diffs = {diff["model"]: diff for diff in json.loads((artifacts / "ci_report.json").read_text())["diffs"]}
    for model, numbers in expected.items():
        assert {key: diffs[model][key] for key in numbers} == numbers, model
    assert not {"email_hash", "name_hash"} & set(diffs["dim_customers"]["changed_values"])
    assert "| fct_orders | " in (artifacts / "ci_report.md").read_text()


def models_built(artifacts: Path) -> set[str]:
    """The models a dev or CI build made, from dbt's run results in its artifacts folder."""
    results = json.loads((artifacts / "target/run_results.json").read_text())["results"]
    return {result["unique_id"] for result in results if result["unique_id"].startswith("model.")}


def models_selected(selector: str) -> set[str]:
    return {uid for uid in dbt_selects(selector) if uid.startswith("model.")}


def production_copy(warehouse: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of the DuckDB file ``warehouse`` (production, for a dev or CI build to read and
    leave as it was) and a checkout of this project, both in ``folder``."""
    copy = folder / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    return copy, checkout(folder / "repo")
