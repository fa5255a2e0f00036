"""Start a trigger's run once per event.

``fire`` records the event and starts its run in one transaction; the unique (trigger, key)
constraint makes a second delivery of the same event roll back whole and find the run the
first one started, whichever process it came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from flows.models import FlowRun
from flows.services import start_run
from scheduling.triggers.models import FlowTrigger, TriggerEvent

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
) -> Fired:
    """Start the run of event ``key`` of ``trigger`` unless one was started for it already.

    Raises what ``start_run`` raises (``AccessDenied`` when the trigger's owner may no longer
    run the flow, ``FlowValidationError``, ``DispatchError``); nothing is recorded then.
    """
    existing = _existing(trigger, key)
    if existing is not None:
        return Fired(existing.run, False)
    try:
        with transaction.atomic():
            event = TriggerEvent.objects.create(trigger=trigger, key=key, details=details or {})
            run = start_run(
                trigger.flow,
                params={**trigger.params, **(params or {})},
                trigger=trigger_type,
                interval_start=interval[0],
                interval_end=interval[1],
                user=trigger.owner,
                payload=payload,
            )
            event.run = run
            event.save(update_fields=["run"])
    except IntegrityError:
        existing = _existing(trigger, key)
        if existing is None:
            raise
        return Fired(existing.run, False)
    logger.info("trigger %s: event %s started run %s", trigger.pk, key[:80], run.id)
    return Fired(run, True)


def _existing(trigger: FlowTrigger, key: str) -> TriggerEvent | None:
    return TriggerEvent.objects.select_related("run").filter(trigger=trigger, key=key).first()
