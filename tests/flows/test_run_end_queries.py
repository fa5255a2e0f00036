"""The end of a run asks the run-end hooks whether it concerns them in the statement that
closes the run (``flows.hooks`` concerns): a flow nothing listens to costs no query at its end,
and a flow with after-triggers, waiting files or alerts still has them called. Run on the
platform database, whichever backend it is (PostgreSQL, through PgBouncer, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flowplatform import metrics
from flowplatform.alerts.models import FlowAlert
from flows import transitions
from flows.models import FlowRun, NodeRun
from flows.signals import run_finished
from scheduling.triggers.models import FlowTrigger
from tests.flows.helpers import queued_run

pytestmark = [
    pytest.mark.usefixtures("transactional_db", "example_connections"),
    pytest.mark.embedded,
]


@pytest.fixture
def heard() -> Iterator[list[Any]]:
    """What the ``run_finished`` signal carried as ``concerns``, per run end."""
    answers: list[Any] = []

    def receiver(sender: Any, concerns: Any = None, **_kwargs: Any) -> None:
        answers.append(concerns)

    run_finished.connect(receiver, dispatch_uid="test.run_end_queries")
    try:
        yield answers
    finally:
        run_finished.disconnect(dispatch_uid="test.run_end_queries")


def last_node_taken(flow_file: dict[str, Any]) -> tuple[FlowRun, NodeRun]:
    """A run whose nodes succeeded but the last, which is taken (about to finish)."""
    run = queued_run(flow_file)
    NodeRun.objects.filter(run=run).exclude(node_key="push").update(status="succeeded")
    claim = transitions.take(str(run.id), "push")
    assert claim.node_run is not None
    return run, claim.node_run


def close(node_run: NodeRun) -> CaptureQueriesContext:
    with CaptureQueriesContext(connection) as finish:
        assert transitions.finish_node(
            node_run, "succeeded", close=True, rows_in=0, rows_out=0, output_ref=""
        )
    assert FlowRun.objects.get(id=node_run.run_id).status == "succeeded"
    return finish


@pytest.fixture
def no_metrics() -> Iterator[None]:
    """Metrics off, as in a worker without ``FLOWPLATFORM_WORKER_METRICS_PORT`` (counting a
    run's end may read the run when the caller's instance lacks its version)."""
    collecting = metrics.collecting()
    metrics.set_collecting(False)
    try:
        yield
    finally:
        metrics.set_collecting(collecting)


def test_the_end_of_a_run_nothing_listens_to_costs_no_query(
    minimal_flow: dict[str, Any], heard: list[Any], no_metrics: None
) -> None:
    _run, node_run = last_node_taken(minimal_flow)
    finish = close(node_run)
    # PostgreSQL: the finish statement alone; SQLite runs its steps one by one in a
    # transaction (BEGIN, 3 statements, COMMIT).
    statements = 1 if connection.vendor == "postgresql" else 5
    assert len(finish) == statements, [q["sql"][:80] for q in finish]
    assert heard == [{"alerts": False, "triggers": False}]


def test_an_after_trigger_naming_the_flow_is_heard(
    minimal_flow: dict[str, Any], heard: list[Any]
) -> None:
    run, node_run = last_node_taken(minimal_flow)
    # (waits for a failure of the flow: the run succeeding starts nothing)
    FlowTrigger.objects.create(
        flow=run.flow,
        kind="after",
        name="after-itself",
        config={"upstreams": [run.flow.slug], "status": "failed"},
    )
    finish = close(node_run)
    assert heard == [{"alerts": False, "triggers": True}]
    # the trigger's own query finds it (after the finish statement)
    assert any("scheduling_flowtrigger" in q["sql"] for q in finish[1:])


def test_a_disabled_after_trigger_or_one_naming_another_flow_is_not(
    minimal_flow: dict[str, Any], heard: list[Any]
) -> None:
    run, node_run = last_node_taken(minimal_flow)
    upstreams = {"upstreams": [run.flow.slug], "status": "failed"}
    FlowTrigger.objects.create(
        flow=run.flow, kind="after", name="off", config=upstreams, enabled=False
    )
    close(node_run)
    assert heard[-1] == {"alerts": False, "triggers": False}
    if connection.vendor != "postgresql":
        return  # (SQLite, the embedded demo, answers "maybe" for any enabled after-trigger)
    _run, node_run = last_node_taken(minimal_flow)
    other = {"upstreams": ["another-flow"], "status": "failed"}
    FlowTrigger.objects.create(flow=run.flow, kind="after", name="other", config=other)
    close(node_run)
    assert heard[-1] == {"alerts": False, "triggers": False}


def test_a_flow_with_alerts_is_heard_by_them(
    minimal_flow: dict[str, Any], heard: list[Any], eager: None
) -> None:
    run, node_run = last_node_taken(minimal_flow)
    FlowAlert.objects.create(flow=run.flow, events=["failed"])  # no target: sends nothing
    finish = close(node_run)
    assert heard == [{"alerts": True, "triggers": False}]
    assert any("alerts_flowalert" in q["sql"] for q in finish[1:])  # (notify_run's, eager)
    # The answer given, the alerts do not ask again whether the flow has alerts.
    asked = [q["sql"] for q in finish[1:] if q["sql"].startswith(ASKS_FOR_ALERTS)]
    assert asked == []


#: How ``FlowAlert.objects.filter(...).exists()`` starts.
ASKS_FOR_ALERTS = 'SELECT 1 AS "a" FROM "alerts_flowalert"'


def test_a_run_ended_another_way_asks_whether_it_has_alerts(
    minimal_flow: dict[str, Any], heard: list[Any], eager: None
) -> None:
    run = queued_run(minimal_flow)
    FlowAlert.objects.create(flow=run.flow, events=["failed"])  # no target: sends nothing
    with CaptureQueriesContext(connection) as ended:
        assert transitions.finish_run(str(run.id), "failed", "stopped")
    assert heard == [None]
    assert [q for q in ended if q["sql"].startswith(ASKS_FOR_ALERTS)]


def test_a_run_ended_another_way_asks_every_hook(
    minimal_flow: dict[str, Any], heard: list[Any]
) -> None:
    run = queued_run(minimal_flow)
    assert transitions.finish_run(str(run.id), "failed", "stopped")
    assert heard == [None]  # not asked: each hook looks for itself
