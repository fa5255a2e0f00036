"""Runs as the engine records them, made without dispatching anything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.urls import reverse
from django.utils import timezone

from flows.models import Flow, FlowRun, NodeRun
from flows.versions import ensure_current_version

FAILED_AT_PAID = {"orders": "succeeded", "paid": "failed", "shape": "skipped", "push": "skipped"}
ALL_SUCCEEDED = dict.fromkeys(["orders", "paid", "shape", "push"], "succeeded")


def recorded_run(
    flow: Flow,
    status: str = "failed",
    states: dict[str, str] = FAILED_AT_PAID,
    *,
    with_outputs: bool = False,
    nodes: dict[str, dict[str, Any]] | None = None,
    **fields: Any,
) -> FlowRun:
    """A run of the flow's current version with one node run per entry of ``states``.

    ``with_outputs`` gives each succeeded node an output reference (what a rerun reuses);
    ``nodes`` sets further fields of single node runs.
    """
    now = timezone.now()
    run = FlowRun.objects.create(
        flow=flow,
        version=ensure_current_version(flow),
        trigger="manual",
        status=status,
        started_at=now - timedelta(seconds=3),
        finished_at=None if status in ("queued", "running") else now,
        **fields,
    )
    for position, (key, state) in enumerate(states.items()):
        output = f"runs/{run.pk}/{key}.msgpack" if with_outputs and state == "succeeded" else ""
        NodeRun.objects.create(
            run=run,
            node_key=key,
            node_type=flow.nodes.get(key=key).type,
            position=position,
            status=state,
            attempts=1 if state != "skipped" else 0,
            rows_in=0 if key == "orders" else 120,
            rows_out=120 if key == "orders" else 0,
            duration_ms=420 if state != "skipped" else None,
            error="bad value in amount\nsecond line" if state == "failed" else "",
            traceback="Traceback (most recent call last):\n  ...\nValueError: x"
            if state == "failed"
            else "",
            output_ref=output,
            **(nodes or {}).get(key, {}),
        )
    return run


def run_url(run: FlowRun) -> str:
    return reverse("admin:flows_flowrun_change", args=[run.pk])
