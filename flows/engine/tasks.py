"""The Celery tasks of the engine: one per node, one that closes the run, one that fails it."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django.conf import settings

from flowplatform import telemetry
from flows import transitions
from flows.definition import NodePolicy
from flows.engine.executor import (
    Outcome,
    RunCancelled,
    execute_node,
    load_run,
    node_spec,
)
from flows.engine.failures import NodeFailed, next_retry, node_policy
from flows.engine.heartbeat import Heartbeat
from flows.engine.partitions import fan_out, forget_other_runs, in_partitioned_stretch
from flows.graph import Graph
from flows.models import FlowRun, NodeRun, NodeStatus, RunStatus
from nodes import redaction
from nodes.models import connections_read_at
from nodes.redaction import Redactor
from nodes.sdk import NodeError

logger = logging.getLogger("flowplatform.engine")


@shared_task(
    bind=True,
    name="flows.run_node",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def run_node(self: Any, run_id: str, node_key: str, close: bool = False) -> str:
    """Execute one node of a run: take it (``transitions.take``), execute it, finish it
    (``transitions.finish_node``), or retry or fail it. Safe to deliver twice: it never runs
    twice at once, a finished node is not run again, and a delivery whose worker died is taken
    over by the next one.

    ``close``: this is the run's last task; it ends the run once the node has succeeded.
    """
    forget_other_runs(run_id)
    claim = transitions.take(run_id, node_key)
    if claim.outcome == "done":  # a duplicate delivery, or run by its partitions
        if close:
            transitions.close_run(run_id)
        return node_key  # let the canvas go on
    if claim.outcome == "busy":
        logger.info("run %s node %s is executing elsewhere; duplicate dropped", run_id, node_key)
    if claim.outcome != "execute" or claim.node_run is None:
        raise Ignore()
    node_run = claim.node_run
    if claim.took_over and _inside_fan_out(node_run.pk):
        # Its partitions run it; a second, whole execution would send its records twice.
        raise Ignore()
    with connections_read_at(claim.connections):  # (connections read once per process)
        if (replaced := _prepare(self, claim)) is not None:
            return replaced  # (in embedded mode) the fan-out's result, after it ran
        outcome = _execute(self, node_run, claim.outputs)
    if not transitions.finish_node(
        node_run, NodeStatus.SUCCEEDED, close=close, **outcome.figures()
    ):
        # cancelled, failed by a timeout, or taken over while it ran
        logger.warning("run %s node %s finished, but no longer held it", run_id, node_key)
        raise Ignore()
    logger.info("run %s node %s succeeded: %s rows out", run_id, node_key, outcome.rows_out)
    return node_key


def _inside_fan_out(node_run_id: int) -> bool:
    """Whether a running node is run partition by partition: a source that has handed its
    work to a fan-out, or a node of the stretch after a partitioned source (the fan-out, not a
    delivery of its own task, finishes it)."""
    node_run = NodeRun.objects.get(pk=node_run_id)
    if node_run.partitioned:
        return True
    definition = load_run(node_run).version.definition
    return in_partitioned_stretch(definition, node_run.node_key, str(node_run.run_id))


def _prepare(task: Any, claim: transitions.Claim) -> Any:
    """Checks after a claim: a poison node fails, a partitioned source is replaced by its
    fan-out (whose result is returned: ``None`` otherwise)."""
    node_run = claim.node_run
    assert node_run is not None
    if claim.took_over:
        logger.warning("run %s node %s: worker lost, resuming", node_run.run_id, node_run.node_key)
        if node_run.workers_lost >= settings.FLOWPLATFORM_MAX_WORKERS_LOST:
            _fail(node_run, f"worker lost {node_run.workers_lost} times", "")
    if (partitioned := fan_out(task, node_run)) is not None:
        return task.replace(partitioned)
    return None


def _execute(task: Any, node_run: NodeRun, outputs: dict[str, str] | None) -> Outcome:
    """Run the node; a failure is retried (the task raises Retry) or fails the run.

    While the node runs, its redactor learns the secrets of the connections it uses and hides
    them from the process's log records; what a failure records and raises is redacted with it.
    """
    redactor = Redactor()
    version = load_run(node_run).version
    try:
        with (
            Heartbeat(node_run),
            redaction.scope(redactor),
            telemetry.node_execution(node_run, version.flow.slug, version.number, redactor) as seen,
        ):
            outcome = execute_node(node_run, outputs=outputs, redactor=redactor)
            seen.done(outcome.rows_in, outcome.rows_out)
            return outcome
    except RunCancelled:
        transitions.finish_node(node_run, NodeStatus.CANCELLED, error="cancelled")
        raise Ignore() from None
    except transitions.LeaseLost:
        logger.warning(
            "run %s node %s was taken over by another delivery; this one stops",
            node_run.run_id, node_run.node_key,
        )  # fmt: skip
        raise Ignore() from None
    except NodeError as exc:
        _retry_or_fail(task, node_run, str(exc), exc.permanent, redactor)
    except SoftTimeLimitExceeded:
        timeout = f"timed out after {_timeout(node_run)}s"
        _retry_or_fail(task, node_run, timeout, False, redactor)
    except Exception as exc:  # noqa: BLE001 - any bug in a node must fail the run, not hang it
        _retry_or_fail(task, node_run, f"{type(exc).__name__}: {exc}", False, redactor)
    raise AssertionError("unreachable: a failure either retries or fails")


def _policy(node_run: NodeRun) -> NodePolicy:
    return node_policy(node_spec(load_run(node_run).version.definition, node_run.node_key))


def _timeout(node_run: NodeRun) -> float | None:
    return _policy(node_run).timeout_s


def _retry_or_fail(
    task: Any, node_run: NodeRun, message: str, permanent: bool, redactor: Redactor
) -> None:
    """Retry a failure a retry can help while the node's policy allows; otherwise fail.
    Call it while handling the failure (its traceback is recorded).

    The message and traceback are redacted before they are stored, logged or raised; what the
    task raises (Retry, NodeFailed) does not chain the original exception, so the result
    backend and the worker log never see its unredacted text.

    The node goes back to pending, its lease ended, before the retry is sent: a retry due at
    once may be received by another process before this one has returned.
    """
    message = redactor.redact(message)
    delay = next_retry(_policy(node_run), node_run.attempts, node_run.workers_lost, permanent)
    if delay is not None:
        if not transitions.retry_node(node_run, message, delay):
            raise Ignore()  # cancelled or taken over meanwhile: nothing to retry here
        logger.warning(
            "run %s node %s attempt %s failed (%s); retrying in %.1fs",
            node_run.run_id, node_run.node_key, node_run.attempts, message, delay,
        )  # fmt: skip
        raise task.retry(countdown=delay, throw=False) from None
    _fail(node_run, message, redactor.redact(traceback.format_exc()))


def _fail(node_run: NodeRun, message: str, tb: str) -> None:
    """Fail the node, skip its descendants and fail the run; raises NodeFailed (or Ignore when
    the node was no longer this delivery's)."""
    graph = Graph.from_definition(load_run(node_run).version.definition)
    if not transitions.fail_node(node_run, message, tb, graph.descendants(node_run.node_key)):
        raise Ignore()
    logger.warning("run %s node %s failed: %s", node_run.run_id, node_run.node_key, message)
    raise NodeFailed(f"node '{node_run.node_key}' failed: {message}") from None


@shared_task(name="flows.finish_run", acks_late=True)
def finish_run(run_id: str) -> str:
    """The last task of a canvas ending in a group: succeed the run if every node did."""
    transitions.close_run(run_id)
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


@shared_task(name="flows.reap_stalled_runs")
def reap_stalled_runs() -> dict[str, int]:
    """Periodic: re-dispatch or fail runs that stopped making progress (see flows.reaper)."""
    from flows.reaper import reap

    return reap()
