"""``manage.py schedules`` and ``manage.py backfill``."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from flows import transitions
from flows.models import Flow, FlowRun
from scheduling.firing import drain_waiting
from scheduling.models import FlowSchedule
from tests.scheduling.conftest import make_schedule

pytestmark = pytest.mark.django_db


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def intervals(schedule: FlowSchedule) -> list[tuple[datetime, datetime]]:
    return list(
        schedule.scheduled_runs.order_by("interval_start").values_list(
            "interval_start", "interval_end"
        )
    )


@time_machine.travel(utc(2025, 6, 2, 3, 59, 30), tick=False)
def test_schedules_lists_next_fire_times(flow: Flow) -> None:
    make_schedule(flow, kind="cron", cron="0 6 * * 1-5", timezone="Europe/Madrid")
    make_schedule(flow, kind="interval", every_seconds=30, enabled=False)
    lines = run("schedules").splitlines()
    assert lines[0].split() == [
        "ID",
        "FLOW",
        "SCHEDULE",
        "ENABLED",
        "OVERLAP",
        "NEXT",
        "FIRE",
        "LAST",
        "FIRED",
    ]
    assert "cron 0 6 * * 1-5 (Europe/Madrid)" in lines[1]
    assert "2025-06-02 04:00:00 UTC (06:00 CEST Europe/Madrid)" in lines[1]
    assert "every 30s" in lines[2] and " no " in lines[2]


def test_schedules_sync_repairs_missing_entries(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    PeriodicTask.objects.filter(flow_schedule=schedule).delete()
    assert "1 beat entries in sync" in run("schedules", "--sync")
    schedule.refresh_from_db()
    assert schedule.periodic_task is not None


def test_schedules_for_an_unknown_flow() -> None:
    with pytest.raises(CommandError, match="flow 'nope' has no schedules"):
        run("schedules", "--flow", "nope")


def test_backfill_creates_runs_for_each_interval_within_the_range(flow: Flow) -> None:
    schedule = make_schedule(
        flow, kind="cron", cron="0 6 * * *", timezone="Europe/Madrid", overlap="allow"
    )
    out = run(
        "backfill", flow.slug, "--from", "2025-03-28T00:00:00Z", "--to", "2025-04-01T00:00:00Z"
    )
    # 06:00 Madrid is 05:00 UTC until the 30 March switch to summer time, 04:00 after it.
    assert intervals(schedule) == [
        (utc(2025, 3, 28, 5), utc(2025, 3, 29, 5)),
        (utc(2025, 3, 29, 5), utc(2025, 3, 30, 4)),
        (utc(2025, 3, 30, 4), utc(2025, 3, 31, 4)),
    ]
    runs = FlowRun.objects.order_by("interval_start")
    assert [(r.trigger, r.interval_start, r.interval_end) for r in runs] == [
        ("backfill", s, e) for s, e in intervals(schedule)
    ]
    assert "3 intervals" in out and "3 runs started" in out
    again = run(
        "backfill", flow.slug, "--from", "2025-03-28T00:00:00Z", "--to", "2025-04-01T00:00:00Z"
    )
    assert "3 already handled" in again and FlowRun.objects.count() == 3


def test_backfill_respects_max_active_runs_then_drains_in_order(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=3600, overlap="skip")
    out = run("backfill", flow.slug, "--from", "2025-01-01", "--to", "2025-01-01T03:00:00")
    assert "1 runs started, 2 waiting for a free slot" in out
    for expected_start in (utc(2025, 1, 1, 1), utc(2025, 1, 1, 2)):
        active = FlowRun.objects.get(status="queued")
        transitions.finish_run(str(active.id), "succeeded")
        [started] = drain_waiting().started
        assert started.interval_start == expected_start
    assert schedule.scheduled_runs.filter(state="started").count() == 3


def test_backfill_dry_run_lists_intervals_and_creates_nothing(flow: Flow) -> None:
    make_schedule(flow, kind="interval", every_seconds=86400)
    out = run("backfill", flow.slug, "--from", "2025-01-01", "--to", "2025-01-03", "--dry-run")
    assert "[2025-01-01T00:00:00+00:00, 2025-01-02T00:00:00+00:00)" in out
    assert "2 intervals" in out and FlowRun.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "--from", "2025-01-01", "--to", "2025-01-02"), "flow 'nope' does not exist"),
        (
            ("paid-orders-to-crm", "--from", "yesterday", "--to", "2025-01-02"),
            "--from 'yesterday' is not an ISO 8601 time",
        ),
        (
            ("paid-orders-to-crm", "--from", "2025-01-02", "--to", "2025-01-01"),
            "--to must be after --from",
        ),
        (
            (
                "paid-orders-to-crm",
                "--from",
                "2025-01-01",
                "--to",
                "2025-01-02",
                "--schedule",
                "999",
            ),
            "has no schedule 999",
        ),
    ],
)
def test_backfill_refuses_bad_input_with_one_line(
    flow: Flow, args: tuple[str, ...], message: str
) -> None:
    make_schedule(flow, kind="interval", every_seconds=3600)
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        run("backfill", *args)


def test_backfill_needs_a_schedule_choice_when_there_are_several(flow: Flow) -> None:
    make_schedule(flow, kind="interval", every_seconds=3600)
    make_schedule(flow, kind="cron", cron="0 0 * * *")
    with pytest.raises(CommandError, match="several schedules; pick one with --schedule"):
        run("backfill", flow.slug, "--from", "2025-01-01", "--to", "2025-01-02")


def test_backfill_refuses_a_range_with_too_many_intervals(flow: Flow) -> None:
    make_schedule(flow, kind="interval", every_seconds=1)
    with pytest.raises(CommandError, match="more than 10000 intervals"):
        run("backfill", flow.slug, "--from", "2025-01-01", "--to", "2025-01-02")
