"""What other apps do when a run ends (flow-to-flow triggers, freed run slots).

``flows`` must not import the apps that depend on it, so they register a callback here (in
their ``AppConfig.ready``). ``run_finished`` is called by every final transition of a run,
once per run (the transitions are compare-and-set); callbacks run after the transition
commits, and one that fails is logged and never undoes the run's end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

logger = logging.getLogger("flowplatform.engine")

RunFinished = Callable[[str], object]

_callbacks: dict[str, RunFinished] = {}


def on_run_finished(name: str, callback: RunFinished) -> None:
    """Call ``callback(run_id)`` whenever a run ends (``name``: registering twice replaces)."""
    _callbacks[name] = callback


def run_finished(run_id: str) -> None:
    """A run has just ended: call the callbacks once the transition commits."""
    if _callbacks:
        transaction.on_commit(lambda: _call(run_id))


def _call(run_id: str) -> None:
    for name, callback in list(_callbacks.items()):
        try:
            callback(run_id)
        except Exception:
            logger.exception("run %s: run-finished callback %s failed", run_id, name)
