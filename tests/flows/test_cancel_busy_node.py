"""Cancel stops a node busy in CPU: its task is terminated after the grace period, the worker
replaces the pool process and goes on serving; nothing runs the node again."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.conf import settings

from flowplatform.celery import app as celery_app
from flows.engine.canvas import node_task_id
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from flows.services import cancel_run, start_run, wait_for_run
from tests.conftest import WorkerProcess, wait_until

pytestmark = pytest.mark.worker


def spin_flow(slug: str, seconds: float) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug,
        "nodes": [{"key": "spin", "type": "dummy_spin", "config": {"seconds": seconds}}],
        "edges": [],
    }


def spin_node(run: FlowRun) -> NodeRun:
    return NodeRun.objects.get(run=run, node_key="spin")


def active_task_ids(worker: WorkerProcess) -> set[str]:
    replies = celery_app.control.inspect(destination=[worker.name], timeout=1).active() or {}
    return {task["id"] for tasks in replies.values() for task in tasks}


def test_cancel_terminates_a_node_busy_in_cpu_and_the_worker_serves_on(
    worker: WorkerProcess,
) -> None:
    apply_flow_file(spin_flow("spin-forever", 600))
    apply_flow_file(spin_flow("spin-briefly", 1))
    children = set(worker.pool_children())
    run = start_run("spin-forever")
    wait_until(lambda: spin_node(run).status == "running", 30, 0.1, "the node did not start")
    task_id = node_task_id(str(run.id), "spin")
    wait_until(lambda: task_id in active_task_ids(worker), 10, 0.2)

    asked_at = time.monotonic()
    assert cancel_run(run)
    bound = settings.FLOWPLATFORM_CANCEL_GRACE_S + 5
    wait_until(
        lambda: spin_node(run).status == "cancelled", bound, 0.1,
        f"the busy node was not stopped within {bound} s of the cancel",
    )  # fmt: skip
    stopped_s = time.monotonic() - asked_at
    wait_until(lambda: task_id not in active_task_ids(worker), 10, 0.2, "the task still runs")

    # The pool process was replaced; the worker itself lives on with a full pool.
    assert worker.process is not None and worker.process.poll() is None

    def replaced() -> bool:
        now = set(worker.pool_children())
        return len(now) == len(children) and now != children

    wait_until(replaced, 10, 0.2, "the terminated pool process was not replaced")

    # The next run on the same worker succeeds.
    following = wait_for_run(start_run("spin-briefly"), timeout=60)
    assert following.status == "succeeded", following.error

    # The terminated task was acknowledged, not delivered again into running the node.
    node_run, run = spin_node(run), FlowRun.objects.get(pk=run.pk)
    assert run.status == "cancelled"
    assert node_run.status == "cancelled"
    assert node_run.error.startswith("cancelled")
    assert node_run.attempts == 1
    assert node_run.deliveries <= 1
    log = worker.log()
    assert f"Terminating {task_id}" in log
    assert log.count(f"flows.run_node[{task_id}] received") == 1
    print(f"cancel of a busy node: stopped {stopped_s:.1f}s after the request")


def test_a_busy_node_of_another_run_is_not_touched(worker: WorkerProcess) -> None:
    apply_flow_file(spin_flow("spin-forever", 600))
    apply_flow_file(spin_flow("spin-a-while", settings.FLOWPLATFORM_CANCEL_GRACE_S + 4))
    doomed = start_run("spin-forever")
    other = start_run("spin-a-while")
    for run in (doomed, other):
        wait_until(lambda run=run: spin_node(run).status == "running", 30, 0.1)

    assert cancel_run(doomed)
    bound = settings.FLOWPLATFORM_CANCEL_GRACE_S + 5
    wait_until(lambda: spin_node(doomed).status == "cancelled", bound, 0.1)

    other = wait_for_run(other, timeout=60)
    assert other.status == "succeeded", other.error
    assert spin_node(other).attempts == 1
