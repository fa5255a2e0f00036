"""The flow canvas: what the designer page needs, and its JSON views (validate, layout, save).

The canvas edits the flow file (decision 0003): validation is the API's and ``importflow``'s
(``flow_file_problems`` plus the connection rights), saving is ``access.apply_as`` as for an
imported file, so a saved graph is a new version exactly as from any other door.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.templatetags.static import static
from django.urls import reverse

from flows import access
from flows.definition import NodePolicy
from flows.flowfile import export_flow
from flows.layout import NODE_BOX, auto_layout, with_positions
from flows.models import Flow
from flows.sections import FlowFileSection, sections
from flows.validation import FlowProblem, FlowValidationError, port_schemas
from nodes.access import refused_connections
from nodes.models import Connection
from nodes.registry import registry
from nodes.sdk.ports import COMPATIBLE

#: The keys of a flow file the canvas edits, besides the sections with an editor (the other
#: sections, e.g. schedules, are left alone).
CANVAS_KEYS = ("slug", "name", "description", "run_timeout_s", "nodes", "edges")


def _editable() -> list[FlowFileSection]:
    return [section for section in sections() if section.editor]


def _keys() -> tuple[str, ...]:
    return CANVAS_KEYS + tuple(section.key for section in _editable())


#: Largest flow document the canvas views read.
MAX_BODY_BYTES = 2 * 1024 * 1024


def _document(flow: Flow | None) -> dict[str, Any]:
    if flow is None:
        return {"slug": "", "name": "", "nodes": [], "edges": []}
    data = export_flow(flow)
    return with_positions({k: data[k] for k in _keys() if k in data})


def _connections(user: Any) -> list[dict[str, Any]]:
    # Names and schemes only: what a flow file names anyway, never a URL or a header.
    rows = list(Connection.objects.order_by("name").values("name", "scheme"))
    refused = refused_connections(user, [row["name"] for row in rows])
    return [row for row in rows if row["name"] not in refused]


def canvas_context(request: HttpRequest, flow: Flow | None, can_save: bool) -> dict[str, Any]:
    """The page data of the canvas (handed to the script with ``json_script``)."""
    base = "admin:flows_flow_canvas_"
    return {
        "flow": _document(flow),
        "isNew": flow is None,
        "canSave": can_save,
        "catalog": [cls.describe() for cls in registry.types().values()],
        "compatible": sorted([str(out), str(into)] for out, into in COMPATIBLE),
        "policySchema": NodePolicy.model_json_schema(),
        "connections": _connections(request.user),
        "box": NODE_BOX,
        "sections": [
            {
                "key": section.key,
                "editor": static(section.editor),
                "data": section.canvas_data(flow, request.user) if section.canvas_data else None,
            }
            for section in _editable()
        ],
        "urls": {
            "validate": reverse(base + "validate"),
            "layout": reverse(base + "layout"),
            "save": reverse(base + "save"),
            "addConnection": reverse("admin:nodes_connection_add"),
            "connections": reverse("admin:nodes_connection_changelist"),
            # The preview API: {flows}{slug}/preview/ and {flows}preview/ (unsaved documents).
            "apiFlows": reverse("flow-list"),
        },
    }


def _read(request: HttpRequest) -> tuple[dict[str, Any] | None, JsonResponse | None]:
    if request.method != "POST":
        return None, JsonResponse({"error": "use POST"}, status=405)
    if not access.has_any(request.user):
        return None, JsonResponse({"error": "you may not design flows"}, status=403)
    if len(request.body) > MAX_BODY_BYTES:
        return None, JsonResponse({"error": "the flow document is too large"}, status=413)
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        return None, JsonResponse({"error": f"the body is not JSON: {exc}"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("flow"), dict):
        return None, JsonResponse({"error": 'send {"flow": {...}}'}, status=400)
    flow = body["flow"]
    return {k: flow[k] for k in _keys() if k in flow}, None


def _problems(request: HttpRequest, data: dict[str, Any]) -> list[FlowProblem]:
    # The API's own check (imported here: the API package loads after the admin).
    from flows.api.documents import flow_file_problems

    problems = flow_file_problems(data)
    nodes = data.get("nodes")
    problems += access.connection_problems(request.user, nodes if isinstance(nodes, list) else [])
    return problems


def validate_view(request: HttpRequest) -> JsonResponse:
    """The problems of the document on the canvas, and the record schema at every port."""
    data, error = _read(request)
    if data is None:
        assert error is not None
        return error
    problems = _problems(request, data)
    return JsonResponse(
        {
            "valid": not problems,
            "problems": [p.as_dict() for p in problems],
            "schemas": port_schemas(data),
        }
    )


def layout_view(request: HttpRequest) -> JsonResponse:
    """Positions for every node of the document, laid out left to right by level."""
    data, error = _read(request)
    if data is None:
        assert error is not None
        return error
    nodes = [n for n in data.get("nodes") or [] if isinstance(n, dict)]
    edges = [e for e in data.get("edges") or [] if isinstance(e, dict)]
    return JsonResponse({"positions": auto_layout(nodes, edges)})


def save_view(request: HttpRequest) -> JsonResponse:
    """Save the document as the flow's graph (a new version when it changed); only when valid."""
    data, error = _read(request)
    if data is None:
        assert error is not None
        return error
    slug = data.get("slug")
    before = Flow.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    if before is not None and json.loads(request.body).get("new") is True:
        problem = FlowProblem("slug", f"a flow '{slug}' already exists; choose another slug")
        return JsonResponse({"problems": [problem.as_dict()]}, status=400)
    previous = before.latest_version if before else None
    try:
        with transaction.atomic():
            flow, created = access.apply_as(request.user, data)
    except FlowValidationError as exc:
        return JsonResponse({"problems": [p.as_dict() for p in exc.problems]}, status=400)
    except access.AccessDenied as exc:
        return JsonResponse({"problems": [p.as_dict() for p in exc.problems]}, status=403)
    version = flow.latest_version
    number = version.number if version else 0
    if created:
        messages.success(request, f"Flow {flow.slug} created (version {number}).")
    elif previous is None or version is None or previous.pk != version.pk:
        messages.success(request, f"The graph is saved as version {number}.")
    else:
        messages.info(request, f"Saved; the graph is unchanged (version {number}).")
    return JsonResponse(
        {
            "slug": flow.slug,
            "version": number,
            "url": reverse("admin:flows_flow_change", args=[flow.pk]),
        }
    )
