"""Per-flow access in the admin: the grants, edited on the flow's page by whoever may manage
grants, and the rule for the rows that belong to a flow (alerts, triggers, deliveries)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from flows import access
from flows.models import FlowAccess


class FlowPartAdmin(admin.ModelAdmin):
    """The admin of rows that belong to a flow (their ``flow`` field): listed and viewed by
    whoever may view their flow."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return access.related_for(request.user, super().get_queryset(request))  # type: ignore[no-any-return]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.has_any(request.user, "view")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return access.has_any(request.user, "view")
        return access.can(request.user, obj.flow, "view")


class FlowAccessInline(admin.TabularInline):
    """Users and groups with rights on this flow; needs the model permissions on grants
    (``flows.add_flowaccess``, ``change_flowaccess``, ...): editing a flow is not enough."""

    model = FlowAccess
    fields = ("user", "group", "can_view", "can_change", "can_run")
    autocomplete_fields = ()
    extra = 0
    verbose_name = "access grant"
    verbose_name_plural = "access grants (on top of the global permissions)"
