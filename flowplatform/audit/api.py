"""``/api/v1/audit/``: the audit trail, newest first; read-only for everyone."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from flowplatform.api.filters import FilterBackend
from flowplatform.audit.context import Source
from flowplatform.audit.models import Action, AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor_name", help_text="The user's name when it acted (or the OS user)."
    )
    actor_id = serializers.IntegerField(
        allow_null=True, help_text="The platform user's id (null: none, or since deleted)."
    )

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "at",
            "actor",
            "actor_id",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "details",
            "remote_addr",
        ]
        read_only_fields = fields


class AuditFilter(filters.FilterSet):
    """``?object_type=&object_id=&user=&action=&source=&since=&until=``."""

    object_type = filters.CharFilter(max_length=100, help_text="e.g. flows.flow, nodes.connection.")
    object_id = filters.CharFilter(max_length=64, help_text="With object_type: one object.")
    user = filters.CharFilter(
        field_name="actor_name", max_length=150, help_text="The actor's user name."
    )
    action = filters.ChoiceFilter(choices=Action.choices)
    source = filters.ChoiceFilter(choices=Source.CHOICES)
    # Date-times are checked and converted to UTC by the shared FilterBackend (the default
    # filter backend), as on every other list: an instant that overflows is a 400 naming it.
    since = filters.IsoDateTimeFilter(
        field_name="at", lookup_expr="gte", help_text="Entries at or after this time."
    )
    until = filters.IsoDateTimeFilter(
        field_name="at", lookup_expr="lt", help_text="Entries before this time."
    )

    class Meta:
        model = AuditEntry
        fields = ["object_type", "object_id", "user", "action", "source", "since", "until"]


class CanViewAudit(BasePermission):
    """``audit.view_auditentry``, whatever the method: writes then answer 405, not 403."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("audit.view_auditentry"))


@extend_schema_view(
    list=extend_schema(
        summary="List audit entries",
        description="Who created, changed, deleted, ran, cancelled or re-ran what, newest "
        "first. Needs the `audit.view_auditentry` permission. Entries cannot be written.",
    ),
    retrieve=extend_schema(summary="Get an audit entry"),
)
class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditEntrySerializer
    permission_classes = [CanViewAudit]
    filter_backends = [FilterBackend]
    filterset_class = AuditFilter
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[AuditEntry]:
        return AuditEntry.objects.all()
