"""File-arrival triggers: a run per new file (or per batch of new files) of a watched path.

``poll_due`` (a beat task every ``FLOWPLATFORM_FILE_POLL_S``) polls each enabled file trigger
whose ``every`` has passed since it was last polled. A poll lists the files matching the
trigger's glob through the connection's store (``nodes.filestore``, the one module that reads
file connections) and fires one event per file version: the event key is the file's name, size
and stamp (modification time, or ETag on S3), so each file starts one run, however many
pollers or polls see it; a file rewritten with new content is a new version and runs again.

- One run per file: the payload is ``{"file": {"name", "size", "stamp"}}`` and the run value
  ``file_name`` names the file.
- ``batch``: the new files of a poll, by name, in runs of at most ``max_files`` files: the
  payload is ``{"files": [...]}`` and the run value ``file_names`` lists their names. Each
  file is still its own event, all with that run.

With ``after_success``, each event waits (``PENDING``) for its run to end; the file is then
moved or tagged once (``scheduling.triggers.settle``). Files under the ``move_to`` folder are
never listed by the trigger that moves them there. A poll also settles the files whose run
succeeded but whose run-end hook never came (a worker lost between the two).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from hashlib import sha256
from typing import Any

from django.utils import timezone

from flows.access import AccessDenied
from flows.models import Trigger
from flows.services import DispatchError
from flows.validation import FlowValidationError
from nodes.filestore import FileInfo, literal_prefix, open_store
from nodes.models import Connection
from nodes.sdk.errors import NodeError
from scheduling.triggers import settle
from scheduling.triggers.firing import Fired, fire_events
from scheduling.triggers.models import AfterSuccess, FlowTrigger, TriggerEvent, TriggerKind

logger = logging.getLogger("flowplatform.triggers")

#: Most files one poll lists (the rest are seen on the next poll).
MAX_FILES = 10_000


@dataclass
class Poll:
    """What one poll of a trigger found and started."""

    started: list[Fired] = field(default_factory=list)
    seen: int = 0
    error: str = ""


def poll_due() -> int:
    """Poll every file trigger that is due; returns how many runs were started."""
    started = 0
    now = timezone.now()
    for trigger in FlowTrigger.objects.filter(kind=TriggerKind.FILES, enabled=True):
        every = timedelta(seconds=int(trigger.option("every_seconds", 60)))
        if trigger.polled_at is not None and trigger.polled_at + every > now:
            continue
        # Compare-and-set: of two pollers, one polls.
        claimed = FlowTrigger.objects.filter(pk=trigger.pk, polled_at=trigger.polled_at).update(
            polled_at=now
        )
        if claimed:
            started += len(poll(trigger).started)
    return started


def poll(trigger: FlowTrigger) -> Poll:
    """List the trigger's files and start a run for each version not seen before (or one
    run per batch of them)."""
    result = Poll()
    name = trigger.option("connection")
    connection = Connection.objects.filter(name=name).first()
    if connection is None:
        result.error = f"connection '{name}' does not exist"
        logger.warning("trigger %s: %s", trigger.pk, result.error)
        return result
    settle.overdue(trigger)
    try:
        files = open_store(connection.secret_url()).entries(trigger.option("path"), MAX_FILES)
    except NodeError as exc:
        result.error = f"connection '{name}': {exc.message}"
        logger.warning("trigger %s: %s", trigger.pk, result.error)
        return result
    moved_to = (trigger.option("after_success") or {}).get("move_to")
    if moved_to:
        files = [f for f in files if not f.key.startswith(moved_to)]
    result.seen = len(files)
    known = set(
        TriggerEvent.objects.filter(trigger=trigger, key__in=[_key(f) for f in files]).values_list(
            "key", flat=True
        )
    )
    new = [f for f in files if _key(f) not in known]
    batch = trigger.option("batch")
    size = int(batch["max_files"]) if batch else 1
    for start in range(0, len(new), size):
        group = new[start : start + size]
        try:
            fired = _fire(trigger, connection.name, group, batched=bool(batch))
        except (AccessDenied, FlowValidationError, DispatchError) as exc:
            result.error = str(exc)
            logger.warning("trigger %s: %s not run: %s", trigger.pk, group[0].key, exc)
            break
        if fired.started:
            result.started.append(fired)
    return result


def _fire(trigger: FlowTrigger, connection: str, group: list[FileInfo], batched: bool) -> Fired:
    described = [{"name": f.key, "size": f.size, "stamp": f.stamp} for f in group]
    payload: dict[str, Any]
    if batched:
        payload, params = {"files": described}, {"file_names": [f.key for f in group]}
    else:
        payload, params = {"file": described[0]}, {"file_name": group[0].key}
    events = []
    for entry, details in zip(group, described, strict=True):
        action = _action(trigger, entry.key)
        if action is not None:
            details = {**details, "connection": connection, "after_success": action}
        events.append((_key(entry), details))
    return fire_events(
        trigger,
        events,
        trigger_type=Trigger.FILE,
        payload=payload,
        params=params,
        after_success=AfterSuccess.PENDING
        if "after_success" in events[0][1]
        else AfterSuccess.NONE,
    )


def _action(trigger: FlowTrigger, key: str) -> dict[str, Any] | None:
    """What to do with file ``key`` once its run succeeded. A moved file keeps its path below
    the glob's fixed directories: ``orders/*.csv`` moves ``orders/a.csv`` to ``done/a.csv``;
    ``**/*.csv`` moves ``x/a.csv`` to ``done/x/a.csv``."""
    action = trigger.option("after_success")
    if not action:
        return None
    if "move_to" in action:
        prefix = literal_prefix(trigger.option("path"))
        rest = key[len(prefix) :] if key.startswith(prefix) else key
        return {"move_to": action["move_to"] + rest}
    return {"tag": action["tag"]}


def _key(entry: FileInfo) -> str:
    """Name, size and stamp; a very long name by its SHA-256 (the key has a bounded length)."""
    key = f"file:{entry.size}:{entry.stamp}:{entry.key}"
    if len(key) > 500:
        key = f"file:{entry.size}:{entry.stamp}:sha256:{sha256(entry.key.encode()).hexdigest()}"
    return key
