"""What every run leaves behind about itself: lineage, stage timings, profiles, anomalies.

Why one wrapper: the full run and the per-source runs observe themselves the same way;
each flow opens ``observed_run`` around its stages and stays thin. After the stages, pass
or fail, the ``observe`` stage profiles the tables the run changed (flows/profiles.py;
``ELT_PROFILES=false`` skips it where profiling costs more than it tells) and judges the
new points of every series (flows/anomalies.py): a fail-level anomaly is one alert per
table and incident, resolved once its series are back in their bands, or, with
``anomalies.fail_run``, the run's failure.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flows.alerts import Incident, open_incident, open_incident_keys, resolve_incident
from flows.anomalies import AnomaliesFailed, RunPoints, check, describe, fails_the_run
from flows.audit import AnomalyRecord, record_run
from flows.config import ConfigError, Settings
from flows.gates import run_id
from flows.lineage import run_lineage
from flows.privacy.places import personal_columns
from flows.profiles import ProfiledTable, profile_tables
from flows.redact import first_line
from flows.report import RunSummary
from flows.setting_values import bool_setting
from flows.transform import last_parsed

logger = logging.getLogger(__name__)


@contextmanager
def observed_run(settings: Settings, summary: RunSummary, flow_name: str) -> Iterator[None]:
    """Run the stages inside; afterwards observe them, record the stage timings and finish
    sending the run's lineage (its diagram and any failure to send go into the report)."""
    run = run_id()
    failed: AnomaliesFailed | None = None
    observations: dict[str, list[Any]] = {}
    settings_wrong = False
    with run_lineage(settings, flow_name, run) as lineage:
        try:
            yield
        except ConfigError:
            # a wrong setting (often the warehouse's login): nothing ran to observe, and the
            # warehouse may not answer; a second wait for it would only delay the alert
            settings_wrong = True
            raise
        finally:
            try:
                if not settings_wrong:
                    with summary.stage("observe"):
                        observations, failing = observe(settings, summary, run, flow_name)
                        if failing:
                            raise AnomaliesFailed(failing)
            except AnomaliesFailed as exc:
                failed = exc  # raised below, unless the stages' own failure is on its way
            finally:
                observations["column_lineage"] = lineage.close()
                if not settings_wrong:
                    record_run(settings, summary, run, flow_name, observations)
                summary.lineage = lineage.mermaid()
                summary.observed += lineage.failures
    if failed is not None:
        raise failed


def observe(
    settings: Settings, summary: RunSummary, run: str, flow_name: str
) -> tuple[dict[str, list[Any]], str | None]:
    """Profile what this run changed and judge every series that got a point: the profiles
    and verdicts to record, and, with ``anomalies.fail_run``, why the run fails. A profile
    or check that cannot be made is a warning, never the run's failure."""
    loaded = {(result.dataset, table) for result in summary.ingests for table in result.tables}
    changed = {(result.dataset, table) for result in summary.ingests for table, n in result.rows.items() if n}
    changed |= {(f"{settings.dbt_schema}_marts", mart) for mart in summary.published}
    if not bool_setting("ELT_PROFILES", True):
        changed = set()  # profiling switched off: loads and stage timings are still judged
    try:
        project = last_parsed()
        personal = personal_columns(project.contents if project else {})
        profiled = [
            ProfiledTable(schema, table, personal(schema, table)) for schema, table in sorted(changed)
        ]
        profiles = profile_tables(settings, profiled, run)
        stages = frozenset(stage.name for stage in summary.stages)
        new = RunPoints(frozenset(loaded), frozenset(changed), flow_name, stages)
        records = check(settings, run, new, profiles)
    except Exception as exc:
        logger.warning("could not profile or check for anomalies: %s", first_line(exc))
        summary.observed.append(f"anomaly checks skipped: {first_line(exc)}")
        return {}, None
    flagged = [record for record in records if record.level in ("warn", "fail")]
    summary.anomalies = flagged
    summary.observed += [f"anomaly ({record.level}): {describe(record)}" for record in flagged]
    failing = defaultdict(list)
    for record in flagged:
        if record.level == "fail":
            failing[(record.dataset, record.table_name)].append(record)
    observations: dict[str, list[Any]] = {"profiles": profiles, "anomalies": records}
    if failing and fails_the_run():  # the failed run's own alert names them
        return observations, "; ".join(describe(record) for records in failing.values() for record in records)
    _announce(failing, {(record.dataset, record.table_name) for record in records})
    return observations, None


def _announce(failing: dict[tuple[str, str], list[AnomalyRecord]], judged: set[tuple[str, str]]) -> None:
    """One incident per table with fail-level series; resolve the judged tables back in band."""
    try:
        for (dataset, table), records in failing.items():
            metrics = sorted(record.metric for record in records)
            open_incident(
                Incident(
                    key=_incident_key(dataset, table),
                    cause=", ".join(metrics),
                    subject=f"Anomaly in {dataset}.{table}: {', '.join(metrics)}",
                    details=tuple(describe(record) for record in records),
                )
            )
        for dataset, table in judged - failing.keys():
            if _incident_key(dataset, table) in open_incident_keys():
                resolve_incident(_incident_key(dataset, table), f"{dataset}.{table} is back within its bands")
    except Exception as exc:  # a broken channel must not change the run's outcome
        logger.error("could not send the anomaly alerts: %s", first_line(exc))


def _incident_key(dataset: str, table: str) -> str:
    return f"anomaly {dataset}.{table}"
