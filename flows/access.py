"""Per-flow access: who may view, change or run a flow (decision 0014).

A user holds a right on a flow when any of these holds:

- the user is an active superuser;
- the user holds the global model permission: ``view`` from any of ``flows.view_flow``,
  ``change_flow``, ``delete_flow`` and ``run_flow``; ``change`` from ``flows.change_flow``;
  ``run`` from ``flows.run_flow``;
- a ``FlowAccess`` grant on the flow names the user or one of the user's groups with that
  right (``change`` and ``run`` imply ``view``).

Runs, node runs, versions and schedules follow their flow. A flow that names a connection
limited to groups also needs the ``use`` of it (``nodes.access``) to be saved or run.
Other apps add what a flow-file section needs (``register_section_rights``): a ``schedules``
section that creates or changes a schedule needs ``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from django.db.models import Q, QuerySet

from flows.models import Flow, FlowAccess, FlowRun
from flows.validation import FlowProblem
from nodes.access import connection_names, refused_connections

Right = Literal["view", "change", "run"]

#: Global permissions that grant each right on every flow.
GLOBAL_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "view": ("flows.view_flow", "flows.change_flow", "flows.delete_flow", "flows.run_flow"),
    "change": ("flows.change_flow",),
    "run": ("flows.run_flow",),
}

#: What a grant must say to give each right.
_GRANTS: dict[str, Q] = {
    "view": Q(can_view=True) | Q(can_change=True) | Q(can_run=True),
    "change": Q(can_change=True),
    "run": Q(can_run=True),
}


@dataclass(frozen=True)
class SectionAccess:
    """What writing one flow-file section needs, and what a write records.

    - ``rights(flow, value) -> rights`` the write of ``value`` to ``flow`` (None: a new flow)
      needs; empty when it changes nothing that needs more than ``change``;
    - ``claim(flow, value, user)`` runs after such a write (e.g. records who owns schedules);
    - ``check(user, value) -> problems`` (optional) refuses what ``user`` may not name in the
      section (e.g. a connection limited to other groups).
    """

    key: str
    rights: Callable[[Flow | None, Any], set[str]]
    claim: Callable[[Flow, Any, Any], None]
    check: Callable[[Any, Any], list[FlowProblem]] | None = None


_sections: dict[str, SectionAccess] = {}


class AccessDenied(Exception):
    """The user may not do this; ``problems`` locate the parts at fault (nodes, sections)."""

    def __init__(self, message: str, problems: Iterable[FlowProblem] = ()) -> None:
        self.problems = list(problems) or [FlowProblem("", message)]
        super().__init__(message)


def register_section_access(section: SectionAccess) -> None:
    _sections[section.key] = section


def _active(user: Any) -> bool:
    return user is not None and user.is_authenticated and user.is_active


def has_global(user: Any, right: str) -> bool:
    """Whether ``user`` holds ``right`` on every flow."""
    if not _active(user):
        return False
    return user.is_superuser or any(user.has_perm(p) for p in GLOBAL_PERMISSIONS[right])


def _grants(user: Any, right: str) -> QuerySet[FlowAccess]:
    return FlowAccess.objects.filter(Q(user=user) | Q(group__user=user)).filter(_GRANTS[right])


def flows_for(user: Any, right: str = "view", queryset: QuerySet[Any] | None = None) -> Any:
    """``queryset`` (default: every flow) narrowed to the flows ``user`` holds ``right`` on."""
    queryset = Flow.objects.all() if queryset is None else queryset
    if has_global(user, right):
        return queryset
    if not _active(user):
        return queryset.none()
    return queryset.filter(pk__in=_grants(user, right).values("flow_id"))


def related_for(user: Any, queryset: QuerySet[Any], flow_field: str = "flow") -> Any:
    """Rows (runs, schedules, ...) of ``queryset`` whose flow ``user`` may view."""
    if has_global(user, "view"):
        return queryset
    return queryset.filter(**{f"{flow_field}__in": flows_for(user, "view")})


def sees_runs(user: Any, flow: Flow | None = None) -> bool:
    """Whether ``user`` may see the runs of ``flow`` (None: of some flow): the global
    ``flows.view_flowrun``, or view on the flow. The API and the admin ask this."""
    if user.has_perm("flows.view_flowrun"):
        return True
    return has_any(user, "view") if flow is None else can(user, flow, "view")


def runs_for(user: Any, queryset: QuerySet[FlowRun] | None = None) -> QuerySet[FlowRun]:
    """The runs (of ``queryset``, default all) ``user`` may see: all with ``view_flowrun``,
    else those of flows they may view. The API's lists and the admin's changelist use it."""
    queryset = FlowRun.objects.all() if queryset is None else queryset
    if user.has_perm("flows.view_flowrun"):
        return queryset
    return related_for(user, queryset)  # type: ignore[no-any-return]


def has_any(user: Any, right: str = "view") -> bool:
    """Whether ``user`` holds ``right`` on at least one flow (global or granted)."""
    if has_global(user, right):
        return True
    if not _active(user):
        return False
    return _grants(user, right).exists()


def can(user: Any, flow: Flow, right: str) -> bool:
    """Whether ``user`` holds ``right`` on ``flow``."""
    if has_global(user, right):
        return True
    if not _active(user):
        return False
    return _grants(user, right).filter(flow=flow).exists()


def connection_problems(user: Any, nodes: Iterable[Any]) -> list[FlowProblem]:
    """A problem per node of a flow file (or version) naming a connection ``user`` may not use."""
    named = [
        (index, node, name)
        for index, node in enumerate(nodes)
        if isinstance(node, dict)
        for name in connection_names(node.get("config"))
    ]
    refused = refused_connections(user, (name for _, _, name in named))
    return [
        FlowProblem(
            f"nodes[{index}].config.connection",
            f"you may not use connection '{name}' (it is limited to some groups)",
            str(node.get("key", "")) or None,
        )
        for index, node, name in named
        if name in refused
    ]


def check_flow_write(user: Any, flow: Flow | None, data: Any) -> list[str]:
    """Refuse a flow file ``user`` may not write to ``flow`` (None: a new flow).

    The connections it names must be usable by ``user``; each section given must be allowed
    (a ``schedules`` section that creates or changes a schedule needs ``run``). Returns the
    keys of the sections the write changes (for ``written_by``).
    """
    if not isinstance(data, dict):
        return []  # validation reports it
    nodes = data.get("nodes")
    problems = connection_problems(user, nodes if isinstance(nodes, list) else [])
    changed = []
    for key, section in _sections.items():
        if data.get(key) is None:
            continue
        try:
            needed = section.rights(flow, data[key])
        except (TypeError, ValueError, KeyError):
            continue  # an invalid section: validation reports it
        if section.check is not None:
            problems.extend(section.check(user, data[key]))
        if needed:
            changed.append(key)
        for right in sorted(needed):
            if not (has_global(user, right) if flow is None else can(user, flow, right)):
                problems.append(
                    FlowProblem(key, f"needs the {right} permission on the flow ({right}_flow)")
                )
    if problems:
        raise AccessDenied("You may not save this flow.", problems)
    return changed


def written_by(user: Any, flow: Flow, data: dict[str, Any], changed: Iterable[str]) -> None:
    """After ``user`` wrote ``data`` to ``flow``: let the changed sections record it."""
    for key in changed:
        _sections[key].claim(flow, data[key], user)


def created_by(user: Any, flow: Flow) -> None:
    """Whoever creates a flow without the global change right may view and change it."""
    if not has_global(user, "change"):
        FlowAccess.objects.update_or_create(
            flow=flow, user=user, defaults={"can_view": True, "can_change": True}
        )


def apply_as(user: Any, data: Any) -> tuple[Flow, bool]:
    """``apply_flow_file(data)`` as ``user`` may: a new flow needs ``flows.add_flow``, an
    existing one ``change`` on it, and the file's connections and sections what they need.
    Raises ``AccessDenied`` (nothing written) or ``FlowValidationError``; call it inside a
    transaction."""
    from flows.flowfile import apply_flow_file

    slug = data.get("slug") if isinstance(data, dict) else None
    existing = Flow.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    if existing is None and not user.has_perm("flows.add_flow"):
        raise AccessDenied("Creating a flow needs the add_flow permission.")
    if existing is not None and not can(user, existing, "change"):
        raise AccessDenied(f"Changing flow '{slug}' needs the change permission on it.")
    changed = check_flow_write(user, existing, data)
    flow, created = apply_flow_file(data)
    if created:
        created_by(user, flow)
    written_by(user, flow, data, changed)
    return flow, created


def check_run(user: Any, flow: Flow, nodes: Iterable[Any] = ()) -> None:
    """Refuse a run of ``flow`` (with these version nodes) that ``user`` may not start."""
    if not can(user, flow, "run"):
        raise AccessDenied(
            f"{user} needs the run permission on flow '{flow.slug}' (run_flow)",
            [FlowProblem("", f"needs the run permission on flow '{flow.slug}' (run_flow)")],
        )
    problems = connection_problems(user, nodes)
    if problems:
        reasons = "; ".join(str(p) for p in problems)
        raise AccessDenied(f"{user} may not run flow '{flow.slug}': {reasons}", problems)
