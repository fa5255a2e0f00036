"""What other apps do when a run ends (flow-to-flow triggers, freed run slots).

``flows`` must not import the apps that depend on it, so they register a callback here (in
their ``AppConfig.ready``). ``run_finished`` is called by every final transition of a run,
once per run (the transitions are compare-and-set); callbacks run after the transition
commits, and one that fails is logged and never undoes the run's end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from flows.models import FlowRun

logger = logging.getLogger("flowplatform.engine")

#: Called with the finished run: an instance whose ``flow_id`` and ``limited`` are loaded (other
#: fields may be deferred: refresh it, or load the run, to read them).
RunFinished = Callable[["FlowRun"], object]

_callbacks: dict[str, RunFinished] = {}


def on_run_finished(name: str, callback: RunFinished) -> None:
    """Call ``callback(run)`` whenever a run ends (``name``: registering twice replaces)."""
    _callbacks[name] = callback


def run_finished(run_id: str, run: FlowRun | None = None) -> None:
    """A run has just ended: call the callbacks once the transition commits. ``run``: the
    run's instance when the caller has it already (saves a query)."""
    if _callbacks:
        transaction.on_commit(lambda: _call(run_id, run))


def _call(run_id: str, run: FlowRun | None) -> None:
    from flows.models import FlowRun

    if run is None:
        run = FlowRun.objects.only("id", "flow_id", "limited").filter(pk=run_id).first()
        if run is None:
            return
    for name, callback in list(_callbacks.items()):
        try:
            callback(run)
        except Exception:
            logger.exception("run %s: run-finished callback %s failed", run_id, name)
