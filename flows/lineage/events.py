"""OpenLineage run events for what a run does: dlt loads, dbt nodes, Soda contracts, publishing.

Built with the ``openlineage-python`` client's generated classes, so every facet carries
the spec's ``_schemaURL`` and the client's own serialiser writes them. Pure: the callers
pass what happened (flows/lineage/__init__.py gathers it); nothing here reads a
warehouse or sends anything.

Naming follows OpenLineage's conventions: a warehouse table is the dataset
``<database>.<schema>.<table>`` in the warehouse's namespace (``duckdb://<file>``,
``snowflake://<account>``, ``bigquery``); a source table is the endpoint or table in the
source's namespace (dlt_sources/common/lineage.py). Every event names the Prefect flow
run that made it in a parent-run facet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
    sql_job,
)
from openlineage.client.uuid import generate_new_uuid

from flows.lineage.model import Checked, FieldSource, JobRun, Parent, Table

PRODUCER = "https://github.com/elt-platform/elt/flows/lineage"


def run_events(parent: Parent, job: JobRun) -> list[RunEvent]:
    """START and COMPLETE (or FAIL) of one job run, both tied to the flow run."""
    run_id = str(generate_new_uuid(job.started))
    job_facets = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration=job.integration, jobType=job.job_type, producer=PRODUCER
        )
    }
    if job.sql:
        job_facets["sql"] = sql_job.SQLJobFacet(query=job.sql, producer=PRODUCER)
    lineage_job = Job(namespace=parent.namespace, name=job.name, facets=job_facets)
    inputs = [
        checked_dataset(item.table, item.assertions) if isinstance(item, Checked) else input_dataset(item)
        for item in job.inputs
    ]
    outputs = [output_dataset(out.table, out.lineage, out.rows, out.size) for out in job.outputs]
    run_facets: dict = {"parent": _parent_facet(parent)}
    start = RunEvent(
        eventType=RunState.START,
        eventTime=job.started.isoformat(),
        run=Run(runId=run_id, facets=run_facets),
        job=lineage_job,
        inputs=inputs,
        outputs=[OutputDataset(namespace=out.namespace, name=out.name) for out in outputs],
        producer=PRODUCER,
    )
    if job.error is not None:
        run_facets = run_facets | {
            "errorMessage": error_message_run.ErrorMessageRunFacet(
                message=job.error, programmingLanguage="python", producer=PRODUCER
            )
        }
    end = RunEvent(
        eventType=RunState.FAIL if job.error is not None else RunState.COMPLETE,
        eventTime=job.finished.isoformat(),
        run=Run(runId=run_id, facets=run_facets),
        job=lineage_job,
        inputs=inputs,
        outputs=outputs,
        producer=PRODUCER,
    )
    return [start, end]


def input_dataset(table: Table) -> InputDataset:
    return InputDataset(namespace=table.namespace, name=table.name, facets=_schema(table))


def output_dataset(
    table: Table,
    lineage: Mapping[str, Sequence[FieldSource]] | None = None,
    rows: int | None = None,
    size: int | None = None,
) -> OutputDataset:
    """A written table: its schema, where each column comes from, how many rows and bytes."""
    facets = _schema(table)
    if lineage is not None:
        facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
            fields={column: _fields(sources) for column, sources in lineage.items() if sources},
            producer=PRODUCER,
        )
    output_facets = {}
    if rows is not None:
        output_facets["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows, size=size, producer=PRODUCER
            )
        )
    return OutputDataset(
        namespace=table.namespace, name=table.name, facets=facets, outputFacets=output_facets
    )


def checked_dataset(table: Table, assertions: Iterable[tuple[str, bool, str | None]]) -> InputDataset:
    """A table a contract checked, with each check as an assertion (name, passed, column)."""
    facet = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=[
            data_quality_assertions_dataset.Assertion(assertion=name, success=passed, column=column)
            for name, passed, column in assertions
        ],
        producer=PRODUCER,
    )
    return InputDataset(
        namespace=table.namespace,
        name=table.name,
        facets=_schema(table),
        inputFacets={"dataQualityAssertions": facet},
    )


def _schema(table: Table) -> dict:
    if not table.columns:
        return {}
    fields = [
        schema_dataset.SchemaDatasetFacetFields(name=name, type=kind or None, ordinal_position=position)
        for position, (name, kind) in enumerate(table.columns.items(), start=1)
    ]
    return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)}


def _fields(sources: Sequence[FieldSource]) -> column_lineage_dataset.Fields:
    return column_lineage_dataset.Fields(
        inputFields=[
            column_lineage_dataset.InputField(
                namespace=source.namespace,
                name=source.name,
                field=source.field,
                transformations=[
                    column_lineage_dataset.Transformation(
                        type="DIRECT", subtype=source.subtype, masking=source.masking or None
                    )
                ],
            )
            for source in sources
        ]
    )


def _parent_facet(parent: Parent) -> parent_run.ParentRunFacet:
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=parent.run_id),
        job=parent_run.Job(namespace=parent.namespace, name=parent.job),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=parent.run_id),
            job=parent_run.RootJob(namespace=parent.namespace, name=parent.job),
        ),
    )
