"""The ``schedules`` section of a flow file: validate, apply (make them match), export.

```json
"schedules": [{"cron": "0 6 * * 1-5", "timezone": "Europe/Madrid"},
              {"every": "30s", "overlap": "queue"},
              {"at": "2027-01-01T00:00:00Z", "params": {"full": true}}]
```
Each item has exactly one of ``cron`` (with an optional ``timezone``, UTC by default), ``every``
or ``at``, and optionally ``params``, ``enabled``, ``overlap``, ``max_active_runs``,
``catchup``, ``start``, ``end`` and ``description``. On import the flow's schedules are made to
match the list: an existing schedule with the same timing is updated in place (keeping its
history), the others are created or deleted. A file without ``schedules`` leaves them alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, ValidationError

from flowplatform.jsonfields import same_json
from flows.models import Flow
from flows.validation import FlowProblem, pydantic_problems
from scheduling.cron import CronError
from scheduling.durations import format_every, parse_every
from scheduling.models import FlowSchedule, ScheduleKind
from scheduling.validation import check_cron, check_schedule, check_timezone

#: Model field -> flow-file key, for error paths.
_FILE_KEYS = {"every_seconds": "every", "start_at": "start", "end_at": "end"}


class ScheduleSpec(BaseModel):
    """One item of ``schedules`` as written in the file."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    timezone: str | None = None
    every: str | int | None = None
    at: AwareDatetime | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: StrictBool = True
    overlap: Literal["skip", "queue", "allow"] = "skip"
    max_active_runs: int = Field(default=1, ge=1)
    catchup: StrictBool = False
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    description: str = ""


def validate_section(value: Any) -> list[FlowProblem]:
    if not isinstance(value, list):
        return [FlowProblem("schedules", "must be a list of schedules")]
    problems: list[FlowProblem] = []
    seen: dict[tuple[Any, ...], int] = {}
    for index, item in enumerate(value):
        fields, item_problems = parse_item(item, f"schedules[{index}]")
        problems.extend(item_problems)
        if fields is None:
            continue
        key = timing_key(fields)
        if key in seen:
            problems.append(
                FlowProblem(
                    f"schedules[{index}]", f"same timing as schedules[{seen[key]}] (a duplicate)"
                )
            )
        else:
            seen[key] = index
    return problems


def parse_item(item: Any, path: str) -> tuple[dict[str, Any] | None, list[FlowProblem]]:
    """Model field values for one item, or None and the item's problems."""
    if not isinstance(item, dict):
        return None, [FlowProblem(path, "a schedule must be an object")]
    try:
        spec = ScheduleSpec.model_validate(item)
    except ValidationError as exc:
        return None, pydantic_problems(exc, path)
    given = [key for key in ("cron", "every", "at") if getattr(spec, key) is not None]
    if len(given) != 1:
        found = f" (found {', '.join(given)})" if given else ""
        return None, [FlowProblem(path, f"give exactly one of cron, every or at{found}")]
    problems: list[FlowProblem] = []
    if spec.timezone is not None and spec.cron is None:
        problems.append(FlowProblem(f"{path}.timezone", "timezone applies to cron schedules"))
    if spec.cron is not None:
        error = check_cron(spec.cron)
        if error is not None:
            problems.append(_cron_problem(error, path))
        tz_error = check_timezone(spec.timezone or "UTC")
        if tz_error:
            problems.append(FlowProblem(f"{path}.timezone", tz_error))
    every = None
    if spec.every is not None:
        try:
            every = parse_every(spec.every)
        except ValueError as exc:
            problems.append(FlowProblem(f"{path}.every", str(exc)))
    if problems:
        return None, problems
    fields = model_fields(spec, every)
    errors = check_schedule(_Fields(fields))
    problems = [
        FlowProblem(f"{path}.{_FILE_KEYS.get(name, name)}", message)
        for name, message in errors.items()
    ]
    return (None, problems) if problems else (fields, [])


def model_fields(spec: ScheduleSpec, every: int | None) -> dict[str, Any]:
    kind = (
        ScheduleKind.CRON
        if spec.cron is not None
        else ScheduleKind.INTERVAL
        if every is not None
        else ScheduleKind.ONE_OFF
    )
    return {
        "kind": kind.value,
        "cron": " ".join(spec.cron.split()) if spec.cron else "",
        "timezone": spec.timezone or "UTC",
        "every_seconds": every,
        "at": spec.at.astimezone(UTC) if spec.at else None,
        "params": spec.params,
        "enabled": spec.enabled,
        "overlap": spec.overlap,
        "max_active_runs": spec.max_active_runs,
        "catchup": spec.catchup,
        "start_at": spec.start.astimezone(UTC) if spec.start else None,
        "end_at": spec.end.astimezone(UTC) if spec.end else None,
        "description": spec.description,
    }


def timing_key(fields: dict[str, Any] | FlowSchedule) -> tuple[Any, ...]:
    """What identifies a schedule across imports: its kind and timing."""
    get = fields.get if isinstance(fields, dict) else lambda name: getattr(fields, name)
    return (get("kind"), get("cron"), get("timezone"), get("every_seconds"), get("at"))


def apply_section(flow: Flow, value: Any) -> None:
    """Make the flow's schedules match ``value`` (already validated); None leaves them alone."""
    if value is None:
        return
    wanted = [parse_item(item, "")[0] for item in value]
    existing = {timing_key(s): s for s in flow.schedules.all()}
    for position, fields in enumerate(wanted):
        assert fields is not None  # validated before the import transaction
        schedule = existing.pop(timing_key(fields), None)
        if schedule is None:
            FlowSchedule(flow=flow, position=position, **fields).save()
            continue
        fields = {**fields, "position": position}
        if not all(same_json(getattr(schedule, name), val) for name, val in fields.items()):
            for name, val in fields.items():
                setattr(schedule, name, val)
            schedule.save()
    for schedule in existing.values():
        schedule.delete()


def export_section(flow: Flow) -> list[dict[str, Any]] | None:
    """The flow's schedules in file form (defaults left out); None when it has none."""
    items = [export_item(s) for s in flow.schedules.order_by("position", "id")]
    return items or None


def export_item(schedule: FlowSchedule) -> dict[str, Any]:
    item: dict[str, Any]
    if schedule.kind == ScheduleKind.CRON:
        item = {"cron": schedule.cron}
        if schedule.timezone != "UTC":
            item["timezone"] = schedule.timezone
    elif schedule.kind == ScheduleKind.INTERVAL:
        item = {"every": format_every(schedule.every_seconds or 0)}
    else:
        item = {"at": iso(schedule.at)}
    optional = {
        "params": (schedule.params, {}),
        "enabled": (schedule.enabled, True),
        "overlap": (schedule.overlap, "skip"),
        "max_active_runs": (schedule.max_active_runs, 1),
        "catchup": (schedule.catchup, False),
        "start": (iso(schedule.start_at), None),
        "end": (iso(schedule.end_at), None),
        "description": (schedule.description, ""),
    }
    item.update({key: value for key, (value, default) in optional.items() if value != default})
    return item


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _cron_problem(error: CronError, path: str) -> FlowProblem:
    where = f"{path}.cron.{error.field}" if error.field else f"{path}.cron"
    return FlowProblem(where, error.message)


class _Fields:
    """Attribute access over a dict of model fields (what check_schedule reads)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)
