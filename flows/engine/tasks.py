"""The Celery tasks of the engine: one per node, one that closes the run, one that fails it."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore

from flows import transitions
from flows.engine.executor import execute_node
from flows.graph import Graph
from flows.models import FlowRun, NodeRun, NodeStatus, RunStatus
from nodes.sdk import NodeError

logger = logging.getLogger("flowplatform.engine")


class NodeFailed(Exception):
    """Raised by a node task after recording the failure, to stop the rest of the canvas."""


@shared_task(name="flows.run_node", acks_late=True, reject_on_worker_lost=True)
def run_node(run_id: str, node_key: str) -> str:
    """Execute one node of a run. Safe to deliver twice: a finished node is not run again."""
    node_run = transitions.claim_node(run_id, node_key)
    if node_run is None:
        return _after_unclaimable(run_id, node_key)
    transitions.mark_run_running(run_id)
    try:
        outcome = execute_node(node_run)
    except NodeError as exc:
        _fail(node_run, str(exc), traceback.format_exc())
    except Exception as exc:  # noqa: BLE001 - any bug in a node must fail the run, not hang it
        _fail(node_run, f"{type(exc).__name__}: {exc}", traceback.format_exc())
    transitions.finish_node(
        node_run,
        NodeStatus.SUCCEEDED,
        rows_in=outcome.rows_in,
        rows_out=outcome.rows_out,
        output_ref=outcome.output_ref,
    )
    logger.info("run %s node %s succeeded: %s rows out", run_id, node_key, outcome.rows_out)
    return node_key


def _after_unclaimable(run_id: str, node_key: str) -> str:
    """A duplicate or late delivery: continue the chain only past a node that succeeded."""
    status = (
        NodeRun.objects.filter(run_id=run_id, node_key=node_key)
        .values_list("status", flat=True)
        .first()
    )
    if status == NodeStatus.SUCCEEDED:
        return node_key
    raise Ignore()


def _fail(node_run: NodeRun, message: str, tb: str) -> None:
    transitions.finish_node(node_run, NodeStatus.FAILED, error=message[:10000], traceback=tb)
    graph = Graph.from_definition(node_run.run.version.definition)
    transitions.skip_nodes(node_run.run_id, graph.descendants(node_run.node_key))
    transitions.finish_run(
        str(node_run.run_id), RunStatus.FAILED, f"node '{node_run.node_key}' failed: {message}"
    )
    logger.warning("run %s node %s failed: %s", node_run.run_id, node_run.node_key, message)
    raise NodeFailed(f"node '{node_run.node_key}' failed: {message}")


@shared_task(name="flows.finish_run", acks_late=True)
def finish_run(run_id: str) -> str:
    """The last task of a run's canvas: succeed the run if every node did."""
    statuses = set(NodeRun.objects.filter(run_id=run_id).values_list("status", flat=True))
    if statuses <= {NodeStatus.SUCCEEDED}:
        transitions.finish_run(run_id, RunStatus.SUCCEEDED)
    else:
        transitions.finish_run(run_id, RunStatus.FAILED, "not every node succeeded")
    return run_id


@shared_task(name="flows.barrier")
def barrier(*_results: Any) -> None:
    """Joins a fan-out before the next fan-out (a chord body that does nothing)."""


@shared_task(name="flows.fail_run")
def fail_run(request: Any, exc: BaseException, tb: Any, run_id: str) -> None:
    """Error callback of a run's canvas: make sure the run ends failed, never hangs."""
    run = FlowRun.objects.filter(id=run_id).first()
    if run is not None and not run.is_finished:
        transitions.finish_run(run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
