"""A run closed by its last node is counted without a query of its own (on a real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from flowplatform import metrics, telemetry
from flows import transitions
from flows.engine.executor import load_run
from flows.models import NodeRun
from tests.flows.helpers import queued_run

pytestmark = pytest.mark.usefixtures("transactional_db", "example_connections")


def counted(flow: str, name: str = "flowplatform_runs_total", **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, {"flow": flow, **labels})
    return value or 0.0


def test_the_last_node_closing_a_run_counts_it_without_a_query(
    minimal_flow: dict[str, Any],
) -> None:
    assert metrics.collecting()
    run = queued_run(minimal_flow)
    slug = run.flow.slug
    NodeRun.objects.filter(run=run).exclude(node_key="push").update(status="succeeded")
    claim = transitions.take(str(run.id), "push")
    assert claim.outcome == "execute"
    node_run = claim.node_run
    assert node_run is not None
    load_run(node_run)  # as the node's execution does (its version, with its flow)
    assert transitions.finish_node(
        node_run, "succeeded", close=True, rows_in=3, rows_out=3, output_ref="x"
    )
    run.refresh_from_db()
    assert run.status == "succeeded"
    runs_before = counted(slug, status="succeeded", trigger="api")
    durations_before = counted(slug, "flowplatform_run_duration_seconds_count")

    with CaptureQueriesContext(connection) as queries:
        telemetry.run_finished(str(run.id), "succeeded", node_run.run)

    assert len(queries) == 0
    assert counted(slug, status="succeeded", trigger="api") == runs_before + 1
    assert counted(slug, "flowplatform_run_duration_seconds_count") == durations_before + 1


def test_without_the_runs_instance_it_is_read_from_the_database(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    slug = run.flow.slug
    type(run).objects.filter(id=run.id).update(status="failed", trigger="schedule")
    before = counted(slug, status="failed", trigger="schedule")

    with CaptureQueriesContext(connection) as queries:
        telemetry.run_finished(str(run.id), "failed")

    assert len(queries) == 1
    assert counted(slug, status="failed", trigger="schedule") == before + 1
