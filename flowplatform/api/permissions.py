"""Django model permissions for the API, reading included, with per-action overrides."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request

_VIEW = ["%(app_label)s.view_%(model_name)s"]


class ModelPermissions(DjangoModelPermissions):
    """``view``/``add``/``change``/``delete`` on the view's model, by HTTP method.

    A view may set ``action_permissions = {"action": ["app.codename", ...]}`` for actions
    whose permission is not the method's default (validating a flow needs only ``view_flow``,
    starting a run needs ``run_flow``).
    """

    perms_map = {
        "GET": _VIEW,
        "OPTIONS": _VIEW,
        "HEAD": _VIEW,
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        overrides: dict[str, list[str]] = getattr(view, "action_permissions", {})
        action = getattr(view, "action", None)
        if action in overrides:
            return request.user.has_perms(overrides[action])
        return super().has_permission(request, view)
