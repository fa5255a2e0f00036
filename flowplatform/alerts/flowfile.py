"""The ``alerts`` section of a flow file: validate, apply (make them match), export.

```json
"alerts": [{"on": ["failed", "late", "recovered"], "connection": "ops-webhook",
            "email": ["ops@example.com"], "late_after": "30m"}]
```
Each item names the events it is sent on (``failed``, ``succeeded``, ``late``, ``recovered``)
and at least one target: ``connection`` (a webhook: the connection's URL and headers receive
the JSON body) and/or ``email`` (addresses). ``late_after`` (``30m``, ``2h``, seconds) is
required with ``late`` and only then. A file without ``alerts`` leaves them alone; ``[]``
removes them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowplatform.alerts.models import AlertEvent, FlowAlert
from flows.models import Flow
from flows.validation import FlowProblem, pydantic_problems
from nodes.models import Connection
from scheduling.durations import format_every, parse_every

EVENTS = [event.value for event in AlertEvent]


class AlertSpec(BaseModel):
    """One item of ``alerts`` as written in the file."""

    model_config = ConfigDict(extra="forbid")

    on: list[str] = Field(min_length=1)
    connection: str | None = None
    email: list[str] = Field(default_factory=list)
    late_after: str | int | None = None


def validate_section(value: Any) -> list[FlowProblem]:
    if not isinstance(value, list):
        return [FlowProblem("alerts", "must be a list of alerts")]
    problems: list[FlowProblem] = []
    for index, item in enumerate(value):
        problems.extend(parse_item(item, f"alerts[{index}]")[1])
    return problems


def parse_item(item: Any, path: str) -> tuple[dict[str, Any] | None, list[FlowProblem]]:
    """Model field values for one item, or None and the item's problems."""
    if not isinstance(item, dict):
        return None, [FlowProblem(path, "an alert must be an object")]
    try:
        spec = AlertSpec.model_validate(item)
    except ValidationError as exc:
        return None, pydantic_problems(exc, path)
    problems = [
        FlowProblem(f"{path}.on[{i}]", f"unknown event '{event}' (one of {', '.join(EVENTS)})")
        for i, event in enumerate(spec.on)
        if event not in EVENTS
    ]
    if not spec.connection and not spec.email:
        problems.append(FlowProblem(path, "give a webhook connection, e-mail addresses or both"))
    if spec.connection and not Connection.objects.filter(name=spec.connection).exists():
        problems.append(
            FlowProblem(f"{path}.connection", f"connection '{spec.connection}' does not exist")
        )
    for i, address in enumerate(spec.email):
        try:
            validate_email(address)
        except DjangoValidationError:
            problems.append(
                FlowProblem(f"{path}.email[{i}]", f"'{address}' is not an e-mail address")
            )
    late_after = None
    if "late" in spec.on and spec.late_after is None:
        problems.append(FlowProblem(f"{path}.late_after", "required with 'late' (e.g. '30m')"))
    elif "late" not in spec.on and spec.late_after is not None:
        problems.append(FlowProblem(f"{path}.late_after", "applies to alerts on 'late' only"))
    elif spec.late_after is not None:
        try:
            late_after = parse_every(spec.late_after)
        except ValueError as exc:
            problems.append(FlowProblem(f"{path}.late_after", str(exc)))
    if problems:
        return None, problems
    return {
        "events": [e for e in EVENTS if e in spec.on],
        "connection": spec.connection or "",
        "emails": list(dict.fromkeys(spec.email)),
        "late_after_s": late_after,
    }, []


def apply_section(flow: Flow, value: Any) -> None:
    """Make the flow's alerts match ``value`` (already validated); None leaves them alone."""
    if value is None:
        return
    flow.alerts.all().delete()
    for position, item in enumerate(value):
        fields, _ = parse_item(item, "")
        assert fields is not None  # validated before the import transaction
        FlowAlert.objects.create(flow=flow, position=position, **fields)


def export_section(flow: Flow) -> list[dict[str, Any]] | None:
    """The flow's alerts in file form; None when it has none."""
    items = [export_item(alert) for alert in flow.alerts.order_by("position", "id")]
    return items or None


def export_item(alert: FlowAlert) -> dict[str, Any]:
    item: dict[str, Any] = {"on": list(alert.events)}
    if alert.connection:
        item["connection"] = alert.connection
    if alert.emails:
        item["email"] = list(alert.emails)
    if alert.late_after_s is not None:
        item["late_after"] = format_every(alert.late_after_s)
    return item
