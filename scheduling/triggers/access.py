"""Who may add and change triggers: like schedules, anything that makes a trigger start runs
needs the ``run`` right on the flow, and whoever does it becomes the trigger's ``owner`` (its
runs are started as that user, so revoking the right stops them). Disabling or deleting a
trigger needs only the right to edit the flow."""

from __future__ import annotations

from typing import Any

from flows.models import Flow


def section_rights(flow: Flow | None, value: Any) -> set[str]:
    """``run`` when a flow file's ``triggers`` create a trigger or change one beyond disabling."""
    from scheduling.triggers.flowfile import parse_item

    existing = {} if flow is None else {(t.kind, t.name): t for t in flow.triggers.all()}
    for item in value if isinstance(value, list) else []:
        fields, _ = parse_item(item, "")
        if fields is None:
            continue
        trigger = existing.get((fields["kind"], fields["name"]))
        if trigger is None:
            return {"run"}
        changed = {n for n, v in fields.items() if getattr(trigger, n) != v}
        if fields["enabled"] is False:
            changed.discard("enabled")
        if changed:
            return {"run"}
    return set()


def claim(flow: Flow, value: Any, user: Any) -> None:
    """After a flow file that needed ``run`` set the flow's triggers: ``user`` owns them."""
    flow.triggers.update(owner=user)
