"""Flows as API documents: the flow file plus version and timestamps, ETags, preconditions."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rest_framework.request import Request

from flowplatform.api.errors import Conflict, PreconditionFailed, ProblemError, error_item
from flows.flowfile import export_flow
from flows.models import Flow
from flows.sections import sections
from flows.validation import FlowProblem, FlowValidationError, validate_for_save

#: Fields of a flow document that a client may send back but never changes.
READ_ONLY_FIELDS = ("created_at", "updated_at")


def flow_document(flow: Flow) -> dict[str, Any]:
    """The flow as the API shows it: its flow file, current version number and timestamps."""
    document = export_flow(flow)
    latest = flow.versions.order_by("-number").values_list("number", flat=True).first()
    document.update(version=latest, created_at=flow.created_at, updated_at=flow.updated_at)
    return document


def etag(document: dict[str, Any]) -> str:
    """A strong ETag of the whole document: any change to the flow changes it."""
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode())
    return f'"{digest.hexdigest()[:32]}"'


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProblemError([error_item("", "the request body must be a JSON object")])
    return body


def flow_file(body: dict[str, Any], slug: str | None = None) -> dict[str, Any]:
    """The flow file inside a request body: read-only fields and ``version`` left out.

    With ``slug`` (updates), the URL's slug is the flow's: a different one in the body is an
    error, a missing one is filled in.
    """
    data = {k: v for k, v in body.items() if k not in (*READ_ONLY_FIELDS, "version")}
    if slug is not None and data.setdefault("slug", slug) != slug:
        raise ProblemError(
            [error_item("slug", f"must be '{slug}' (the URL's); flows cannot be renamed")]
        )
    return data


def check_preconditions(request: Request, body: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse a write based on a stale read: ``If-Match`` (412) and ``version`` (409)."""
    if_match = request.headers.get("If-Match")
    if if_match is not None and if_match.strip() != "*":
        tags = [tag.strip() for tag in if_match.split(",")]
        if etag(current) not in tags:
            raise PreconditionFailed(
                [error_item("If-Match", "the flow has changed since this ETag; fetch it again")],
                "The flow has changed since you read it.",
            )
    version = body.get("version")
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProblemError([error_item("version", "must be an integer")])
    if version != current["version"]:
        raise Conflict(
            [
                error_item(
                    "version",
                    f"the flow is at version {current['version']}, not {version}; "
                    "fetch it again and re-apply your change",
                )
            ],
            "The flow has changed since you read it.",
        )


def flow_file_problems(data: Any) -> list[FlowProblem]:
    """Every problem of a flow file, extra sections (``schedules``) included."""
    spec, problems = validate_for_save(data)
    if spec is None:
        return problems
    for section in sections():
        if data.get(section.key) is not None:
            problems.extend(section.validate(data[section.key]))
    return problems


def problems_as_errors(problems: list[FlowProblem]) -> list[dict[str, str | None]]:
    return [problem.as_dict() for problem in problems]


def invalid_flow(exc: FlowValidationError) -> ProblemError:
    return ProblemError(problems_as_errors(exc.problems), "The flow is invalid.")
