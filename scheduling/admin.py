"""Admin: schedules with their next fire times, the intervals they fired, and a Flow inline.

``FlowScheduleInline`` appears on the flow page: ``SchedulingConfig.ready`` registers it with
``flows.admin_extensions``.
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
        """The rule of ``scheduling.access``: a change that needs run makes the user owner."""
        cleaned: dict[str, Any] = super().clean()
        flow = cleaned.get("flow") or getattr(self.instance, "flow", None)
        if self.user is None or not isinstance(flow, Flow) or not self.has_changed():
            return cleaned
        if cleaned.get("DELETE"):
            return cleaned  # deleting (an inline row) needs only the delete right
        fields = {f.name for f in FlowSchedule._meta.concrete_fields}
        changed = [name for name in self.changed_data if name in cleaned and name in fields]
        after = {name: cleaned[name] for name in changed}
        before = None
        if self.instance.pk is not None:
            before = {name: getattr(self.instance, name) for name in changed}
        run = schedule_access.needs_run(before, after)
        action = "add" if self.instance.pk is None else "change"
        try:
            schedule_access.check_write(self.user, flow, action, run)
        except access.AccessDenied as exc:
            raise forms.ValidationError(str(exc)) from None
        if run:
            self.instance.owner = self.user
        return cleaned


def form_for(form: type[FlowScheduleForm], request: HttpRequest) -> type[FlowScheduleForm]:
    """``form`` checking the rights of the request's user."""
    return type(form.__name__, (form,), {"user": request.user})


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
        return schedule_access.may_view(request.user, obj) or self.has_change_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        flow = obj if obj is not None else Flow()  # the flow page of a flow not saved yet
        return schedule_access.may_edit(request.user, flow, "add") and schedule_access.may_run(
            request.user, flow
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return schedule_access.may_edit(request.user, obj, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return schedule_access.may_edit(request.user, obj, "delete")


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
    readonly_fields = (
        "upcoming",
        "last_fired_at",
        "owner",
        "run_as_operator",
        "beat_entry",
        "recent_intervals",
    )
    fieldsets = (
        (None, {"fields": ("flow", "description", "enabled")}),
        ("Timing", {"fields": ("kind", "cron", "timezone", "every_seconds", "at")}),
        ("Runs", {"fields": ("params", "overlap", "max_active_runs", "catchup")}),
        ("Window", {"fields": ("start_at", "end_at"), "classes": ("collapse",)}),
        (
            "State",
            {
                "fields": (
                    "upcoming",
                    "last_fired_at",
                    "owner",
                    "run_as_operator",
                    "beat_entry",
                    "recent_intervals",
                )
            },
        ),
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
        return schedule_access.may_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        flow = obj.flow if obj is not None else None
        return schedule_access.may_view(request.user, flow) or self.has_change_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return schedule_access.may_edit(request.user, None, "add") and schedule_access.may_run(
            request.user, None
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        flow = obj.flow if obj is not None else None
        return schedule_access.may_edit(request.user, flow, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        flow = obj.flow if obj is not None else None
        return schedule_access.may_edit(request.user, flow, "delete")

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
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[FlowSchedule]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[FlowSchedule], enabled: bool
    ) -> None:
        """Each selected schedule passes ``scheduling.access.check_write`` as the API's change
        would (enabling a disabled one needs run, and makes the user its owner)."""
        allowed, taken, refused = [], [], []
        for schedule in queryset.select_related("flow"):
            run = schedule_access.needs_run({"enabled": schedule.enabled}, {"enabled": enabled})
            try:
                schedule_access.check_write(request.user, schedule.flow, "change", run)
            except access.AccessDenied as exc:
                refused.append(f"{schedule}: {exc}")
                continue
            allowed.append(schedule.pk)
            if run:
                taken.append(schedule.pk)
        if refused:
            self.message_user(
                request,
                f"{len(refused)} schedule(s) not {'enabled' if enabled else 'disabled'}: "
                + "; ".join(refused[:5]),
                messages.ERROR,
            )
        schedule_access.take(FlowSchedule.objects.filter(pk__in=taken), request.user)
        count = set_enabled(FlowSchedule.objects.filter(pk__in=allowed), enabled)
        verb = "enabled" if enabled else "disabled"
        self.message_user(request, f"{count} schedule(s) {verb}.", messages.SUCCESS)


@admin.register(ScheduledRun)
class ScheduledRunAdmin(admin.ModelAdmin):
    """The intervals schedules fired (read-only: they are the idempotency record)."""

    list_display = ("schedule", "interval_start", "interval_end", "trigger", "state", "run")
    list_filter = ("state", "trigger")
    list_select_related = ("schedule__flow", "run")
    date_hierarchy = "interval_start"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScheduledRun]:
        return schedule_access.intervals_for(request.user, super().get_queryset(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return schedule_access.may_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The queryset keeps intervals of flows the user may not see out of reach.
        flow = obj.schedule.flow if obj is not None else None
        return super().has_view_permission(request, obj) or schedule_access.may_view(
            request.user, flow
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _hide_beat_admin() -> None:
    """django-celery-beat's own models (clocked, crontabs, intervals, periodic tasks, solar
    events) are the schedules' machinery: kept out of the admin's index and sidebar, where
    "Flow schedules" is what users edit; their pages stay reachable (a schedule's "beat entry")."""
    for model, model_admin in list(admin.site._registry.items()):
        if model._meta.app_label != "django_celery_beat":
            continue
        base = type(model_admin)
        hidden = type(
            f"Hidden{base.__name__}",
            (base,),
            {"has_module_permission": lambda self, request: False},
        )
        admin.site.unregister(model)
        admin.site.register(model, hidden)


_hide_beat_admin()

from scheduling.triggers import admin as _trigger_admin  # noqa: E402, F401 - registers it
