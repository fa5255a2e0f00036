"""``/api/v1/schedules/``: create, list, change and delete flow schedules.

Register with ``router.register("schedules", FlowScheduleViewSet, basename="schedule")``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets

from flowplatform.api.filters import FilterBackend, StrictOrderingFilter
from flows import access
from flows.api.access import FlowRights, denied
from flows.models import Flow
from scheduling import access as schedule_access
from scheduling.durations import format_every, parse_every
from scheduling.models import FlowSchedule, ScheduleKind
from scheduling.validation import check_schedule, iana_timezones

#: Model field -> API field, for error paths.
_API_NAMES = {"every_seconds": "every", "start_at": "start", "end_at": "end"}
_TIMING = ("cron", "every_seconds", "at")
_OWNER = {"cron": "cron", "every_seconds": "interval", "at": "one_off"}


@extend_schema_field(OpenApiTypes.STR)
class EveryField(serializers.Field):
    """An interval length: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1d"`` or a number of seconds."""

    default_error_messages = {"invalid": "{message}"}

    def to_internal_value(self, data: Any) -> int:
        try:
            return parse_every(data)
        except ValueError as exc:
            self.fail("invalid", message=str(exc))
            raise  # unreachable: fail() raises

    def to_representation(self, value: int) -> str:
        return format_every(value)


class FlowScheduleSerializer(serializers.ModelSerializer):
    """A schedule. ``kind`` may be left out when exactly one of cron, every or at is given."""

    flow = serializers.SlugRelatedField(
        slug_field="slug", queryset=Flow.objects.all(), help_text="Slug of the flow."
    )
    kind = serializers.ChoiceField(choices=ScheduleKind.choices, required=False)
    cron = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="e.g. '0 6 * * 1-5'."
    )
    timezone = serializers.ChoiceField(
        choices=[], required=False, help_text="IANA timezone of the cron expression (UTC)."
    )
    every = EveryField(
        source="every_seconds", required=False, allow_null=True, help_text="e.g. '30s', '1h'."
    )
    max_active_runs = serializers.IntegerField(min_value=1, max_value=1000, required=False)
    start = serializers.DateTimeField(source="start_at", required=False, allow_null=True)
    end = serializers.DateTimeField(source="end_at", required=False, allow_null=True)
    next_fire_at = serializers.SerializerMethodField(
        help_text="When it fires next (null: disabled or never again)."
    )

    class Meta:
        model = FlowSchedule
        fields = [
            "id",
            "flow",
            "kind",
            "cron",
            "timezone",
            "every",
            "at",
            "enabled",
            "params",
            "overlap",
            "max_active_runs",
            "catchup",
            "start",
            "end",
            "description",
            "next_fire_at",
            "last_fired_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_fired_at", "created_at", "updated_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = sorted(iana_timezones())
        request = self.context.get("request")
        if request is not None:  # a flow the user may not see does not exist for them
            self.fields["flow"].queryset = access.flows_for(request.user)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_fire_at(self, schedule: FlowSchedule) -> str | None:
        moment = schedule.next_fire_at()
        return serializers.DateTimeField().to_representation(moment) if moment else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        merged = _Merged(self.instance, attrs)
        if "kind" not in attrs and self.instance is None:
            given = [name for name in _TIMING if attrs.get(name) not in (None, "")]
            if len(given) != 1:
                raise serializers.ValidationError(
                    {"kind": "give kind, or exactly one of cron, every or at"}
                )
            attrs["kind"] = _OWNER[given[0]]
            merged.kind = attrs["kind"]
        for name, kind in _OWNER.items():
            if kind != merged.kind and name not in attrs:
                # Switching kind drops the old kind's timing instead of refusing it.
                attrs[name] = "" if name == "cron" else None
                setattr(merged, name, attrs[name])
        errors = check_schedule(merged)
        if errors:
            raise serializers.ValidationError(
                {_API_NAMES.get(name, name): message for name, message in errors.items()}
            )
        return attrs


class _Merged:
    """The schedule as it would be after the change: instance values, overridden by attrs."""

    def __init__(self, instance: FlowSchedule | None, attrs: dict[str, Any]) -> None:
        base = FlowSchedule() if instance is None else instance
        for name in (
            "kind",
            "cron",
            "timezone",
            "every_seconds",
            "at",
            "start_at",
            "end_at",
            "overlap",
            "catchup",
            "params",
        ):
            setattr(self, name, attrs.get(name, getattr(base, name)))


class ScheduleFilter(filters.FilterSet):
    """``?flow=&kind=&enabled=``."""

    flow = filters.CharFilter(
        field_name="flow__slug", max_length=100, help_text="Slug of the flow."
    )
    kind = filters.ChoiceFilter(choices=ScheduleKind.choices)
    enabled = filters.BooleanFilter()

    class Meta:
        model = FlowSchedule
        fields = ["flow", "kind", "enabled"]


@extend_schema_view(
    list=extend_schema(summary="List schedules", description="With their next fire times."),
    retrieve=extend_schema(summary="Get a schedule"),
    create=extend_schema(
        summary="Create a schedule",
        description="Give a cron expression (and timezone), an interval (`every`) or a "
        "one-off time (`at`). Its beat entry is created with it. Needs the run permission on "
        "the flow (its runs start as you).",
    ),
    update=extend_schema(
        summary="Replace a schedule",
        description="Changing what a schedule runs, or enabling it, needs the run permission "
        "on the flow; disabling it and its description need only the right to edit it.",
    ),
    partial_update=extend_schema(
        summary="Change part of a schedule",
        description="Changing what a schedule runs, or enabling it, needs the run permission "
        "on the flow; disabling it and its description need only the right to edit it.",
    ),
    destroy=extend_schema(summary="Delete a schedule", description="Runs it made are kept."),
)
class FlowScheduleViewSet(viewsets.ModelViewSet):
    """Flow schedules; each change reaches a running beat within seconds."""

    serializer_class = FlowScheduleSerializer
    lookup_value_regex = r"\d+"
    filter_backends = [FilterBackend, StrictOrderingFilter]
    filterset_class = ScheduleFilter
    ordering_fields = ["id", "created_at", "updated_at", "last_fired_at"]
    ordering = ["id"]

    permission_classes = [FlowRights]
    action_rights = {
        "list": schedule_access.may_view,
        "retrieve": schedule_access.may_view,
        "create": lambda user: schedule_access.may_edit(user, None, "add"),
        "update": lambda user: schedule_access.may_edit(user, None, "change"),
        "partial_update": lambda user: schedule_access.may_edit(user, None, "change"),
        "destroy": lambda user: schedule_access.may_edit(user, None, "delete"),
    }

    def get_queryset(self) -> QuerySet[FlowSchedule]:
        user = self.request.user
        return schedule_access.schedules_for(user, FlowSchedule.objects.select_related("flow"))

    def perform_create(self, serializer: FlowScheduleSerializer) -> None:
        flow = serializer.validated_data["flow"]
        self._check(flow, "add", run=True)
        serializer.save(owner=self.request.user)

    def perform_update(self, serializer: FlowScheduleSerializer) -> None:
        schedule: FlowSchedule = serializer.instance
        data = serializer.validated_data
        before = {name: getattr(schedule, name) for name in data if name != "flow"}
        before["flow"] = schedule.flow
        run = schedule_access.needs_run(before, dict(data))
        self._check(schedule.flow, "change", run)
        if data.get("flow", schedule.flow) != schedule.flow:
            self._check(data["flow"], "add", run=True)
        serializer.save(**({"owner": self.request.user} if run else {}))

    def perform_destroy(self, instance: FlowSchedule) -> None:
        self._check(instance.flow, "delete", run=False)
        instance.delete()

    def _check(self, flow: Flow, action: str, run: bool) -> None:
        try:
            schedule_access.check_write(self.request.user, flow, action, run)
        except access.AccessDenied as exc:
            raise denied(exc) from None
