"""Flows: CRUD in flow-file shape with optimistic concurrency, validation, versions, runs."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from flowplatform.api.errors import Conflict, NotFound, ProblemError, error_item
from flowplatform.api.filters import FilterBackend, StrictOrderingFilter
from flowplatform.api.serializers import ErrorSerializer
from flows import access, preview, services
from flows.api import examples
from flows.api.access import (
    FlowAccessActions,
    FlowRights,
    Forbidden,
    denied,
    grants_gate,
    require,
)
from flows.api.documents import (
    check_preconditions,
    etag,
    flow_document,
    flow_file,
    flow_file_problems,
    invalid_flow,
    problems_as_errors,
    require_object,
)
from flows.api.filters import RUN_ORDERING_FIELDS, RunFilter
from flows.api.openapi import (
    IF_MATCH,
    INVALID,
    PREVIEW_DESCRIPTION,
    PREVIEW_RESPONSES,
    SLUG_PARAMETER,
    SLUG_PATTERN,
    STALE,
    START_RESPONSES,
)
from flows.api.runs import launched, run_queryset
from flows.api.serializers import (
    FlowSerializer,
    FlowSummarySerializer,
    FlowVersionSerializer,
    PreviewResultSerializer,
    PreviewSerializer,
    RunSerializer,
    StartRunSerializer,
    UnsavedPreviewSerializer,
    ValidationResultSerializer,
)
from flows.flowfile import apply_flow_file, export_flow
from flows.models import ACTIVE_RUN_STATUSES, Flow, FlowVersion, Trigger
from flows.validation import FlowValidationError

SLUG = re.compile(SLUG_PATTERN)


@extend_schema_view(
    list=extend_schema(
        summary="List flows",
        description="Flows without their graphs; `GET /flows/{slug}/` has the whole flow.",
        responses=FlowSummarySerializer(many=True),
    ),
    create=extend_schema(
        summary="Create a flow",
        description="The body is a flow file. It is checked completely first (the same checks "
        "and messages as `importflow`); a flow with any problem is not saved.",
        responses={
            201: FlowSerializer,
            400: INVALID,
            409: OpenApiResponse(ErrorSerializer, "A flow with this slug exists."),
        },
    ),
    retrieve=extend_schema(summary="Get a flow", description="The flow file, with an `ETag`."),
    update=extend_schema(
        summary="Replace a flow",
        description="Replaces the flow and its graph atomically; a changed graph makes a new "
        "version. Send `version` or `If-Match` to refuse the write if the flow has changed.",
        parameters=[IF_MATCH],
        responses={200: FlowSerializer, 400: INVALID, **STALE},
    ),
    partial_update=extend_schema(
        summary="Change part of a flow",
        description="Top-level fields given replace the stored ones (`nodes` and `edges` as a "
        "whole); the result is checked and saved like a replacement.",
        parameters=[IF_MATCH],
        responses={200: FlowSerializer, 400: INVALID, **STALE},
    ),
    destroy=extend_schema(
        summary="Delete a flow",
        description="Deletes the flow, its versions and its runs. Refused (409) while a run is "
        "queued or running.",
        parameters=[IF_MATCH],
        responses={
            204: None,
            409: OpenApiResponse(ErrorSerializer, "The flow has active runs."),
            412: STALE[412],
        },
    ),
)
class FlowViewSet(FlowAccessActions, viewsets.GenericViewSet):
    """Flows, addressed by slug; each user sees and acts on the flows their rights reach."""

    serializer_class = FlowSerializer
    lookup_field = "slug"
    lookup_value_regex = "[^/]+"
    path_examples = {"slug": examples.MINIMAL_FLOW["slug"], "number": 1}
    filter_backends = [StrictOrderingFilter]
    filterset_class = None  # the runs action sets RunFilter
    ordering_fields = ["slug", "name", "created_at", "updated_at"]
    ordering = ["slug"]
    permission_classes = [FlowRights]
    #: The right on the flow each action needs (create and destroy: model permissions).
    action_rights = {
        "list": "view",
        "retrieve": "view",
        "update": "change",
        "partial_update": "change",
        "validate": "view",
        "versions": "view",
        "version_detail": "view",
        "runs": "view",
        "start_run": "run",
        "preview": "run",
        "preview_unsaved": lambda user: access.has_any(user, "run"),
        "validate_unsaved": lambda user: (
            access.has_any(user, "view") or user.has_perm("flows.add_flow")
        ),
        "access": grants_gate,
        "replace_access": grants_gate,
    }

    def get_queryset(self) -> QuerySet[Any]:
        if self.action == "runs":  # filtered with RunFilter, which needs runs
            return run_queryset()
        latest = FlowVersion.objects.filter(flow=OuterRef("pk")).order_by("-number")
        return access.flows_for(self.request.user).annotate(
            current_version=Subquery(latest.values("number")[:1], output_field=IntegerField()),
            node_count=Count("nodes", distinct=True),
        )

    def get_object(self, lock: bool = False) -> Flow:
        slug = self.kwargs["slug"]
        queryset = Flow.objects.select_for_update() if lock else Flow.objects.all()
        flow = queryset.filter(slug=slug).first() if SLUG.match(slug) else None
        if flow is None:
            raise NotFound([error_item("slug", f"no flow with slug '{slug[:100]}'")])
        right = self.action_rights.get(self.action or "")
        return require(self.request.user, flow, right if isinstance(right, str) else "view")

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(FlowSummarySerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        data = flow_file(require_object(request.data))
        try:
            with transaction.atomic():
                changed = access.check_flow_write(request.user, None, data)
                flow, created = apply_flow_file(data)
                if not created:  # rolls the update back
                    raise Conflict(
                        [error_item("slug", f"flow '{flow.slug}' already exists")],
                        "A flow with this slug exists; update it with PUT or PATCH.",
                    )
                access.created_by(request.user, flow)
                access.written_by(request.user, flow, data, changed)
        except FlowValidationError as exc:
            raise invalid_flow(exc) from None
        except access.AccessDenied as exc:
            raise denied(exc) from None
        location = reverse("flow-detail", kwargs={"slug": flow.slug}, request=request)
        return self._document(flow, status.HTTP_201_CREATED, Location=location)

    def retrieve(self, request: Request, slug: str) -> Response:
        return self._document(self.get_object())

    def update(self, request: Request, slug: str) -> Response:
        return self._write(request, partial=False)

    def partial_update(self, request: Request, slug: str) -> Response:
        return self._write(request, partial=True)

    def destroy(self, request: Request, slug: str) -> Response:
        with transaction.atomic():
            flow = self.get_object(lock=True)
            check_preconditions(request, {}, flow_document(flow))
            if flow.runs.filter(status__in=ACTIVE_RUN_STATUSES).exists():
                raise Conflict(
                    [error_item("", "the flow has queued or running runs; cancel them first")],
                    "The flow has active runs.",
                )
            # Runs first: they protect the versions that the flow's deletion cascades to.
            flow.runs.all().delete()
            flow.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _write(self, request: Request, partial: bool) -> Response:
        body = require_object(request.data)
        try:
            with transaction.atomic():
                flow = self.get_object(lock=True)
                current = flow_document(flow)
                check_preconditions(request, body, current)
                data = flow_file({**current, **body} if partial else body, flow.slug)
                changed = access.check_flow_write(request.user, flow, data)
                flow, _ = apply_flow_file(data)
                access.written_by(request.user, flow, data, changed)
        except FlowValidationError as exc:
            raise invalid_flow(exc) from None
        except access.AccessDenied as exc:
            raise denied(exc) from None
        return self._document(flow)

    def _document(self, flow: Flow, code: int = status.HTTP_200_OK, **headers: str) -> Response:
        flow.refresh_from_db()
        document = flow_document(flow)
        data = FlowSerializer(document).data
        return Response(data, status=code, headers={"ETag": etag(document), **headers})

    @extend_schema(
        summary="Validate a flow",
        description="Checks a flow file sent in the body, or the stored flow when the body is "
        "empty (or `{}`), without saving anything. The problems are those `importflow` reports.",
        request=FlowSerializer,
        responses={200: ValidationResultSerializer},
        examples=[
            OpenApiExample("A flow file", value=examples.MINIMAL_FLOW, request_only=True),
            OpenApiExample("The stored flow", value={}, request_only=True),
            OpenApiExample("Valid", value={"valid": True, "errors": []}, response_only=True),
            OpenApiExample(
                "A cycle",
                value={
                    "valid": False,
                    "errors": [
                        {
                            "path": "edges",
                            "node": None,
                            "message": "the graph has a cycle: paid -> shape -> paid",
                        }
                    ],
                },
                response_only=True,
            ),
        ],
    )
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, slug: str) -> Response:
        flow = self.get_object()
        body = request.data
        if body in ({}, None):
            data = flow_document(flow)
            problems = flow_file_problems(flow_file(data, flow.slug))
        elif isinstance(body, dict):
            problems = flow_file_problems(flow_file(body, flow.slug))
        else:
            problems = flow_file_problems(body)
        result = {"valid": not problems, "errors": problems_as_errors(problems)}
        return Response(ValidationResultSerializer(result).data)

    @extend_schema(
        summary="List a flow's versions",
        description="Immutable snapshots of the graph, newest first. Each run executes one.",
        responses=FlowVersionSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request: Request, slug: str) -> Response:
        flow = self.get_object()
        page = self.paginate_queryset(flow.versions.order_by("-number"))
        return self.get_paginated_response(FlowVersionSerializer(page, many=True).data)

    @extend_schema(
        summary="Get one version of a flow",
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH)],
        responses=FlowVersionSerializer,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"versions/(?P<number>[0-9]{1,9})",
        filter_backends=[],
        pagination_class=None,
    )
    def version_detail(self, request: Request, slug: str, number: str) -> Response:
        flow = self.get_object()
        version = flow.versions.filter(number=int(number)).first()
        if version is None:
            raise NotFound([error_item("number", f"flow '{flow.slug}' has no version {number}")])
        return Response(FlowVersionSerializer(version).data)

    @extend_schema(
        summary="List a flow's runs",
        description="The same filters and ordering as `/runs/`.",
        parameters=[SLUG_PARAMETER],
        responses=RunSerializer(many=True),
    )
    @action(
        detail=True,
        methods=["get"],
        filter_backends=[FilterBackend, StrictOrderingFilter],
        filterset_class=RunFilter,
        ordering_fields=RUN_ORDERING_FIELDS,
        ordering=["-created_at"],
    )
    def runs(self, request: Request, slug: str) -> Response:
        flow = self.get_object()
        queryset = self.filter_queryset(self.get_queryset().filter(flow=flow))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(RunSerializer(page, many=True).data)

    @extend_schema(
        summary="Start a run",
        description="Snapshots the flow's current graph as a version (if it changed), records a "
        "queued run and hands it to the workers. Answers 202 with the run; follow it at "
        "`/runs/{id}/`. Needs the `run_flow` permission.",
        request=StartRunSerializer,
        parameters=[SLUG_PARAMETER],
        responses=START_RESPONSES,
    )
    @runs.mapping.post
    def start_run(self, request: Request, slug: str) -> Response:
        flow = self.get_object()
        serializer = StartRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        options: dict[str, Any] = serializer.validated_data
        return launched(
            request,
            lambda: services.start_run(flow, trigger=Trigger.API, user=request.user, **options),
        )

    @extend_schema(
        summary="Validate an unsaved flow",
        operation_id="flows_validate_unsaved",
        description="Checks the flow file in the body without saving anything: the problems "
        "`importflow` and `POST /flows/` report. Needs the view right on some flow or "
        "`add_flow`.",
        request=FlowSerializer,
        responses={200: ValidationResultSerializer},
        examples=[
            OpenApiExample("A flow file", value=examples.MINIMAL_FLOW, request_only=True),
            OpenApiExample("Valid", value={"valid": True, "errors": []}, response_only=True),
        ],
    )
    @action(detail=False, methods=["post"], url_path="validate")
    def validate_unsaved(self, request: Request) -> Response:
        body = request.data
        problems = flow_file_problems(flow_file(body) if isinstance(body, dict) else body)
        result = {"valid": not problems, "errors": problems_as_errors(problems)}
        return Response(ValidationResultSerializer(result).data)

    @extend_schema(
        summary="Preview a node's data",
        description=PREVIEW_DESCRIPTION + " Needs the run right on the flow and the use of "
        "the connections the previewed nodes name.",
        request=PreviewSerializer,
        parameters=[SLUG_PARAMETER],
        responses=PREVIEW_RESPONSES,
        examples=[
            OpenApiExample("A node", value=examples.PREVIEW_REQUEST, request_only=True),
            OpenApiExample("Records", value=examples.PREVIEW_RESPONSE, response_only=True),
        ],
    )
    @action(detail=True, methods=["post"], url_path="preview")
    def preview(self, request: Request, slug: str) -> Response:
        flow = self.get_object()
        options = PreviewSerializer(data=require_object(request.data))
        options.is_valid(raise_exception=True)
        return self._preview(request, export_flow(flow), options.validated_data)

    @extend_schema(
        summary="Preview a node's data in an unsaved flow",
        operation_id="flows_preview_unsaved",
        description=PREVIEW_DESCRIPTION + " The flow file is in `flow`. When its slug names a "
        "stored flow, the preview needs the change and run rights on that flow; otherwise the "
        "global `add_flow` and `run_flow` permissions (a preview never does more than saving "
        "and running could). And the use of the connections the previewed nodes name.",
        request=UnsavedPreviewSerializer,
        responses=PREVIEW_RESPONSES,
        examples=[
            OpenApiExample(
                "A node of a flow file",
                value={**examples.PREVIEW_REQUEST, "flow": examples.MINIMAL_FLOW},
                request_only=True,
            ),
            OpenApiExample("Records", value=examples.PREVIEW_RESPONSE, response_only=True),
        ],
    )
    @action(detail=False, methods=["post"], url_path="preview")
    def preview_unsaved(self, request: Request) -> Response:
        options = UnsavedPreviewSerializer(data=require_object(request.data))
        options.is_valid(raise_exception=True)
        document = flow_file(options.validated_data["flow"])
        slug = document.get("slug")
        stored = Flow.objects.filter(slug=slug).first() if isinstance(slug, str) else None
        if stored is not None:
            require(request.user, stored, "change")
            require(request.user, stored, "run")
        elif not (
            access.has_global(request.user, "run") and request.user.has_perm("flows.add_flow")
        ):
            raise Forbidden(
                [
                    error_item(
                        "", "previewing a new flow needs the add_flow and run_flow permissions"
                    )
                ],
                "You may not preview this flow.",
            )
        return self._preview(request, document, options.validated_data)

    def _preview(self, request: Request, document: Any, options: dict[str, Any]) -> Response:
        try:
            plan = preview.plan(document, options["node"])
        except preview.PreviewInvalid as exc:
            raise ProblemError(
                problems_as_errors(exc.problems), "The flow is invalid where it leads to this node."
            ) from None
        refused = access.connection_problems(request.user, plan.specs.values())
        if refused:
            raise denied(access.AccessDenied("You may not use these connections.", refused))
        result = preview.run(plan, limit=options["limit"], params=options["params"])
        return Response(PreviewResultSerializer(result).data)
