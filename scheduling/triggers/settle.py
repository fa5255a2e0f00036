"""A file trigger's ``after_success``: move or tag each file once the run it started succeeded.

Each file's event waits ``PENDING`` for its run. When the run has ended (the run-end hook, in
the worker that ended it; or a later poll, should that hook never have come):

- succeeded: one caller wins the compare-and-set ``PENDING -> DOING`` (one statement for all
  the run's files) and moves or tags the file through ``nodes.filestore`` — only the version that was seen (its stamp); the others find
  nothing to do, so the hook delivered twice, or by two processes, acts once. Then ``DONE``; a
  failure a retry can help (the network) goes back to ``PENDING`` for the next poll, at most
  ``MAX_ATTEMPTS`` tries in all; a permanent one (the file changed or gone) is ``FAILED``;
- failed or cancelled: the file is left in place (``LEFT``); it never triggers again, being
  recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from flows.models import RunStatus
from flows.transitions import clip_error
from nodes.filestore import FileStore, open_store
from nodes.models import Connection
from nodes.sdk.errors import NodeError
from scheduling.triggers.models import AfterSuccess, FlowTrigger, TriggerEvent

logger = logging.getLogger("flowplatform.triggers")

#: Tries to move or tag one file before it is given up (``FAILED``).
MAX_ATTEMPTS = 5
_ENDED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def run_finished(run_id: Any) -> int:
    """Settle the files of the run that has just ended; returns how many were moved or tagged."""
    pending = TriggerEvent.objects.filter(run_id=run_id, after_success=AfterSuccess.PENDING)
    return settle(pending.select_related("run"))


def overdue(trigger: FlowTrigger) -> int:
    """Settle the trigger's files whose run has ended but that still wait (a lost hook, or a
    try that a retry may help)."""
    pending = TriggerEvent.objects.filter(
        trigger=trigger, after_success=AfterSuccess.PENDING, run__status__in=_ENDED
    )
    return settle(pending.select_related("run"))


def settle(events: QuerySet[TriggerEvent]) -> int:
    """Leave the files of runs that did not succeed; move or tag those of runs that did, each
    claimed first in one statement (a file is claimed by one caller only)."""
    ended = [e for e in events if e.run is not None and e.run.status in _ENDED]
    left = [e.pk for e in ended if e.run is not None and e.run.status != RunStatus.SUCCEEDED]
    if left:
        TriggerEvent.objects.filter(pk__in=left, after_success=AfterSuccess.PENDING).update(
            after_success=AfterSuccess.LEFT
        )
    succeeded = {e.pk: e for e in ended if e.pk not in set(left)}
    stores: dict[str, FileStore | NodeError] = {}
    done = [pk for pk in _claim(list(succeeded)) if _act(succeeded[pk], stores)]
    if done:
        TriggerEvent.objects.filter(pk__in=done, after_success=AfterSuccess.DOING).update(
            after_success=AfterSuccess.DONE, after_success_at=timezone.now(), error=""
        )
    return len(done)


def _claim(ids: list[int]) -> list[int]:
    """Take the events ``ids`` from ``PENDING`` to ``DOING``; returns the ones this caller took
    (rows another caller is taking are locked, and skipped: two queries for all the files)."""
    if not ids:
        return []
    with transaction.atomic():
        mine = list(
            TriggerEvent.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, after_success=AfterSuccess.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        TriggerEvent.objects.filter(pk__in=mine).update(
            after_success=AfterSuccess.DOING,
            after_success_attempts=F("after_success_attempts") + 1,
        )
    return mine


def _act(event: TriggerEvent, stores: dict[str, FileStore | NodeError]) -> bool:
    """Move or tag the event's file; False (recorded on the event) when that failed."""
    details = event.details
    try:
        store = _store(details.get("connection", ""), stores)
        action = details["after_success"]
        if "move_to" in action:
            store.move(details["name"], action["move_to"], details["stamp"])
        else:
            store.tag(details["name"], action["tag"], details["stamp"])
    except NodeError as exc:
        attempts = event.after_success_attempts + 1
        retry = not exc.permanent and attempts < MAX_ATTEMPTS
        TriggerEvent.objects.filter(pk=event.pk, after_success=AfterSuccess.DOING).update(
            after_success=AfterSuccess.PENDING if retry else AfterSuccess.FAILED,
            error=clip_error(exc.message),
        )
        logger.warning("trigger %s: file %s: %s", event.trigger_id, details.get("name"), exc)
        return False
    return True


def _store(name: str, stores: dict[str, FileStore | NodeError]) -> FileStore:
    """The connection's store, opened once per call (a missing connection may come back)."""
    if name not in stores:
        connection = Connection.objects.filter(name=name).first()
        try:
            if connection is None:
                raise NodeError(f"connection '{name}' does not exist")
            stores[name] = open_store(connection.secret_url())
        except NodeError as exc:
            stores[name] = exc
    found = stores[name]
    if isinstance(found, NodeError):
        raise found
    return found
