"""File-arrival triggers: a run per new file of a watched connection path.

``poll_due`` (a beat task every ``FLOWPLATFORM_FILE_POLL_S``) polls each enabled file trigger
whose ``every`` has passed since it was last polled. A poll lists the files matching the
trigger's glob and fires one event per file version: the event key is the file's name, size
and stamp (modification time, or ETag on S3), so each file starts one run, however many
pollers or polls see it; a file rewritten with new content is a new version and runs again.
The run's payload is ``{"file": {"name", "size", "stamp"}}`` and its params carry
``file_name`` (a run value the nodes see), plus the trigger's params.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from hashlib import sha256

from django.utils import timezone

from flows.access import AccessDenied
from flows.models import Trigger
from flows.services import DispatchError
from flows.validation import FlowValidationError
from nodes.models import Connection
from scheduling.triggers.firing import Fired, fire
from scheduling.triggers.listing import FileEntry, ListingError, list_files
from scheduling.triggers.models import FlowTrigger, TriggerEvent, TriggerKind

logger = logging.getLogger("flowplatform.triggers")


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
    """List the trigger's files and start a run for each version not seen before."""
    result = Poll()
    connection = Connection.objects.filter(name=trigger.option("connection")).first()
    if connection is None:
        result.error = f"connection '{trigger.option('connection')}' does not exist"
        logger.warning("trigger %s: %s", trigger.pk, result.error)
        return result
    try:
        files = list_files(connection.secret_url(), trigger.option("path"))
    except ListingError as exc:
        result.error = str(exc)
        logger.warning("trigger %s: %s", trigger.pk, exc)
        return result
    result.seen = len(files)
    known = set(
        TriggerEvent.objects.filter(trigger=trigger, key__in=[_key(f) for f in files]).values_list(
            "key", flat=True
        )
    )
    for entry in files:
        if _key(entry) in known:
            continue
        try:
            fired = fire(
                trigger,
                _key(entry),
                trigger_type=Trigger.FILE,
                payload={"file": {"name": entry.name, "size": entry.size, "stamp": entry.stamp}},
                params={"file_name": entry.name},
                details={"name": entry.name, "size": entry.size, "stamp": entry.stamp},
            )
        except (AccessDenied, FlowValidationError, DispatchError) as exc:
            result.error = str(exc)
            logger.warning("trigger %s: %s not run: %s", trigger.pk, entry.name, exc)
            break
        if fired.started:
            result.started.append(fired)
    return result


def _key(entry: FileEntry) -> str:
    """Name, size and stamp; a very long name by its SHA-256 (the key has a bounded length)."""
    key = f"file:{entry.size}:{entry.stamp}:{entry.name}"
    if len(key) > 500:
        key = f"file:{entry.size}:{entry.stamp}:sha256:{sha256(entry.name.encode()).hexdigest()}"
    return key
