"""Admin of triggers: see them and their events, enable or disable, generate webhook secrets.

Triggers are written through the flow file (API, ``importflow``, the flow's JSON in the admin),
where adding or changing one needs the run permission. Here a user who may run the flow can
generate a webhook's secret (shown once), and one who may change it can disable or delete.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html

from flows import access
from flows.admin.access import FlowPartAdmin
from scheduling.triggers.dependencies import dependency_picture
from scheduling.triggers.models import FlowTrigger, TriggerEvent, TriggerKind
from scheduling.triggers.secrets import new_secret


class TriggerEventInline(admin.TabularInline):
    model = TriggerEvent
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("created_at", "key", "run", "after_success", "after_success_at", "error")
    readonly_fields = fields
    ordering = ("-created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[TriggerEvent]:
        return super().get_queryset(request).select_related("run")


@admin.register(FlowTrigger)
class FlowTriggerAdmin(FlowPartAdmin):
    list_display = ("flow", "kind", "name", "enabled", "has_secret", "owner", "updated_at")
    list_filter = ("kind", "enabled")
    list_select_related = ("flow", "owner")
    search_fields = ("flow__slug", "name")
    actions = ("generate_secret", "disable_triggers")
    fields = ("flow", "kind", "name", "config", "params", "enabled", "owner", "hook_url")
    readonly_fields = ("flow", "kind", "name", "config", "params", "owner", "hook_url")
    inlines = (TriggerEventInline,)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.dependencies_view)
        extra = [path("dependencies/", view, name="scheduling_flowtrigger_dependencies")]
        return extra + super().get_urls()

    def dependencies_view(self, request: HttpRequest) -> HttpResponse:
        """The dependency graph of the flows the user may see."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        slugs = None
        if not access.has_global(request.user, "view"):
            slugs = set(access.flows_for(request.user, "view").values_list("slug", flat=True))
        context = {
            **self.admin_site.each_context(request),
            "title": "Flow dependencies",
            "opts": self.model._meta,
            "picture": dependency_picture(slugs),
        }
        return TemplateResponse(request, "admin/scheduling/flowtrigger/dependencies.html", context)

    @admin.display(description="secret", boolean=True)
    def has_secret(self, trigger: FlowTrigger) -> bool | None:
        return bool(trigger.encrypted_secret) if trigger.kind == TriggerKind.WEBHOOK else None

    @admin.display(description="URL")
    def hook_url(self, trigger: FlowTrigger) -> str:
        if trigger.kind != TriggerKind.WEBHOOK:
            return "—"
        return format_html("<code>POST /hooks/{}/{}</code>", trigger.flow.slug, trigger.name)

    @admin.action(description="Generate a new secret (webhooks; shown once)")
    def generate_secret(self, request: HttpRequest, queryset: QuerySet[FlowTrigger]) -> None:
        for trigger in queryset.select_related("flow"):
            if trigger.kind != TriggerKind.WEBHOOK:
                messages.error(request, f"{trigger}: not a webhook, it has no secret")
            elif not access.can(request.user, trigger.flow, "run"):
                messages.error(request, f"{trigger}: a secret starts runs; it needs run_flow")
            else:
                secret = new_secret(trigger)
                messages.warning(
                    request, f"{trigger}: new secret {secret} — copy it now, it is not shown again"
                )

    @admin.action(description="Disable the selected triggers")
    def disable_triggers(self, request: HttpRequest, queryset: QuerySet[FlowTrigger]) -> None:
        for trigger in queryset:
            if self.has_change_permission(request, trigger):
                trigger.enabled = False
                trigger.save(update_fields=["enabled", "updated_at"])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # through the flow file

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return access.has_any(request.user, "change")
        return access.can(request.user, obj.flow, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: FlowTrigger, form: Any, change: bool) -> None:
        # Only ``enabled`` is editable here; enabling again starts runs: it needs ``run``.
        if obj.enabled and not access.can(request.user, obj.flow, "run"):
            messages.error(request, "Enabling a trigger needs the run permission on its flow.")
            return
        if obj.enabled:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
