"""Per-flow access in the API: the gate, object checks (404 unseen, 403 seen), grants endpoint.

Flow-scoped views name the right each action needs in ``action_rights``; the gate lets a
request through when the user holds that right on at least one flow, and the view checks the
flow itself: a flow the user may not view answers 404 (as if it did not exist), a flow the
user may view but not change or run answers 403.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.db import transaction
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from flowplatform.api.errors import ErrorItem, NotFound, ProblemError, error_item, flatten
from flowplatform.api.permissions import ModelPermissions
from flowplatform.api.serializers import ErrorSerializer, StrictSerializer
from flowplatform.audit.models import Action
from flowplatform.audit.record import record
from flowplatform.audit.tracking import untracked
from flows import access
from flows.api.openapi import SLUG_PARAMETER
from flows.models import Flow, FlowAccess

#: Model permissions that let a user read or replace the grants of every flow.
GRANT_PERMISSIONS = {"view": "flows.view_flowaccess", "change": "flows.change_flowaccess"}


class Forbidden(ProblemError):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "You do not have permission to perform this action."
    default_code = "permission_denied"


class FlowRights(ModelPermissions):
    """Model permissions, except for actions listed in the view's ``action_rights``: those
    need the right on at least one flow (the view then checks the flow itself)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        rights: dict[str, Any] = getattr(view, "action_rights", {})
        right = rights.get(getattr(view, "action", None) or "")
        if right is None:
            return super().has_permission(request, view)
        if callable(right):
            return bool(right(request.user))
        return access.has_any(request.user, right)


def require(user: Any, flow: Flow, right: str) -> Flow:
    """``flow`` when ``user`` holds ``right`` on it; 404 when it may not see it, else 403."""
    if not access.can(user, flow, "view"):
        raise NotFound([error_item("slug", f"no flow with slug '{flow.slug}'")])
    if right != "view" and not access.can(user, flow, right):
        raise Forbidden(
            [error_item("", f"needs the {right} permission on flow '{flow.slug}' ({right}_flow)")],
            f"You may not {right} this flow.",
        )
    return flow


def denied(exc: access.AccessDenied) -> Forbidden:
    return Forbidden([p.as_dict() for p in exc.problems], str(exc))


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A team and a person",
            value=[
                {"user": None, "group": "sales-ops", "view": True, "change": True, "run": True},
                {"user": "alice", "group": None, "view": True, "change": False, "run": False},
            ],
        )
    ],
    many=False,
)
class GrantSerializer(StrictSerializer):
    """One grant: exactly one of ``user`` (username) or ``group`` (name), and its rights."""

    user = serializers.CharField(required=False, allow_null=True, max_length=150)
    group = serializers.CharField(required=False, allow_null=True, max_length=150)
    view = serializers.BooleanField(default=True, help_text="See the flow and its runs.")
    change = serializers.BooleanField(default=False, help_text="Edit the flow (implies view).")
    run = serializers.BooleanField(
        default=False,
        help_text="Start, cancel and re-run runs; create and enable schedules (implies view).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user, group = attrs.get("user"), attrs.get("group")
        if (user is None) == (group is None):
            raise serializers.ValidationError({"user": "give exactly one of user or group"})
        if user is not None:
            attrs["user"] = User.objects.filter(username=user).first()
            if attrs["user"] is None:
                raise serializers.ValidationError({"user": f"no user '{user}'"})
        if group is not None:
            attrs["group"] = Group.objects.filter(name=group).first()
            if attrs["group"] is None:
                raise serializers.ValidationError({"group": f"no group '{group}'"})
        return attrs


def grant_data(grant: FlowAccess) -> dict[str, Any]:
    return {
        "user": grant.user.username if grant.user else None,
        "group": grant.group.name if grant.group else None,
        "view": grant.can_view or grant.can_change or grant.can_run,
        "change": grant.can_change,
        "run": grant.can_run,
    }


def _grants(body: Any) -> list[dict[str, Any]]:
    """The grants of a PUT body, or a 400 listing each problem at ``[index].field``."""
    if not isinstance(body, list):
        raise ProblemError([error_item("", "the request body must be a JSON list of grants")])
    items: list[dict[str, Any]] = []
    errors: list[ErrorItem] = []
    seen: dict[tuple[str, int], int] = {}
    for index, data in enumerate(body):
        serializer = GrantSerializer(data=data)
        if not serializer.is_valid():
            errors += flatten(serializer.errors, f"[{index}]")
            continue
        item = serializer.validated_data
        who = ("user", item["user"].pk) if item.get("user") else ("group", item["group"].pk)
        if who in seen:
            errors.append(error_item(f"[{index}].{who[0]}", f"also granted in [{seen[who]}]"))
        seen.setdefault(who, index)
        items.append(item)
    if errors:
        raise ProblemError(errors, "Invalid input.")
    return items


def _may_manage(user: Any, what: str) -> bool:
    return bool(user.is_superuser or user.has_perm(GRANT_PERMISSIONS[what]))


def grants_gate(user: Any) -> bool:
    return _may_manage(user, "view") or _may_manage(user, "change") or access.has_any(user)


class FlowAccessActions:
    """``/flows/{slug}/access/``: read (GET) or replace (PUT) the flow's grants."""

    request: Request

    @extend_schema(
        summary="List a flow's access grants",
        description="Rights on this flow granted to users and groups, on top of the global "
        "permissions. Needs `flows.view_flowaccess`.",
        parameters=[SLUG_PARAMETER],
        responses={200: GrantSerializer(many=True), 403: ErrorSerializer, 404: ErrorSerializer},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def access(self, request: Request, slug: str) -> Response:
        flow = self._grant_flow(request, slug, "view")
        grants = flow.access_grants.select_related("user", "group").order_by("id")
        return Response([grant_data(g) for g in grants])

    @extend_schema(
        summary="Replace a flow's access grants",
        description="The body is the whole list of grants (each with exactly one of `user` or "
        "`group`); grants not in it are removed. Needs `flows.change_flowaccess`.",
        request=GrantSerializer(many=True),
        parameters=[SLUG_PARAMETER],
        responses={
            200: GrantSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, "A grant names nobody, or twice the same."),
            403: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    @access.mapping.put
    def replace_access(self, request: Request, slug: str) -> Response:
        flow = self._grant_flow(request, slug, "change")
        items = _grants(request.data)
        with transaction.atomic(), untracked(FlowAccess):
            flow.access_grants.all().delete()
            FlowAccess.objects.bulk_create(
                FlowAccess(
                    flow=flow,
                    user=item.get("user"),
                    group=item.get("group"),
                    can_view=item["view"],
                    can_change=item["change"],
                    can_run=item["run"],
                )
                for item in items
            )
            grants = list(flow.access_grants.select_related("user", "group").order_by("id"))
            # One entry for the whole replacement, with the list as it is now.
            record(
                Action.CHANGE,
                type_="flows.flowaccess",
                object_id=flow.pk,
                object_repr=f"access grants of {flow.slug}",
                details={"grants": [grant_data(g) for g in grants]},
            )
        return Response([grant_data(g) for g in grants])

    def _grant_flow(self, request: Request, slug: str, what: str) -> Flow:
        flow = Flow.objects.filter(slug=slug).first() if len(slug) <= 100 else None
        if flow is None:
            raise NotFound([error_item("slug", f"no flow with slug '{slug[:100]}'")])
        if _may_manage(request.user, what):
            return flow
        require(request.user, flow, "view")
        raise Forbidden(
            [error_item("", f"needs the {GRANT_PERMISSIONS[what]} permission")],
            "You may not manage the access grants of flows.",
        )
