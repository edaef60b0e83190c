"""Each node of one dbt invocation shown as a Prefect task run, without a Prefect task per node.

prefect-dbt's ``PrefectDbtRunner`` runs every dbt node inside its own Prefect task
(~137 ms of orchestration per node on this machine, more than dbt's own time for most
nodes), which made the flow's dbt stage 3.7 times dbt's time. Here dbt runs once, in
this process, and a dbt callback turns each node's start and finish into the same
``prefect.task-run.*`` events Prefect's own task engine sends; the server's task-run
recorder writes them in bulk. Nodes appear live in the UI (Running when dbt starts
them, then Completed or Failed with dbt's message and time), named
``"<resource type> <node name>"``. A retry of the flow builds the nodes that failed or
were skipped (they are pending, flows/build_state.py); each attempt's task runs carry
the flow run's attempt number.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import uuid4

from prefect.client.schemas.objects import TaskRun, TaskRunPolicy
from prefect.context import FlowRunContext
from prefect.events.schemas.events import Event
from prefect.states import Completed, Failed, Running, State
from prefect.utilities.engine import emit_task_run_state_change_event

from flows.results import FAILED_STATUSES

NODE_TAG: Final[str] = "dbt"
# "false" turns the per-node task runs off (the run's log and artifact still list every
# node): each node is a task run with its states on the Prefect server, which for a
# project of thousands of nodes built many times a day is load worth sparing
RECORD_SETTING: Final[str] = "ELT_DBT_NODE_TASK_RUNS"


def task_run_name(resource_type: str, node_name: str) -> str:
    """The name a node's task run has in Prefect: ``model fct_orders``, ``test unique_…``."""
    return f"{resource_type} {node_name}"


def final_state(status: str, message: str | None) -> State[Any]:
    """Completed for success, pass and warn (a warning keeps dbt's message); Failed otherwise."""
    status = status.lower()
    text = f"dbt {status}" + (f": {message}" if message else "")
    if status in FAILED_STATUSES:
        return Failed(message=text)
    return Completed(message=text)


@dataclass
class _Running:
    task_run: TaskRun
    state: State[Any]
    event: Event | None


class NodeTaskRuns:
    """A dbt callback (``dbtRunner(callbacks=[...])``) recording nodes as task runs of one flow run.

    dbt calls it from its worker threads, where the flow's context variables are unset;
    each event is emitted inside a copy of the context this object was created in, so
    Prefect links the task runs to the flow run as it does for its own tasks.
    """

    def __init__(self, flow_run_context: FlowRunContext) -> None:
        flow_run = flow_run_context.flow_run
        assert flow_run is not None
        self._flow_run_id = flow_run.id
        self._attempt = flow_run.run_count
        self._context = contextvars.copy_context()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_current_flow_run(cls) -> NodeTaskRuns | None:
        """A recorder for the flow run this code is in, or None outside one (a plain dbt run)
        or when ``ELT_DBT_NODE_TASK_RUNS`` is false."""
        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            return None
        return cls(context) if os.environ.get(RECORD_SETTING, "true").strip().lower() != "false" else None

    def __call__(self, message: Any) -> None:
        name = message.info.name
        if name == "NodeStart":
            self._start(message.data.node_info)
        elif name == "NodeFinished":
            result = message.data.run_result
            self._finish(message.data.node_info, result.status, result.message)

    def _start(self, node: Any) -> None:
        now = datetime.now(UTC)
        running = Running(timestamp=now)
        task_run = TaskRun(
            id=uuid4(),
            name=task_run_name(node.resource_type, node.node_name),
            flow_run_id=self._flow_run_id,
            task_key=f"dbt-{node.unique_id}",
            dynamic_key=uuid4().hex,
            empirical_policy=TaskRunPolicy(),
            tags=[NODE_TAG, node.resource_type],
            expected_start_time=now,
            start_time=now,
            run_count=1,
            flow_run_run_count=self._attempt,
            state=running,
        )
        running.state_details.task_run_id = task_run.id
        running.state_details.flow_run_id = self._flow_run_id
        event = self._emit(task_run, None, running, None)
        with self._lock:
            self._running[node.unique_id] = _Running(task_run, running, event)

    def _finish(self, node: Any, status: str, message: str | None) -> None:
        with self._lock:
            started = self._running.pop(node.unique_id, None)
        if started is None:  # a node dbt finished without starting it (never seen, but harmless)
            return
        state = final_state(status, message)
        state.state_details.task_run_id = started.task_run.id
        state.state_details.flow_run_id = self._flow_run_id
        task_run = started.task_run.model_copy(
            update={
                "end_time": state.timestamp,
                "total_run_time": state.timestamp - started.state.timestamp,
                "state": state,
            }
        )
        self._emit(task_run, started.state, state, started.event)

    def _emit(
        self, task_run: TaskRun, previous: State[Any] | None, state: State[Any], follows: Event | None
    ) -> Event | None:
        emit: Callable[..., Event | None] = emit_task_run_state_change_event
        return self._context.copy().run(emit, task_run, previous, state, follows)
