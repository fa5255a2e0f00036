"""Start a trigger's run once per event.

``fire`` records the event and starts its run in one transaction; the unique (trigger, key)
constraint makes a second delivery of the same event roll back whole and find the run the
first one started, whichever process it came from. ``fire_events`` does the same for several
events that start one run together (the files of a batch): all are recorded, or none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from flows.models import FlowRun
from flows.services import start_run
from scheduling.triggers.models import AfterSuccess, FlowTrigger, TriggerEvent

logger = logging.getLogger("flowplatform.triggers")


@dataclass
class Fired:
    """The run of an event, and whether this call started it (False: an earlier one did)."""

    run: FlowRun | None
    started: bool


def fire(
    trigger: FlowTrigger,
    key: str,
    *,
    trigger_type: str,
    payload: Any = None,
    params: dict[str, Any] | None = None,
    interval: tuple[datetime | None, datetime | None] = (None, None),
    details: dict[str, Any] | None = None,
    after_success: str = AfterSuccess.NONE,
) -> Fired:
    """Start the run of event ``key`` of ``trigger`` unless one was started for it already.

    Raises what ``start_run`` raises (``AccessDenied`` when the trigger's owner may no longer
    run the flow, ``FlowValidationError``, ``DispatchError``); nothing is recorded then.
    ``after_success``: the event's file waits for its run to move or tag it (``PENDING``).
    """
    return fire_events(
        trigger,
        [(key, details or {})],
        trigger_type=trigger_type,
        payload=payload,
        params=params,
        interval=interval,
        after_success=after_success,
    )


def fire_events(
    trigger: FlowTrigger,
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    trigger_type: str,
    payload: Any = None,
    params: dict[str, Any] | None = None,
    interval: tuple[datetime | None, datetime | None] = (None, None),
    after_success: str = AfterSuccess.NONE,
) -> Fired:
    """Start one run for ``events`` (``(key, details)`` pairs), recording each with it; when
    one was recorded already (by another process), nothing is: the result names its run."""
    keys = [key for key, _ in events]
    existing = _existing(trigger, keys)
    if existing is not None:
        return Fired(existing.run, False)
    try:
        with transaction.atomic():
            recorded = TriggerEvent.objects.bulk_create(
                TriggerEvent(trigger=trigger, key=key, details=details, after_success=after_success)
                for key, details in events
            )
            run = start_run(
                trigger.flow,
                params={**trigger.params, **(params or {})},
                trigger=trigger_type,
                interval_start=interval[0],
                interval_end=interval[1],
                user=trigger.owner,
                payload=payload,
            )
            TriggerEvent.objects.filter(pk__in=[e.pk for e in recorded]).update(run=run)
    except IntegrityError:
        existing = _existing(trigger, keys)
        if existing is None:
            raise
        return Fired(existing.run, False)
    logger.info("trigger %s: event %s started run %s", trigger.pk, keys[0][:80], run.id)
    return Fired(run, True)


def _existing(trigger: FlowTrigger, keys: list[str]) -> TriggerEvent | None:
    return TriggerEvent.objects.select_related("run").filter(trigger=trigger, key__in=keys).first()
