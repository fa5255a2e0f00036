"""The node catalog (read-only, from the registry) and connections (CRUD, secrets write-only)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from pydantic import ValidationError
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from flowplatform.api.errors import Conflict, NotFound, ProblemError, error_item
from flowplatform.api.filters import StrictOrderingFilter
from flowplatform.api.serializers import ErrorSerializer
from nodes.api.serializers import (
    ConnectionSerializer,
    NodePortsRequestSerializer,
    NodePortsSerializer,
    NodeTypeSerializer,
)
from nodes.models import Connection
from nodes.registry import registry
from nodes.sdk import Node


@extend_schema_view(
    list=extend_schema(
        summary="List node types",
        description="The catalog: built-in and plugin node types, sorted by type.",
    ),
    retrieve=extend_schema(
        summary="Get a node type",
        parameters=[OpenApiParameter("type", str, OpenApiParameter.PATH, description="Node type.")],
    ),
)
class NodeTypeViewSet(viewsets.GenericViewSet):
    """The node catalog, read from the registry (the single source of truth)."""

    serializer_class = NodeTypeSerializer
    permission_classes = [IsAuthenticated]
    filter_backends: list[type] = []
    lookup_field = "type"
    lookup_value_regex = "[^/]+"
    path_examples = {"type": "filter"}

    def get_queryset(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [cls.describe() for cls in registry.types().values()]

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(NodeTypeSerializer(page, many=True).data)

    def retrieve(self, request: Request, type: str) -> Response:
        return Response(NodeTypeSerializer(_node_type(type).describe()).data)

    @extend_schema(
        summary="Get the ports of a node config",
        description="The input and output ports a node of this type has with this config: for "
        "a type with `dynamic_outputs` (`branch`), the ports its config declares. An invalid "
        "config is a 400 listing its problems by path (`config.routes[0].port`).",
        request=NodePortsRequestSerializer,
        responses={200: NodePortsSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def ports(self, request: Request, type: str) -> Response:
        cls = _node_type(type)
        body = NodePortsRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            node = cls(body.validated_data["config"])
        except ValidationError as exc:
            raise ProblemError(
                [
                    error_item(loc_path(err["loc"], "config"), str(err["msg"]))
                    for err in exc.errors(include_url=False)
                ],
                "The config is invalid.",
            ) from None
        ports = {
            "inputs": [p.as_dict() for p in node.inputs],
            "outputs": [p.as_dict() for p in node.output_ports()],
        }
        return Response(NodePortsSerializer(ports).data)


def _node_type(name: str) -> type[Node]:
    cls = registry.get(name)
    if cls is None:
        raise NotFound([error_item("type", f"no node type '{name[:100]}' in the catalog")])
    return cls


def loc_path(loc: Any, prefix: str) -> str:
    """A pydantic error location as a path: ``config.routes[0].port``."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


CONFLICT = OpenApiResponse(ErrorSerializer, "A connection with this name exists.")


@extend_schema_view(
    list=extend_schema(summary="List connections"),
    retrieve=extend_schema(summary="Get a connection"),
    create=extend_schema(
        summary="Create a connection",
        description="`url` and `headers` are stored encrypted and never returned.",
        responses={201: ConnectionSerializer, 409: CONFLICT},
    ),
    update=extend_schema(
        summary="Replace a connection",
        description="`url` is required; headers not given are removed.",
    ),
    partial_update=extend_schema(
        summary="Change part of a connection",
        description="Only the fields given change; `headers`, when given, replace all headers.",
    ),
    destroy=extend_schema(summary="Delete a connection"),
)
class ConnectionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Named connections, addressed by name."""

    queryset = Connection.objects.prefetch_related("allowed_groups")
    serializer_class = ConnectionSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    path_examples = {"name": "crm"}
    filter_backends = [StrictOrderingFilter]
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["name"]

    def get_object(self) -> Connection:
        name = self.kwargs["name"]
        connection = (
            Connection.objects.filter(name=name).first()
            if len(name) <= 100 and "\x00" not in name
            else None
        )
        if connection is None:
            raise NotFound([error_item("name", f"no connection named '{name[:100]}'")])
        self.check_object_permissions(self.request, connection)
        return connection

    def perform_create(self, serializer: Any) -> None:
        name = serializer.validated_data["name"]
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:
            raise Conflict(
                [error_item("name", f"connection '{name}' already exists")],
                "A connection with this name exists.",
            ) from None
