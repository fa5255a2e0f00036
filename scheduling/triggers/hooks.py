"""Wiring of triggers to the engine's run-finished hook (called in ``AppConfig.ready``).

When a run ends, one query finds what listens to it: the enabled ``after`` triggers naming its
flow (``scheduling.triggers.upstream``) and the file triggers whose files wait for it to be
moved or tagged (``scheduling.triggers.settle``). The end of a run nothing listens to costs that
one query.
"""

from __future__ import annotations

from typing import Any

from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, QuerySet, Subquery

from flows import hooks
from flows.models import Flow, FlowRun
from scheduling.triggers.models import AfterSuccess, FlowTrigger, TriggerEvent, TriggerKind


def connect() -> None:
    hooks.on_run_finished("triggers", run_finished)


def listening(run: FlowRun) -> QuerySet[FlowTrigger]:
    """The triggers the end of ``run`` concerns (one query when evaluated)."""
    slug = Flow.objects.filter(pk=run.flow_id).values("slug")[:1]
    names_flow = Func(
        F("config__upstreams"), Subquery(slug), function="jsonb_exists", output_field=BooleanField()
    )
    files_wait = Exists(
        TriggerEvent.objects.filter(
            trigger=OuterRef("pk"), run_id=run.pk, after_success=AfterSuccess.PENDING
        )
    )
    return FlowTrigger.objects.filter(
        Q(names_flow, kind=TriggerKind.AFTER, enabled=True) | Q(files_wait, kind=TriggerKind.FILES)
    ).select_related("flow", "owner")


def run_finished(run: FlowRun) -> Any:
    """Start the flows waiting on ``run`` and settle the files it was started for."""
    from scheduling.triggers import settle, upstream

    triggers = list(listening(run))
    after = [t for t in triggers if t.kind == TriggerKind.AFTER]
    if after:
        upstream.run_finished(run, after)
    if len(after) < len(triggers):
        settle.run_finished(run.pk)
