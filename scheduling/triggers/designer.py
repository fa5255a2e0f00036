"""What the canvas' trigger editor needs besides the flow file's ``triggers`` (registered as
the section's ``canvas_data``): the saved webhooks (to generate a secret through the API, shown
once, never part of the page), whether the user may generate one, and the flows an ``after``
trigger may name. Never a secret."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from flows import access
from flows.models import Flow
from scheduling.triggers.models import FlowTrigger, TriggerKind

#: Most flow slugs offered to an ``after`` trigger (any slug may still be typed).
MAX_FLOWS = 500


def canvas_data(flow: Flow | None, user: Any) -> dict[str, Any]:
    webhooks = (
        {}
        if flow is None
        else {
            t.name: {"id": t.pk, "has_secret": bool(t.encrypted_secret)}
            for t in FlowTrigger.objects.filter(flow=flow, kind=TriggerKind.WEBHOOK)
        }
    )
    slugs = access.flows_for(user, "view").order_by("slug").values_list("slug", flat=True)
    return {
        "webhooks": webhooks,
        "canRun": flow is not None and access.can(user, flow, "run"),
        "secretUrl": reverse("trigger-secret", args=[0]),
        "hookUrl": reverse("webhook", args=["FLOW", "NAME"]),
        "flows": list(slugs[:MAX_FLOWS]),
    }
