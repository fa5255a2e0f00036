"""Runs: list, inspect, cancel and re-run; also how the API starts a run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from flowplatform.api.errors import Conflict, NotFound, ServiceUnavailable, error_item
from flowplatform.api.filters import FilterBackend, StrictOrderingFilter
from flowplatform.api.serializers import ErrorSerializer
from flows import access, services
from flows.api import examples
from flows.api.access import FlowRights, denied, require
from flows.api.documents import problems_as_errors
from flows.api.filters import RUN_ORDERING_FIELDS, RunFilter
from flows.api.openapi import START_RESPONSES
from flows.api.serializers import RerunSerializer, RunDetailSerializer, RunSerializer
from flows.models import FlowRun, NodeRun
from flows.validation import FlowValidationError


def run_queryset() -> QuerySet[FlowRun]:
    """Runs with their flow and version in the same query (the version's graph left out)."""
    return FlowRun.objects.select_related("flow", "version").defer("version__definition")


def with_node_runs(queryset: QuerySet[FlowRun]) -> QuerySet[FlowRun]:
    return queryset.prefetch_related(
        Prefetch("node_runs", queryset=NodeRun.objects.order_by("position", "id"))
    )


def launched(request: Request, start: Callable[[], FlowRun]) -> Response:
    """Start a run with ``start()`` and answer 202 with it, or the reason it could not start."""
    try:
        run = start()
    except FlowValidationError as exc:
        raise Conflict(
            problems_as_errors(exc.problems), "The flow is invalid; fix it first."
        ) from None
    except services.RerunError as exc:
        raise Conflict(
            [error_item("from_node", str(exc))], "The run cannot be re-run from there."
        ) from None
    except access.AccessDenied as exc:
        raise denied(exc) from None
    except services.DispatchError as exc:
        raise ServiceUnavailable(
            str(exc), "The run could not be queued: broker unavailable."
        ) from None
    run = with_node_runs(run_queryset()).get(pk=run.pk)
    location = reverse("run-detail", kwargs={"pk": run.pk}, request=request)
    data = RunDetailSerializer(run).data
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


@extend_schema_view(
    list=extend_schema(
        summary="List runs",
        description="Newest first by default. Filter by flow, status, trigger and creation time.",
    ),
    retrieve=extend_schema(
        summary="Get a run with its node runs",
        description="Status, attempts, rows in/out, timings and errors of every node.",
        responses=RunDetailSerializer,
    ),
)
class RunViewSet(viewsets.ReadOnlyModelViewSet):
    """Runs of the flows the user may view."""

    serializer_class = RunSerializer
    path_examples = {"id": examples.RUN_ID}
    filter_backends = [FilterBackend, StrictOrderingFilter]
    filterset_class = RunFilter
    ordering_fields = RUN_ORDERING_FIELDS
    ordering = ["-created_at"]
    permission_classes = [FlowRights]
    action_rights = {
        "list": access.sees_runs,
        "retrieve": access.sees_runs,
        "cancel": "run",
        "rerun": "run",
    }

    def get_queryset(self) -> QuerySet[FlowRun]:
        queryset = access.runs_for(self.request.user, run_queryset())
        return queryset if self.action == "list" else with_node_runs(queryset)

    def get_serializer_class(self) -> type[RunSerializer]:
        return RunSerializer if self.action == "list" else RunDetailSerializer

    def get_object(self) -> FlowRun:
        key = self.kwargs["pk"]
        try:
            run = with_node_runs(run_queryset()).filter(pk=uuid.UUID(key)).first()
        except ValueError:
            run = None
        if run is None or not access.sees_runs(self.request.user, run.flow):
            raise NotFound([error_item("id", "no run with this id")])
        if self.action in ("cancel", "rerun"):
            require(self.request.user, run.flow, "run")
        return run

    @extend_schema(
        summary="Cancel a run",
        description="Marks a queued or running run cancelled; nodes not yet finished are "
        "cancelled too. Needs the `run_flow` permission.",
        request=None,
        responses={
            200: RunDetailSerializer,
            409: OpenApiResponse(ErrorSerializer, "The run has already finished."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        if run.is_finished or not services.cancel_run(run):
            run.refresh_from_db()
            raise Conflict(
                [error_item("status", f"the run has already finished ({run.status})")],
                "The run has already finished.",
            )
        return Response(RunDetailSerializer(self.get_object()).data)

    @extend_schema(
        summary="Re-run a run",
        description="Starts a new run with the same params and data interval, on the same "
        "version (or the flow's latest with `latest: true`). From a failed run, or with "
        "`from_node`, only that node and what depends on it run again. Needs the `run_flow` "
        "permission.",
        request=RerunSerializer,
        responses={
            **START_RESPONSES,
            409: OpenApiResponse(
                ErrorSerializer, "The flow is invalid, or the run cannot be re-run from there."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        serializer = RerunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        options: dict[str, Any] = serializer.validated_data
        return launched(request, lambda: services.rerun(run, user=request.user, **options))
