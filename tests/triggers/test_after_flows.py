"""Flow-to-flow triggers: an upstream success starts the downstream once, for the same data
interval; ``wait_for_all`` waits until every upstream has succeeded for that interval."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from flows.flowfile import apply_flow_file
from flows.models import FlowRun, RunStatus
from flows.services import start_run, wait_for_run
from scheduling.triggers.upstream import run_finished
from tests.conftest import WorkerProcess, wait_until

INTERVAL = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))


def flow_file(slug: str, triggers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A one-node flow reading its payload (a payload of non-objects makes it fail)."""
    data: dict[str, Any] = {
        "slug": slug,
        "name": slug,
        "nodes": [{"key": "body", "type": "payload", "config": {"records_path": "items"}}],
    }
    if triggers is not None:
        data["triggers"] = triggers
    return data


def upstream_run(slug: str, ok: bool = True) -> FlowRun:
    run = start_run(
        slug,
        trigger="schedule",
        interval_start=INTERVAL[0],
        interval_end=INTERVAL[1],
        payload={"items": [{"id": 1}] if ok else [7]},
    )
    return wait_for_run(run, timeout=60)


def runs_of(slug: str) -> list[FlowRun]:
    return list(FlowRun.objects.filter(flow__slug=slug).order_by("created_at"))


def test_an_upstream_success_starts_the_downstream_once_for_its_interval(
    worker: WorkerProcess,
) -> None:
    apply_flow_file(flow_file("nightly-load"))
    apply_flow_file(flow_file("report", [{"after": "nightly-load", "status": "succeeded"}]))

    upstream = upstream_run("nightly-load")

    assert upstream.status == RunStatus.SUCCEEDED
    downstream = wait_until(lambda: runs_of("report"), 30, message="the downstream never ran")
    assert len(downstream) == 1
    run = wait_for_run(downstream[0], timeout=60)
    assert (run.trigger, run.status) == ("upstream", RunStatus.SUCCEEDED)
    assert (run.interval_start, run.interval_end) == INTERVAL
    assert run.trigger_events.get().details["upstream_run"] == str(upstream.id)
    # The hook delivered again (a retried task, a second process): still one run.
    assert [f.started for f in run_finished(str(upstream.id))] == [False]
    assert len(runs_of("report")) == 1


def test_a_failed_upstream_starts_nothing(worker: WorkerProcess) -> None:
    apply_flow_file(flow_file("nightly-load"))
    apply_flow_file(flow_file("report", [{"after": "nightly-load"}]))

    upstream = upstream_run("nightly-load", ok=False)

    assert upstream.status == RunStatus.FAILED
    assert run_finished(str(upstream.id)) == []
    assert runs_of("report") == []


def test_wait_for_all_starts_the_downstream_once_both_upstreams_succeeded(
    worker: WorkerProcess,
) -> None:
    apply_flow_file(flow_file("load-eu"))
    apply_flow_file(flow_file("load-us"))
    apply_flow_file(flow_file("merge", [{"after": ["load-eu", "load-us"], "wait_for_all": True}]))

    first = upstream_run("load-eu")

    assert first.status == RunStatus.SUCCEEDED
    assert run_finished(str(first.id)) == []  # load-us has not run for the interval yet
    assert runs_of("merge") == []

    second = upstream_run("load-us")

    assert second.status == RunStatus.SUCCEEDED
    merged = wait_until(lambda: runs_of("merge"), 30, message="the fan-in never ran")
    run = wait_for_run(merged[0], timeout=60)
    assert (run.interval_start, run.interval_end, run.status) == (*INTERVAL, RunStatus.SUCCEEDED)
    assert sorted(run.trigger_events.get().details["upstream_runs"]) == sorted(
        [str(first.id), str(second.id)]
    )
    # Either upstream's hook again, or both: one run for the interval.
    run_finished(str(first.id))
    run_finished(str(second.id))
    assert len(runs_of("merge")) == 1


@pytest.mark.django_db
def test_the_admin_draws_the_dependency_graph_of_flows(admin_user: User) -> None:
    apply_flow_file(flow_file("load-eu"))
    apply_flow_file(flow_file("load-us"))
    apply_flow_file(flow_file("merge", [{"after": ["load-eu", "load-us"], "wait_for_all": True}]))
    client = Client()
    client.force_login(admin_user)

    page = client.get("/admin/scheduling/flowtrigger/dependencies/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html
    for slug in ("load-eu", "load-us", "merge", "wait for all"):
        assert slug in html
