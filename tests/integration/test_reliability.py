"""`make test`'s share of the reliability campaign (tests/reliability): the light plan —
a SIGKILL in each ingest stage, PostgreSQL restarted mid-snapshot and mid-stream, the
DuckDB file locked, a full temporary directory, runs under continuous writes, HTTP faults
throughout — against real servers, then every table compared with its source row by row.
`make reliability` runs the full plan (50+ kills, 200+ faults, dbt/contracts/publish kills).

The campaign starts when collection ends and runs beside the other tests
(tests/support/light_campaign.py); this test reads its verdict."""

from __future__ import annotations

import re

import pytest

from tests.support.light_campaign import Verdict

pytestmark = pytest.mark.e2e


def test_light_campaign_loses_and_duplicates_nothing(light_campaign: Verdict) -> None:
    result = light_campaign
    table = result.stdout
    assert result.returncode == 0, f"{table}\n{result.stderr[-4000:]}"
    kills = int(re.search(r"\| \*\*kills\*\* \| \*\*(\d+)\*\* \|", table).group(1))
    faults = int(re.search(r"\| \*\*faults\*\* \| \*\*(\d+)\*\* \|", table).group(1))
    runs, _, compared, lost, duplicated, wrong = re.search(
        r"^\| (\d+) \| (\d+) \| ([\d,]+) \| (\d+) \| (\d+) \| (\d+) \|$", table, re.MULTILINE
    ).groups()
    assert int(runs) >= 10 and kills >= 2 and faults >= 5, table  # a kill can miss a stage that ended first
    assert int(compared.replace(",", "")) > 100_000, table
    assert (lost, duplicated, wrong) == ("0", "0", "0"), table
    assert "PostgreSQL restarted mid-snapshot" in table and "DuckDB file locked" in table, table
