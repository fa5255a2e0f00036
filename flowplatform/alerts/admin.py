"""Alerts in the admin: a flow's alerts (edited as the flow file's ``alerts`` says) and every
delivery, read-only (a run's deliveries also show on its page)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from flowplatform.alerts.access import check_connections
from flowplatform.alerts.flowfile import export_item, parse_item
from flowplatform.alerts.models import AlertDelivery, FlowAlert
from flows import access
from flows.admin.access import FlowPartAdmin
from flows.validation import FlowProblem


class FlowAlertForm(forms.ModelForm):
    """Checked like the flow file's item (same messages), and the connection's use."""

    class Meta:
        model = FlowAlert
        fields = ["flow", "position", "events", "connection", "emails", "late_after_s"]

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        alert = FlowAlert(
            events=data.get("events") or [],
            connection=data.get("connection") or "",
            emails=data.get("emails") or [],
            late_after_s=data.get("late_after_s"),
        )
        _, problems = parse_item(export_item(alert), "alert")
        problems += check_connections(self.user, [export_item(alert)])
        flow = data.get("flow")
        if flow is not None and not access.can(self.user, flow, "change"):
            problems.append(FlowProblem("flow", "needs change on the flow"))
        if problems:
            raise forms.ValidationError([str(p) for p in problems])
        return data


@admin.register(FlowAlert)
class FlowAlertAdmin(FlowPartAdmin):
    list_display = ("flow", "events", "connection", "emails", "late_after_s")
    list_filter = (("flow", admin.RelatedOnlyFieldListFilter),)
    form = FlowAlertForm

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        user = request.user

        class WithUser(form):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, user=user, **kw)

        return WithUser

    def _may_change(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return access.has_any(request.user, "change")
        return access.can(request.user, obj.flow, "change")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_change(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change(request, obj)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(FlowPartAdmin):
    list_display = ("created_at", "flow", "event", "target", "status", "attempts", "sent_at")
    list_filter = ("status", "event", ("flow", admin.RelatedOnlyFieldListFilter))
    readonly_fields = (
        "flow", "run", "event", "key", "target", "status", "attempts", "error",
        "created_at", "sent_at", "payload",
    )  # fmt: skip
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
