"""Who may create, change, enable, disable and delete schedules.

A schedule starts runs of its flow with its params for whoever set it up, so anything that
makes or changes what a schedule runs needs the ``run`` right on the flow (``flows.run_flow``
or a run grant), wherever it happens: the API, the admin, a flow file's ``schedules``.
Disabling, editing the description and deleting need only the right to edit: the global
model permission on schedules or ``change`` on the flow. Whoever makes a change that needs
``run`` becomes the schedule's ``owner``; its runs are started as that user (``start_run``
checks the owner's rights again each time), so revoking a right stops the schedule's runs.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from flows import access
from flows.models import Flow
from flows.validation import FlowProblem
from scheduling.models import FlowSchedule, ScheduledRun

#: Fields whose change alters nothing a schedule runs (``enabled`` only when turned off).
HARMLESS_FIELDS = {"description", "position"}


def schedules_for(user: Any, queryset: QuerySet[FlowSchedule]) -> QuerySet[FlowSchedule]:
    """The schedules ``user`` may see: all with ``view_flowschedule``, else their flow's."""
    return _visible(user, queryset, "flow")


def intervals_for(user: Any, queryset: QuerySet[ScheduledRun]) -> QuerySet[ScheduledRun]:
    """The fired intervals ``user`` may see: those of the schedules ``schedules_for`` shows."""
    return _visible(user, queryset, "schedule__flow")


def _visible(user: Any, queryset: QuerySet[Any], flow_field: str) -> Any:
    if user.has_perm("scheduling.view_flowschedule"):
        return queryset
    return access.related_for(user, queryset, flow_field)


def may_view(user: Any, flow: Flow | None = None) -> bool:
    """May ``user`` see the schedules of ``flow`` (None: of some flow)?"""
    if user.has_perm("scheduling.view_flowschedule"):
        return True
    return access.has_any(user) if flow is None else access.can(user, flow, "view")


def may_edit(user: Any, flow: Flow | None, action: str) -> bool:
    """May ``user`` ``action`` (add, change, delete) schedules of ``flow`` (None or unsaved:
    of some flow): the schedule model permission, or ``change`` on the flow."""
    if user.has_perm(f"scheduling.{action}_flowschedule"):
        return True
    if flow is None or flow.pk is None:
        return access.has_any(user, "change")
    return access.can(user, flow, "change")


def may_run(user: Any, flow: Flow | None) -> bool:
    """Holds ``user`` ``run`` on ``flow`` (None: on some flow; unsaved: on every flow, as no
    grant can name it yet)?"""
    if flow is None:
        return access.has_any(user, "run")
    if flow.pk is None:
        return access.has_global(user, "run")
    return access.can(user, flow, "run")


def needs_run(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Whether going from ``before`` (None: a new schedule) to ``after`` needs ``run``."""
    if before is None:
        return True
    changed = {name for name, value in after.items() if before.get(name) != value}
    if after.get("enabled") is False:
        changed.discard("enabled")
    return bool(changed - HARMLESS_FIELDS)


def check_write(user: Any, flow: Flow, action: str, run: bool) -> None:
    """Refuse a schedule write to ``flow``: ``action`` as in ``may_edit``; ``run`` if needed
    (``needs_run``). The API, the admin form and inline, and the admin actions call it."""
    if not may_edit(user, flow, action):
        raise access.AccessDenied(
            f"You may not {action} schedules of flow '{flow.slug}'.",
            [FlowProblem("", f"needs change on flow '{flow.slug}' (change_flow)")],
        )
    if run and not may_run(user, flow):
        name = flow.slug or "new"
        raise access.AccessDenied(
            f"Creating, changing or enabling a schedule needs the run permission on flow "
            f"'{name}' (run_flow); you may only disable or delete it.",
            [FlowProblem("", f"needs the run permission on flow '{name}' (run_flow)")],
        )


def section_rights(flow: Flow | None, value: Any) -> set[str]:
    """What a flow file's ``schedules`` writes to ``flow`` need: ``run`` when any schedule is
    created or changed beyond disabling (validation reports invalid items)."""
    from scheduling.flowfile import parse_item, timing_key

    existing = {} if flow is None else {timing_key(s): s for s in flow.schedules.all()}
    for item in value if isinstance(value, list) else []:
        fields, _ = parse_item(item, "")
        if fields is None:
            continue
        schedule = existing.get(timing_key(fields))
        before = None if schedule is None else {n: getattr(schedule, n) for n in fields}
        if needs_run(before, fields):
            return {"run"}
    return set()


def claim(flow: Flow, value: Any, user: Any) -> None:
    """After a flow file that needed ``run`` set the flow's schedules: ``user`` owns them."""
    take(flow.schedules.all(), user)


def take(schedules: QuerySet[FlowSchedule], user: Any) -> int:
    """``user`` becomes the owner of ``schedules`` (their runs need ``user``'s rights)."""
    return schedules.update(owner=user, run_as_operator=False)


def orphaned_reason(schedule: FlowSchedule) -> str | None:
    """Why ``schedule`` must not start a run (None: it may): an owner that no longer exists
    is never replaced by the operator."""
    if schedule.owner_id is None and not schedule.run_as_operator:
        return (
            "the schedule's owner was deleted; a user with the run permission on the flow "
            "must enable it again (its runs would otherwise start with nobody's rights)"
        )
    return None


def disable_owned_by(user: Any) -> int:
    """Before ``user`` is deleted: disable the enabled schedules they own, recording why."""
    from scheduling.sync import set_enabled

    owned = FlowSchedule.objects.filter(owner=user, enabled=True)
    return set_enabled(owned, False, reason=f"owner {user.get_username()} was deleted")
