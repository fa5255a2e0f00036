"""Admin: schedules with their next fire times, the intervals they fired, and a Flow inline.

``FlowScheduleInline`` is meant for the Flow admin (``inlines = [FlowScheduleInline]``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from flows import access
from flows.models import Flow
from scheduling import access as schedule_access
from scheduling.models import FlowSchedule, ScheduledRun, ScheduleKind
from scheduling.sync import set_enabled
from scheduling.validation import iana_timezones

SCHEDULE_FIELDS = (
    "kind",
    "cron",
    "timezone",
    "every_seconds",
    "at",
    "enabled",
    "overlap",
    "max_active_runs",
    "catchup",
)


class FlowScheduleForm(forms.ModelForm):
    """The model form, with the timezone picked from the IANA database."""

    timezone = forms.ChoiceField(
        choices=lambda: [(name, name) for name in sorted(iana_timezones())],
        initial="UTC",
        help_text="IANA timezone the cron expression is read in.",
    )

    #: Who submits the form (set per request by ``form_for``); None: no access check.
    user: Any = None

    class Meta:
        model = FlowSchedule
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()
        flow = cleaned.get("flow") or getattr(self.instance, "flow", None)
        if self.user is None or not isinstance(flow, Flow) or not self.has_changed():
            return cleaned
        changed = set(self.changed_data) - schedule_access.HARMLESS_FIELDS
        if cleaned.get("enabled") is False:
            changed.discard("enabled")
        if self.instance.pk is not None and not changed:
            return cleaned
        may_run = (
            access.can(self.user, flow, "run") if flow.pk else access.has_global(self.user, "run")
        )
        if not may_run:
            raise forms.ValidationError(
                f"Creating, changing or enabling a schedule needs the run permission on flow "
                f"'{flow.slug or 'new'}' (run_flow); you may only disable or delete it."
            )
        self.instance.owner = self.user
        return cleaned


def form_for(form: type[FlowScheduleForm], request: HttpRequest) -> type[FlowScheduleForm]:
    """``form`` checking the rights of the request's user."""
    return type(form.__name__, (form,), {"user": request.user})


def flow_rights(request: HttpRequest, flow: Flow | None, action: str) -> bool:
    """May the user ``action`` (view, add, change, delete) schedules of ``flow``
    (None: of some flow)?"""
    user = request.user
    if action == "view":
        if user.has_perm("scheduling.view_flowschedule"):
            return True
        return access.has_any(user) if flow is None else access.can(user, flow, "view")
    if flow is None or flow.pk is None:
        return bool(
            user.has_perm(f"scheduling.{action}_flowschedule") or access.has_any(user, "change")
        )
    return schedule_access.may_edit(user, flow, action)


def next_fires(schedule: FlowSchedule, count: int = 3) -> list[datetime]:
    """The next ``count`` fire times (the first is now when the schedule is overdue)."""
    if schedule.pk is None or not schedule.enabled:
        return []
    try:
        timetable = schedule.timetable()
    except (ValueError, KeyError, AssertionError):
        return []  # an invalid unsaved form; its errors are shown on the fields
    first = schedule.next_fire_at()
    times = [first] if first else []
    reference = schedule.fired_through()
    while times and len(times) < count:
        upcoming = timetable.next_after(max(times[-1], reference))
        if upcoming is None:
            break
        times.append(upcoming)
    return times


def describe(moment: datetime, schedule: FlowSchedule) -> str:
    text = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    if schedule.kind == ScheduleKind.CRON and schedule.timezone != "UTC":
        local = moment.astimezone(ZoneInfo(schedule.timezone))
        text += f" ({local:%H:%M %Z} {schedule.timezone})"
    return text


@admin.display(description="next fire")
def next_fire_column(schedule: FlowSchedule) -> str:
    times = next_fires(schedule, 1)
    return describe(times[0], schedule) if times else "—"


class FlowScheduleInline(admin.TabularInline):
    """Schedules edited on their flow's page."""

    model = FlowSchedule
    form = FlowScheduleForm
    fields = (*SCHEDULE_FIELDS, "next_fire")
    readonly_fields = ("next_fire",)
    extra = 0
    show_change_link = True

    @admin.display(description="next fire")
    def next_fire(self, schedule: FlowSchedule) -> str:
        return next_fire_column(schedule)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        kwargs["form"] = form_for(self.form, request)
        return super().get_formset(request, obj, **kwargs)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return flow_rights(request, obj, "view") or self.has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not flow_rights(request, obj, "add"):
            return False
        if obj is None or obj.pk is None:
            return access.has_global(request.user, "run")
        return access.can(request.user, obj, "run")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return flow_rights(request, obj, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return flow_rights(request, obj, "delete")


@admin.register(FlowSchedule)
class FlowScheduleAdmin(admin.ModelAdmin):
    form = FlowScheduleForm
    list_display = (
        "flow",
        "summary",
        "enabled",
        "overlap",
        next_fire_column,
        "last_fired_at",
    )
    list_filter = ("kind", "enabled", "overlap", "catchup")
    list_select_related = ("flow",)
    search_fields = ("flow__slug", "cron", "description")
    actions = ("enable_schedules", "disable_schedules")
    readonly_fields = ("upcoming", "last_fired_at", "beat_entry", "recent_intervals")
    fieldsets = (
        (None, {"fields": ("flow", "description", "enabled")}),
        ("Timing", {"fields": ("kind", "cron", "timezone", "every_seconds", "at")}),
        ("Runs", {"fields": ("params", "overlap", "max_active_runs", "catchup")}),
        ("Window", {"fields": ("start_at", "end_at"), "classes": ("collapse",)}),
        ("State", {"fields": ("upcoming", "last_fired_at", "beat_entry", "recent_intervals")}),
    )

    @admin.display(description="summary")
    def summary(self, schedule: FlowSchedule) -> str:
        return schedule.summary

    # -- per-flow access: only schedules of flows the user may see -----------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[FlowSchedule]:
        return schedule_access.schedules_for(request.user, super().get_queryset(request))

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = form_for(self.form, request)
        return super().get_form(request, obj, change, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "flow" and not request.user.has_perm("scheduling.add_flowschedule"):
            kwargs["queryset"] = access.flows_for(request.user, "change")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return flow_rights(request, None, "view")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        flow = obj.flow if obj is not None else None
        return flow_rights(request, flow, "view") or self.has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return flow_rights(request, None, "add") and access.has_any(request.user, "run")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return flow_rights(request, obj.flow if obj is not None else None, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return flow_rights(request, obj.flow if obj is not None else None, "delete")

    @admin.display(description="next fire times")
    def upcoming(self, schedule: FlowSchedule) -> str:
        times = next_fires(schedule, 5)
        if not times:
            return "—"
        return (
            format_html_join("", "<div>{}</div>", ((describe(t, schedule),) for t in times)) or "—"
        )

    @admin.display(description="beat entry")
    def beat_entry(self, schedule: FlowSchedule) -> str:
        task = schedule.periodic_task
        if task is None:
            return "—"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
        return format_html('<a href="{}">{}</a>', url, task.name)

    @admin.display(description="recent intervals")
    def recent_intervals(self, schedule: FlowSchedule) -> str:
        if schedule.pk is None:
            return "—"
        rows = list(schedule.scheduled_runs.select_related("run").order_by("-interval_start")[:10])
        if not rows:
            return "—"
        return format_html(
            "<table><tr><th>interval</th><th>trigger</th><th>state</th><th>run</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        f"{r.interval_start:%Y-%m-%d %H:%M:%S}",
                        f"{r.interval_end:%Y-%m-%d %H:%M:%S}",
                        r.trigger,
                        r.get_state_display(),
                        f"{r.run.status} ({r.run_id})" if r.run else r.error[:80] or "—",
                    )
                    for r in rows
                ),
            ),
        )

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[FlowSchedule]) -> None:
        allowed = queryset.filter(flow__in=access.flows_for(request.user, "run"))
        refused = queryset.exclude(pk__in=allowed.values("pk")).count()
        if refused:
            self.message_user(
                request,
                f"{refused} schedule(s) not enabled: enabling needs the run permission on "
                "their flow (run_flow).",
                messages.ERROR,
            )
        allowed.filter(enabled=False).update(owner=request.user)
        count = set_enabled(allowed, True)
        self.message_user(request, f"{count} schedule(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[FlowSchedule]) -> None:
        editable = [
            s.pk for s in queryset if schedule_access.may_edit(request.user, s.flow, "change")
        ]
        count = set_enabled(FlowSchedule.objects.filter(pk__in=editable), False)
        self.message_user(request, f"{count} schedule(s) disabled.", messages.SUCCESS)


@admin.register(ScheduledRun)
class ScheduledRunAdmin(admin.ModelAdmin):
    """The intervals schedules fired (read-only: they are the idempotency record)."""

    list_display = ("schedule", "interval_start", "interval_end", "trigger", "state", "run")
    list_filter = ("state", "trigger")
    list_select_related = ("schedule__flow", "run")
    date_hierarchy = "interval_start"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScheduledRun]:
        queryset = super().get_queryset(request)
        if request.user.has_perm("scheduling.view_flowschedule"):
            return queryset
        return access.related_for(request.user, queryset, "schedule__flow")  # type: ignore[no-any-return]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return flow_rights(request, None, "view")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The queryset keeps intervals of flows the user may not see out of reach.
        flow = obj.schedule.flow if obj is not None else None
        return super().has_view_permission(request, obj) or flow_rights(request, flow, "view")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


from scheduling.triggers import admin as _trigger_admin  # noqa: E402, F401 - registers it
