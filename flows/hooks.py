"""What other apps do when a run ends (flow-to-flow triggers, freed run slots, alerts).

``flows`` must not import the apps that depend on it, so they register a callback here (in
their ``AppConfig.ready``). ``run_finished`` is called by every final transition of a run,
once per run (the transitions are compare-and-set); callbacks run after the transition
commits, and one that fails is logged and never undoes the run's end.

A callback, or a receiver of the ``flows.signals.run_finished`` signal, that queries the
database to learn whether a run's end concerns it at all may register that question as a
:data:`Concern`: a boolean SQL expression over the run's id. The statement that ends a run of
the engine's usual path (its last node's finish) asks every registered question in the same
round trip, and a callback whose question answered *no* is not called: the end of a run
nothing listens to costs no query (``concerns`` is ``None`` when nobody asked, e.g. a failed
or cancelled run: then every callback is called and asks for itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.db import transaction

if TYPE_CHECKING:
    from flows.models import FlowRun

logger = logging.getLogger("flowplatform.engine")

#: Called with the finished run: an instance whose ``flow_id`` and ``limited`` are loaded (other
#: fields may be deferred: refresh it, or load the run, to read them).
RunFinished = Callable[["FlowRun"], object]
#: Given the database's vendor (``postgresql``, ``sqlite``): a boolean SQL expression, true when
#: the end of the run ``%(run)s`` may concern the callback (true when unsure), and the values
#: of its other parameters (named after the concern, e.g. ``%(triggers_kind)s``, so that
#: concerns never clash). Tables by their model's ``_meta.db_table``; values always bound.
Concern = Callable[[str], tuple[str, dict[str, Any]]]
#: What the registered concerns answered for a run, by name.
Concerns = Mapping[str, bool]

_callbacks: dict[str, RunFinished] = {}
_concerns: dict[str, Concern] = {}


def on_run_finished(name: str, callback: RunFinished, *, concerned: Concern | None = None) -> None:
    """Call ``callback(run)`` whenever a run ends (``name``: registering twice replaces);
    with ``concerned``, only when it answers true for the run (or was not asked)."""
    _callbacks[name] = callback
    if concerned is not None:
        _concerns[name] = concerned
    else:
        _concerns.pop(name, None)


def concern(name: str, concerned: Concern) -> None:
    """Register the question a receiver of the ``run_finished`` signal asks (read the answer
    with :func:`concerned`, from the signal's ``concerns`` argument)."""
    _concerns[name] = concerned


def concerns_sql(vendor: str) -> tuple[list[str], list[str], dict[str, Any]]:
    """The registered concerns as the engine asks them: their names, their expressions, and
    the values of their parameters (``%(run)s`` aside)."""
    names, expressions, params = [], [], {}
    for name, concerned in sorted(_concerns.items()):
        sql, values = concerned(vendor)
        names.append(name)
        expressions.append(f"({sql})")
        params.update(values)
    return names, expressions, params


def concerned(concerns: Concerns | None, name: str) -> bool:
    """Whether the end of a run may concern ``name``: not when its question answered no."""
    return concerns is None or concerns.get(name, True)


def run_finished(run_id: str, run: FlowRun | None = None, concerns: Concerns | None = None) -> None:
    """A run has just ended: call the callbacks once the transition commits. ``run``: the
    run's instance when the caller has it already (saves a query); ``concerns``: what the
    concerns answered, when the transition asked them."""
    callbacks = {n: c for n, c in _callbacks.items() if concerned(concerns, n)}
    if callbacks:
        transaction.on_commit(lambda: _call(run_id, run, callbacks))


def _call(run_id: str, run: FlowRun | None, callbacks: dict[str, RunFinished]) -> None:
    from flows.models import FlowRun

    if run is None:
        run = FlowRun.objects.only("id", "flow_id", "limited").filter(pk=run_id).first()
        if run is None:
            return
    for name, callback in callbacks.items():
        try:
            callback(run)
        except Exception:
            logger.exception("run %s: run-finished callback %s failed", run_id, name)
