"""The ``triggers`` section of a flow file: validate, apply (make them match), export.

```json
"triggers": [{"webhook": "orders-created", "response": "wait", "timeout_s": 20},
             {"after": "nightly-load", "status": "succeeded"},
             {"after": ["load-a", "load-b"], "wait_for_all": true},
             {"files": "inbox", "path": "orders/*.csv", "every": "1m",
              "batch": {"max_files": 100}, "after_success": {"move_to": "done/"}}]
```
Each item has exactly one of ``webhook`` (its name), ``after`` (one upstream flow slug or a
list) or ``files`` (a file connection's name, with ``path``, ``every``, and optionally ``batch``
and ``after_success``: ``{"move_to": "folder/"}`` or, on S3, ``{"tag": {"key": "value"}}``),
and optionally ``params`` and ``enabled``. A flow file names a webhook, never its secret. On import the
flow's triggers are made to match the list: a trigger of the same kind and name is updated in
place (keeping its secret and history); the others are created or deleted. A file without
``triggers`` leaves them alone.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowplatform.jsonfields import same_json
from flows.models import Flow
from flows.validation import FlowProblem, FlowValidationError, pydantic_problems
from nodes.models import Connection
from scheduling.durations import format_every, parse_every
from scheduling.triggers.models import FlowTrigger, TriggerKind

SLUG = r"^[A-Za-z0-9_-]{1,100}$"
#: Shortest polling interval of a file trigger.
MIN_EVERY_S = 5
#: Most files one run of a batching file trigger takes (and one poll lists).
MAX_BATCH_FILES = 10_000
#: S3's rules for tags: at most 10 on an object; these characters; keys up to 128 characters,
#: values up to 256; keys starting ``aws:`` are reserved.
MAX_TAGS = 10
TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)
    enabled: StrictBool = True


class WebhookSpec(_Item):
    webhook: str = Field(pattern=SLUG)
    response: Literal["accept", "wait"] = "accept"
    timeout_s: float = Field(default=30, gt=0, le=300)
    rate_per_minute: int | None = Field(default=None, ge=1, le=100_000)


class AfterSpec(_Item):
    after: str | list[str]
    status: Literal["succeeded", "failed", "finished"] = "succeeded"
    wait_for_all: StrictBool = False


class BatchSpec(BaseModel):
    """All new files of a poll in runs of at most ``max_files`` files (instead of one each)."""

    model_config = ConfigDict(extra="forbid")

    max_files: int = Field(default=100, ge=1, le=MAX_BATCH_FILES)


class AfterSuccessSpec(BaseModel):
    """What becomes of a file once its run succeeded: moved to a folder, or tagged (S3)."""

    model_config = ConfigDict(extra="forbid")

    move_to: str | None = Field(default=None, min_length=1, max_length=250)
    tag: dict[str, str] | None = Field(default=None, min_length=1, max_length=MAX_TAGS)

    @field_validator("move_to")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        """A folder relative to the connection, kept ending in ``/``."""
        if value is None:
            return None
        folder = value.strip().strip("/")
        parts = folder.split("/")
        if (
            not folder
            or value.strip().startswith("/")
            or "\\" in folder
            or "\x00" in folder
            or any(part in ("", ".", "..") or part.startswith(".") for part in parts)
        ):
            raise _error(
                "a folder relative to the connection, e.g. 'done/' (no '..', no hidden names)"
            )
        if re.search(r"[*?\[\]]", folder):
            raise _error("a folder name, not a glob")
        return folder + "/"

    @field_validator("tag")
    @classmethod
    def _tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, text in (value or {}).items():
            shown = key[:40]
            if not 1 <= len(key) <= 128 or not TAG_TEXT.fullmatch(key):
                raise _error(f"tag key '{shown}': 1-128 letters, digits, spaces or _.:/=+-@")
            if key.lower().startswith("aws:"):
                raise _error(f"tag key '{shown}': keys starting 'aws:' are reserved")
            if len(text) > 256 or not TAG_TEXT.fullmatch(text):
                raise _error(
                    f"tag '{shown}': a value is up to 256 letters, digits, spaces or _.:/=+-@"
                )
        return value

    @model_validator(mode="after")
    def _one(self) -> AfterSuccessSpec:
        if (self.move_to is None) == (self.tag is None):
            raise _error("give exactly one of move_to or tag")
        return self

    def action(self) -> dict[str, Any]:
        return (
            {"move_to": self.move_to} if self.move_to is not None else {"tag": dict(self.tag or {})}
        )


class FilesSpec(_Item):
    files: str = Field(min_length=1, max_length=100)
    path: str = Field(min_length=1, max_length=250)
    every: str | int = Field(default="1m", validate_default=True)
    batch: BatchSpec | None = None
    after_success: AfterSuccessSpec | None = None

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | int) -> int:
        """The polling interval in seconds."""
        try:
            seconds = parse_every(value)
        except ValueError as exc:
            raise _error(str(exc)) from None
        if seconds < MIN_EVERY_S:
            raise _error(f"poll at most every {MIN_EVERY_S}s")
        return seconds

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise _error("a relative glob without '..'")
        return value


def _error(message: str) -> PydanticCustomError:
    """A problem in the platform's own words (pydantic would prefix 'Value error, ')."""
    return PydanticCustomError("trigger", message)


SPECS: dict[str, type[_Item]] = {
    TriggerKind.WEBHOOK: WebhookSpec,
    TriggerKind.AFTER: AfterSpec,
    TriggerKind.FILES: FilesSpec,
}
_KIND_KEYS = {
    "webhook": TriggerKind.WEBHOOK,
    "after": TriggerKind.AFTER,
    "files": TriggerKind.FILES,
}


def validate_section(value: Any) -> list[FlowProblem]:
    if not isinstance(value, list):
        return [FlowProblem("triggers", "must be a list of triggers")]
    problems: list[FlowProblem] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(value):
        fields, item_problems = parse_item(item, f"triggers[{index}]")
        problems.extend(item_problems)
        if fields is None:
            continue
        if fields["kind"] == TriggerKind.FILES:
            problems.extend(_connection_problems(fields, f"triggers[{index}]"))
        identity = (fields["kind"], fields["name"])
        if identity in seen:
            problems.append(
                FlowProblem(f"triggers[{index}]", f"same trigger as triggers[{seen[identity]}]")
            )
        else:
            seen[identity] = index
    return problems


def parse_item(item: Any, path: str) -> tuple[dict[str, Any] | None, list[FlowProblem]]:
    """Model field values for one item, or None and the item's problems."""
    if not isinstance(item, dict):
        return None, [FlowProblem(path, "a trigger must be an object")]
    given = [key for key in _KIND_KEYS if key in item]
    if len(given) != 1:
        found = f" (found {', '.join(given)})" if given else ""
        return None, [FlowProblem(path, f"give exactly one of webhook, after or files{found}")]
    kind = _KIND_KEYS[given[0]]
    try:
        spec = SPECS[kind].model_validate(item)
    except ValidationError as exc:
        return None, pydantic_problems(exc, path)
    if isinstance(spec, WebhookSpec):
        config: dict[str, Any] = {"response": spec.response, "timeout_s": spec.timeout_s}
        if spec.rate_per_minute is not None:
            config["rate_per_minute"] = spec.rate_per_minute
        name = spec.webhook
    elif isinstance(spec, AfterSpec):
        upstreams = [spec.after] if isinstance(spec.after, str) else spec.after
        problems = [
            FlowProblem(f"{path}.after", f"'{slug}' is not a flow slug")
            for slug in upstreams
            if not isinstance(slug, str) or not _is_slug(slug)
        ]
        if not upstreams:
            problems.append(FlowProblem(f"{path}.after", "name at least one flow"))
        if problems:
            return None, problems
        upstreams = sorted(set(upstreams))
        config = {"upstreams": upstreams, "status": spec.status, "wait_for_all": spec.wait_for_all}
        name = ",".join(upstreams)
    else:
        assert isinstance(spec, FilesSpec)
        config = {"connection": spec.files, "path": spec.path, "every_seconds": int(spec.every)}
        if spec.batch is not None:
            config["batch"] = {"max_files": spec.batch.max_files}
        if spec.after_success is not None:
            config["after_success"] = spec.after_success.action()
        name = f"{spec.files}:{spec.path}"
    fields = {
        "kind": kind.value,
        "name": name,
        "config": config,
        "params": spec.params,
        "enabled": spec.enabled,
    }
    return fields, []


def _connection_problems(fields: dict[str, Any], path: str) -> list[FlowProblem]:
    """A file trigger's connection, when it exists already: a file one, S3 for tags. (One
    named before it exists is fine: its polls fail, logged, until it does.)"""
    config = fields["config"]
    scheme = (
        Connection.objects.filter(name=config["connection"])
        .values_list("scheme", flat=True)
        .first()
    )
    if scheme is None:
        return []
    if scheme not in ("file", "s3"):
        message = f"'{config['connection']}' is not a file connection ({scheme}; use file or s3)"
        return [FlowProblem(f"{path}.files", message)]
    if "tag" in config.get("after_success", {}) and scheme != "s3":
        message = f"'{config['connection']}' is a directory: tags exist only on S3 (use move_to)"
        return [FlowProblem(f"{path}.after_success.tag", message)]
    return []


def _is_slug(value: str) -> bool:
    return re.fullmatch(SLUG, value) is not None


def apply_section(flow: Flow, value: Any) -> None:
    """Make the flow's triggers match ``value`` (already validated); None leaves them alone.

    Raises FlowValidationError when ``after`` triggers would make flows wait on each other in
    a cycle (the import is rolled back)."""
    if value is None:
        return
    wanted = [parse_item(item, "")[0] for item in value]
    existing = {(t.kind, t.name): t for t in flow.triggers.all()}
    for position, fields in enumerate(wanted):
        assert fields is not None  # validated before the import transaction
        trigger = existing.pop((fields["kind"], fields["name"]), None)
        fields = {**fields, "position": position}
        if trigger is None:
            FlowTrigger(flow=flow, **fields).save()
        elif not all(same_json(getattr(trigger, name), val) for name, val in fields.items()):
            for name, val in fields.items():
                setattr(trigger, name, val)
            trigger.save()
    for trigger in existing.values():
        trigger.delete()
    _refuse_cycles(flow, wanted)


def _refuse_cycles(flow: Flow, wanted: list[dict[str, Any] | None]) -> None:
    from scheduling.triggers.upstream import dependency_edges

    edges = dependency_edges()
    seen: set[str] = set()
    stack = [flow.slug]
    while stack:
        slug = stack.pop()
        for upstream in edges.get(slug, ()):
            if upstream == flow.slug:
                index = next(
                    i for i, f in enumerate(wanted) if f and f["kind"] == TriggerKind.AFTER
                )
                raise FlowValidationError(
                    [
                        FlowProblem(
                            f"triggers[{index}].after",
                            f"flow '{flow.slug}' would wait on itself (a cycle through '{slug}')",
                        )
                    ]
                )
            if upstream not in seen:
                seen.add(upstream)
                stack.append(upstream)


def export_section(flow: Flow) -> list[dict[str, Any]] | None:
    """The flow's triggers in file form (defaults left out, never a secret)."""
    items = [export_item(t) for t in flow.triggers.order_by("position", "id")]
    return items or None


def export_item(trigger: FlowTrigger) -> dict[str, Any]:
    config = trigger.config
    item: dict[str, Any]
    if trigger.kind == TriggerKind.WEBHOOK:
        item = {"webhook": trigger.name}
        if config.get("response", "accept") != "accept":
            item["response"] = config["response"]
        if config.get("timeout_s", 30) != 30:
            item["timeout_s"] = config["timeout_s"]
        if config.get("rate_per_minute") is not None:
            item["rate_per_minute"] = config["rate_per_minute"]
    elif trigger.kind == TriggerKind.AFTER:
        upstreams = config["upstreams"]
        item = {"after": upstreams[0] if len(upstreams) == 1 else upstreams}
        if config.get("status", "succeeded") != "succeeded":
            item["status"] = config["status"]
        if config.get("wait_for_all"):
            item["wait_for_all"] = True
    else:
        item = {
            "files": config["connection"],
            "path": config["path"],
            "every": format_every(config["every_seconds"]),
        }
        for option in ("batch", "after_success"):
            if config.get(option):
                item[option] = config[option]
    if trigger.params:
        item["params"] = trigger.params
    if not trigger.enabled:
        item["enabled"] = False
    return item
