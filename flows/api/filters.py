"""Query filters of the runs lists."""

from __future__ import annotations

from django_filters import rest_framework as filters

from flows.models import FlowRun, RunStatus, Trigger


class RunFilter(filters.FilterSet):
    """``?flow=&status=&trigger=&created_after=&created_before=`` (status/trigger repeatable)."""

    flow = filters.CharFilter(
        field_name="flow__slug", max_length=100, help_text="Slug of the flow."
    )
    status = filters.MultipleChoiceFilter(
        choices=RunStatus.choices, help_text="Repeat to match any of several statuses."
    )
    trigger = filters.MultipleChoiceFilter(
        choices=Trigger.choices, help_text="Repeat to match any of several triggers."
    )
    created_after = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )

    class Meta:
        model = FlowRun
        fields = ["flow", "status", "trigger", "created_after", "created_before"]


RUN_ORDERING_FIELDS = ["created_at", "started_at", "finished_at", "status"]
