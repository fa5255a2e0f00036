"""``/api/v1/triggers/``: a flow's triggers (read-only: they are written through the flow
file), and ``POST /api/v1/triggers/{id}/secret/`` to generate a webhook's secret (shown once).

Register with ``router.register("triggers", FlowTriggerViewSet, basename="trigger")``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from flowplatform.api.errors import Conflict, error_item
from flowplatform.api.filters import FilterBackend
from flows import access
from flows.api.access import FlowRights, require
from scheduling.triggers.models import FlowTrigger, TriggerKind
from scheduling.triggers.secrets import new_secret


class FlowTriggerSerializer(serializers.ModelSerializer):
    """A trigger as the flow file has it, plus whether a webhook has a secret (never the secret)."""

    flow = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    has_secret = serializers.SerializerMethodField(help_text="Webhooks: a secret was generated.")

    class Meta:
        model = FlowTrigger
        fields = ["id", "flow", "kind", "name", "config", "params", "enabled", "has_secret"]
        read_only_fields = fields

    def get_has_secret(self, trigger: FlowTrigger) -> bool:
        return bool(trigger.encrypted_secret)


class TriggerFilter(filters.FilterSet):
    """``?flow=&kind=``."""

    flow = filters.CharFilter(field_name="flow__slug", max_length=100, help_text="Flow slug.")
    kind = filters.ChoiceFilter(choices=TriggerKind.choices)

    class Meta:
        model = FlowTrigger
        fields = ["flow", "kind"]


SECRET = inline_serializer(
    "WebhookSecret",
    {"secret": serializers.CharField(help_text="The new secret: shown this once only.")},
)


@extend_schema_view(
    list=extend_schema(summary="List triggers", description="Written through the flow file."),
    retrieve=extend_schema(summary="Get a trigger"),
)
class FlowTriggerViewSet(viewsets.ReadOnlyModelViewSet):
    """Webhook, after-flow and file triggers of the flows you may see."""

    serializer_class = FlowTriggerSerializer
    lookup_value_regex = r"\d+"
    filter_backends = [FilterBackend]
    filterset_class = TriggerFilter
    permission_classes = [FlowRights]
    action_rights = {"list": "view", "retrieve": "view", "secret": "run"}

    def get_queryset(self) -> QuerySet[FlowTrigger]:
        queryset = FlowTrigger.objects.select_related("flow").order_by("flow__slug", "position")
        return access.related_for(self.request.user, queryset)  # type: ignore[no-any-return]

    @extend_schema(
        summary="Generate a webhook's secret",
        description="A new secret replaces the old one at once. It is returned this once and "
        "stored encrypted. Needs the run permission on the flow.",
        request=None,
        responses={201: SECRET},
    )
    @action(detail=True, methods=["post"])
    def secret(self, request: Request, pk: Any = None) -> Response:
        trigger = self.get_object()
        require(request.user, trigger.flow, "run")
        if trigger.kind != TriggerKind.WEBHOOK:
            raise Conflict(
                [error_item("kind", f"a {trigger.kind} trigger has no secret")],
                "Only webhooks have secrets.",
            )
        return Response({"secret": new_secret(trigger)}, status=status.HTTP_201_CREATED)
