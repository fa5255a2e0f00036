"""Grants of per-flow access, edited on the flow's page by whoever may manage grants."""

from __future__ import annotations

from django.contrib import admin

from flows.models import FlowAccess


class FlowAccessInline(admin.TabularInline):
    """Users and groups with rights on this flow; needs the model permissions on grants
    (``flows.add_flowaccess``, ``change_flowaccess``, ...): editing a flow is not enough."""

    model = FlowAccess
    fields = ("user", "group", "can_view", "can_change", "can_run")
    autocomplete_fields = ()
    extra = 0
    verbose_name = "access grant"
    verbose_name_plural = "access grants (on top of the global permissions)"
