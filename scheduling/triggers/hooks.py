"""Wiring of triggers to the engine's run-finished hook (called in ``AppConfig.ready``).

When a run ends, one query finds what listens to it: the enabled ``after`` triggers naming its
flow (``scheduling.triggers.upstream``) and the file triggers whose files wait for it to be
moved or tagged (``scheduling.triggers.settle``) (on PostgreSQL; a few on SQLite, in the
embedded demo). Whether anything listens at all is asked first, by the statement that ends the
run (:func:`concerned`, a ``flows.hooks`` concern): the end of a run nothing listens to costs no
query.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from flows import hooks
from flows.models import Flow, FlowRun
from scheduling.triggers.models import AfterSuccess, FlowTrigger, TriggerEvent, TriggerKind

_CONCERNED = (
    "EXISTS (SELECT 1 FROM {trigger} AS t WHERE t.kind = %(triggers_after)s AND t.enabled"
    "{names_it}) OR EXISTS (SELECT 1 FROM {event} AS e WHERE e.run_id = %(run)s"
    " AND e.after_success = %(triggers_pending)s)"
)


def connect() -> None:
    hooks.on_run_finished("triggers", run_finished, concerned=concerned)


def concerned(vendor: str) -> tuple[str, dict[str, Any]]:
    """Whether a trigger may listen to the end of the run ``%(run)s`` (a ``flows.hooks``
    concern): an enabled ``after`` trigger naming its flow (on SQLite: any enabled ``after``
    trigger), or a file waiting for it."""
    names_it = (
        " AND jsonb_exists(t.config -> 'upstreams', (SELECT f.slug FROM {flow} AS f"
        " JOIN {run} AS r ON r.flow_id = f.id WHERE r.id = %(run)s))"
        if vendor == "postgresql"
        else ""
    )
    sql = _CONCERNED.replace("{names_it}", names_it).format(
        trigger=_quoted(FlowTrigger),
        event=_quoted(TriggerEvent),
        flow=_quoted(Flow),
        run=_quoted(FlowRun),
    )
    return sql, {
        "triggers_after": str(TriggerKind.AFTER),
        "triggers_pending": str(AfterSuccess.PENDING),
    }


def listening(run: FlowRun) -> list[FlowTrigger]:
    """The triggers the end of ``run`` concerns: the enabled ``after`` triggers naming its
    flow, and the file triggers with a file waiting for it. One query on PostgreSQL (written
    out: built from ORM expressions it costs twice the time to compile, at every run's end)."""
    if connection.vendor != "postgresql":
        return _listening_elsewhere(run)
    params = [TriggerKind.AFTER, run.flow_id, TriggerKind.FILES, run.pk, AfterSuccess.PENDING]
    return list(
        FlowTrigger.objects.extra(
            where=[
                '("scheduling_flowtrigger"."kind" = %s AND "scheduling_flowtrigger"."enabled"'
                ' AND jsonb_exists("scheduling_flowtrigger"."config" -> \'upstreams\','
                ' (SELECT "slug" FROM "flows_flow" WHERE "id" = %s)))'
                ' OR ("scheduling_flowtrigger"."kind" = %s AND EXISTS (SELECT 1'
                ' FROM "scheduling_triggerevent" WHERE "trigger_id" = "scheduling_flowtrigger"."id"'
                ' AND "run_id" = %s AND "after_success" = %s))'
            ],
            params=params,
        )
        .select_related("flow", "owner")
        .order_by()
    )


def _listening_elsewhere(run: FlowRun) -> list[FlowTrigger]:
    """The same on SQLite (the embedded demo), which has no ``jsonb_exists``: a few queries."""
    slug = Flow.objects.filter(pk=run.flow_id).values_list("slug", flat=True).first()
    triggers = FlowTrigger.objects.select_related("flow", "owner").order_by()
    after = triggers.filter(kind=TriggerKind.AFTER, enabled=True)
    files = triggers.filter(
        kind=TriggerKind.FILES,
        pk__in=TriggerEvent.objects.filter(
            run_id=run.pk, after_success=AfterSuccess.PENDING
        ).values("trigger_id"),
    )
    return [t for t in after if slug in t.option("upstreams", [])] + list(files)


def _quoted(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def run_finished(run: FlowRun) -> Any:
    """Start the flows waiting on ``run`` and settle the files it was started for."""
    from scheduling.triggers import settle, upstream

    triggers = listening(run)
    after = [t for t in triggers if t.kind == TriggerKind.AFTER]
    if after:
        upstream.run_finished(run, after)
    if len(after) < len(triggers):
        settle.run_finished(run.pk)
