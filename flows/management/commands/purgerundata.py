"""``manage.py purgerundata --older-than 7d [--dry-run]``: remove old runs' flow data.

Walks the run folders of the flow-data storage (``runs/<run id>/``) and removes those of runs
that finished before the cutoff, and of runs that no longer exist. Never touched: active runs
(queued or running), and runs whose outputs a kept run reuses (a rerun from a node reads its
upstream outputs from the earlier run's folder). Run records stay in the database.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from flows.engine.handoff import INLINE_PREFIX, INLINE_PURGED, delete_run_data, flow_data_storage
from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` -> a timedelta; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not an age: use a number and a unit, e.g. 12h, 7d, 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def stored_run_ids() -> list[str]:
    try:
        folders, _files = flow_data_storage().listdir("runs")
    except FileNotFoundError:
        return []
    return [name.rstrip("/") for name in folders if _is_uuid(name.rstrip("/"))]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def reused_run_ids(purgeable: set[str]) -> set[str]:
    """Runs whose folders hold outputs that a run we keep still points at."""
    refs = (
        NodeRun.objects.filter(reused_from__isnull=False)
        .exclude(run_id__in=purgeable)
        .values_list("output_ref", flat=True)
    )
    return {ref.split("/")[1] for ref in refs if ref.startswith("runs/") and ref.count("/") >= 2}


def purge_plan(older_than: timedelta) -> tuple[list[str], int]:
    """The run folders to remove, and how many of them belong to no run record."""
    cutoff = timezone.now() - older_than
    stored = stored_run_ids()
    runs = {
        str(run_id): (status, finished_at)
        for run_id, status, finished_at in FlowRun.objects.filter(id__in=stored).values_list(
            "id", "status", "finished_at"
        )
    }
    purgeable = {
        run_id
        for run_id in stored
        if run_id not in runs
        or (
            runs[run_id][0] not in ACTIVE_RUN_STATUSES
            and runs[run_id][1] is not None
            and runs[run_id][1] < cutoff
        )
    }
    purgeable -= reused_run_ids(purgeable)
    orphans = sum(1 for run_id in purgeable if run_id not in runs)
    return sorted(purgeable), orphans


def inline_outputs(older_than: timedelta) -> Any:
    """The node runs of runs finished before the cutoff that still carry an inline output."""
    return (
        NodeRun.objects.filter(
            run__finished_at__lt=timezone.now() - older_than,
            output_ref__startswith=INLINE_PREFIX,
        )
        .exclude(run__status__in=ACTIVE_RUN_STATUSES)
        .exclude(output_ref=INLINE_PURGED)
    )


class Command(BaseCommand):
    help = "Remove the flow data of runs that finished before --older-than (never active runs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 12h, 7d, 2w")
        parser.add_argument("--dry-run", action="store_true", help="list, remove nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            older_than = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than {exc}") from None
        run_ids, orphans = purge_plan(older_than)
        inline = inline_outputs(older_than)
        if options["dry_run"]:
            for run_id in run_ids:
                self.stdout.write(f"would remove runs/{run_id}/")
            self.stdout.write(
                f"{len(run_ids)} runs' data would be removed ({orphans} without a run), "
                f"{inline.count()} inline outputs cleared"
            )
            return
        objects = sum(delete_run_data(run_id) for run_id in run_ids)
        cleared = inline.update(output_ref=INLINE_PURGED)
        self.stdout.write(
            f"removed {objects} objects of {len(run_ids)} runs ({orphans} without a run record), "
            f"cleared {cleared} inline outputs"
        )
