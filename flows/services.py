"""The Python API of the platform: start, wait for and cancel runs."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery.exceptions import CeleryError
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

from flows import transitions
from flows.engine.canvas import build_canvas
from flows.engine.tasks import NodeFailed
from flows.graph import Graph
from flows.models import Flow, FlowRun, FlowVersion, NodeRun, RunStatus, Trigger
from flows.versions import ensure_current_version

logger = logging.getLogger("flowplatform.engine")


class DispatchError(Exception):
    """The run was recorded but could not be handed to the broker; it has been failed."""


def start_run(
    flow_or_slug: Flow | str,
    params: dict[str, Any] | None = None,
    trigger: str = Trigger.API,
    *,
    interval_start: datetime | None = None,
    interval_end: datetime | None = None,
    version: FlowVersion | None = None,
) -> FlowRun:
    """Validate the flow, snapshot its version, record a queued run and dispatch it on commit.

    ``version`` pins an existing version (re-runs); by default the flow's current graph is used.
    Raises ``Flow.DoesNotExist`` for an unknown slug and ``FlowValidationError`` for an invalid
    flow (nothing is recorded then).
    """
    flow = flow_or_slug if isinstance(flow_or_slug, Flow) else Flow.objects.get(slug=flow_or_slug)
    with transaction.atomic():
        version = version or ensure_current_version(flow)
        run = FlowRun.objects.create(
            flow=flow,
            version=version,
            trigger=trigger,
            params=params or {},
            interval_start=interval_start,
            interval_end=interval_end,
        )
        NodeRun.objects.bulk_create(
            NodeRun(run=run, node_key=node["key"], node_type=node["type"], position=index)
            for index, node in enumerate(version.definition["nodes"])
        )
        transaction.on_commit(lambda: dispatch(run))
    run.refresh_from_db()
    return run


def dispatch(run: FlowRun) -> None:
    """Send the run's canvas to the broker (or execute it in-process in embedded mode)."""
    canvas = build_canvas(str(run.id), run.version.definition)
    try:
        canvas.apply_async()
    except NodeFailed:
        pass  # in-process execution re-raises a node's failure; the run already recorded it
    except (BrokerError, CeleryError, OSError) as exc:
        transitions.finish_run(str(run.id), RunStatus.FAILED, f"broker unavailable: {exc}")
        raise DispatchError(f"run {run.id} could not be dispatched: broker unavailable") from exc


def wait_for_run(run: FlowRun, timeout: float = 600, poll_s: float = 0.2) -> FlowRun:
    """Block until the run finishes or ``timeout`` seconds pass; returns the refreshed run."""
    deadline = time.monotonic() + timeout
    run.refresh_from_db()
    while not run.is_finished and time.monotonic() < deadline:
        time.sleep(poll_s)
        run.refresh_from_db()
    return run


def cancel_run(run: FlowRun) -> bool:
    """Mark an active run cancelled; running nodes notice between batches. False if finished."""
    cancelled = transitions.finish_run(str(run.id), RunStatus.CANCELLED, "cancelled by request")
    run.refresh_from_db()
    return cancelled


def rerun(run: FlowRun, *, latest: bool = False) -> FlowRun:
    """Start a new run with the same params and data interval, on the same version by default."""
    return start_run(
        run.flow,
        params=dict(run.params),
        trigger=Trigger.RERUN,
        interval_start=run.interval_start,
        interval_end=run.interval_end,
        version=None if latest else run.version,
    )


def downstream_of(run: FlowRun, node_key: str) -> set[str]:
    return Graph.from_definition(run.version.definition).descendants(node_key)
