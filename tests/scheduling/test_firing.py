"""Firing with a fixed clock: one run per interval, the right data interval, overlap, catch-up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django_celery_beat.models import PeriodicTask

from flowplatform.celery import app as celery_app
from flows import transitions
from flows.models import Flow, FlowNode, FlowRun
from scheduling.beat import FlowScheduleEntry
from scheduling.firing import drain_waiting, fire_schedule
from scheduling.models import FlowSchedule, ScheduledRun
from scheduling.tasks import fire
from tests.scheduling.conftest import make_schedule, moments

pytestmark = pytest.mark.django_db


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(utc(2025, 6, 2, 3, 0), tick=False) as traveller:
        yield traveller


def runs_of(schedule: FlowSchedule) -> list[FlowRun]:
    return list(FlowRun.objects.filter(scheduled_run__schedule=schedule).order_by("interval_start"))


def test_a_firing_runs_the_interval_that_just_ended(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    schedule = make_schedule(
        flow, kind="cron", cron="0 6 * * 1-5", timezone="Europe/Madrid", params={"min_id": 7}
    )
    clock.move_to(utc(2025, 6, 2, 4, 0, 0, 300000))  # Monday 06:00:00.3 in Madrid
    outcome = fire_schedule(schedule.pk)
    [record] = outcome.started
    run = record.run
    assert run is not None
    assert (run.interval_start, run.interval_end) == (utc(2025, 5, 30, 4), utc(2025, 6, 2, 4))
    assert run.trigger == "schedule"
    assert run.params == {"min_id": 7}
    schedule.refresh_from_db()
    assert schedule.last_fired_at == utc(2025, 6, 2, 4)


def test_firing_the_same_interval_again_does_nothing(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    clock.move_to(utc(2025, 6, 2, 3, 1, 0, 5000))
    first = fire_schedule(schedule.pk, due=utc(2025, 6, 2, 3, 1))
    again = fire(schedule.pk, due="2025-06-02T03:01:00+00:00")  # a redelivered message
    plain = fire_schedule(schedule.pk)  # a plain DatabaseScheduler's message (no due)
    assert len(first.started) == 1 and again == 0 and plain.duplicates
    assert ScheduledRun.objects.count() == 1 and FlowRun.objects.count() == 1


def test_the_database_refuses_a_second_record_of_an_interval(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    moment = utc(2025, 1, 1)
    ScheduledRun.objects.create(schedule=schedule, interval_start=moment, interval_end=moment)
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduledRun.objects.create(schedule=schedule, interval_start=moment, interval_end=moment)


def simulate_beat(schedule: FlowSchedule, clock: time_machine.Coordinates, until: datetime) -> None:
    """Drive the guarded scheduler's entry like beat does, on the fixed clock: sleep as long as
    beat would (celery wakes 10 ms early), send when due (here: run the fire task in-process)."""
    model = PeriodicTask.objects.select_related("flow_schedule").get(flow_schedule=schedule)
    entry = FlowScheduleEntry(model, app=celery_app)
    while datetime.now(UTC) < until:
        state = entry.is_due()
        if state.is_due:
            fire(**entry.kwargs)
            entry = next(entry)
        else:
            clock.shift(timedelta(seconds=max(state.next - 0.010, 0.000001)))


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (  # spring forward: 02:30 does not exist on 03-09; it fires when the clocks jump
            utc(2025, 3, 7, 12),
            utc(2025, 3, 11),
            [utc(2025, 3, 8, 7, 30), utc(2025, 3, 9, 7, 0), utc(2025, 3, 10, 6, 30)],
        ),
        (  # fall back: 01:00-01:59 repeats on 11-02; 02:30 happens once, in EST
            utc(2025, 10, 31, 12),
            utc(2025, 11, 4),
            [utc(2025, 11, 1, 6, 30), utc(2025, 11, 2, 7, 30), utc(2025, 11, 3, 7, 30)],
        ),
    ],
)
def test_a_0230_new_york_cron_fires_once_a_day_at_the_right_instant_across_dst(
    flow: Flow, start: datetime, end: datetime, expected: list[datetime]
) -> None:
    with time_machine.travel(start, tick=False) as clock:
        schedule = make_schedule(
            flow, kind="cron", cron="30 2 * * *", timezone="America/New_York", overlap="allow"
        )
        simulate_beat(schedule, clock, end)
    runs = runs_of(schedule)
    assert moments([r.interval_end for r in runs]) == moments(expected)
    assert [r.created_at for r in runs] == expected  # created at the fire instant itself
    assert [r.interval_start for r in runs[1:]] == expected[:-1]  # contiguous intervals


def test_a_0130_new_york_cron_fires_only_at_the_first_of_the_two_0130s(flow: Flow) -> None:
    with time_machine.travel(utc(2025, 11, 1, 12), tick=False) as clock:
        schedule = make_schedule(flow, kind="cron", cron="30 1 * * *", timezone="America/New_York")
        simulate_beat(schedule, clock, utc(2025, 11, 3))
    assert [r.interval_end for r in runs_of(schedule)] == [utc(2025, 11, 2, 5, 30)]


def test_catch_up_runs_missed_intervals_in_order(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    clock.move_to(utc(2025, 6, 2, 0, 0, 10))
    schedule = make_schedule(
        flow, kind="interval", every_seconds=3600, catchup=True, overlap="allow"
    )
    clock.move_to(utc(2025, 6, 2, 5, 30))  # beat and workers were down since just after midnight
    fire_schedule(schedule.pk)
    runs = sorted(runs_of(schedule), key=lambda r: r.created_at)
    assert [r.interval_end for r in runs] == [utc(2025, 6, 2, h) for h in (1, 2, 3, 4, 5)]
    assert [r.interval_start for r in runs] == [utc(2025, 6, 2, h) for h in (0, 1, 2, 3, 4)]


def test_without_catch_up_only_the_latest_interval_runs(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    clock.move_to(utc(2025, 6, 2, 0, 0, 10))
    schedule = make_schedule(flow, kind="interval", every_seconds=3600)
    clock.move_to(utc(2025, 6, 2, 5, 30))
    fire_schedule(schedule.pk)
    assert [r.interval_end for r in runs_of(schedule)] == [utc(2025, 6, 2, 5)]


def test_overlap_skip_skips_while_a_run_is_active(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60, overlap="skip")
    clock.move_to(utc(2025, 6, 2, 3, 1))
    [first] = fire_schedule(schedule.pk).started
    clock.move_to(utc(2025, 6, 2, 3, 2))
    skipped = fire_schedule(schedule.pk)
    assert len(skipped.skipped) == 1 and not skipped.started
    transitions.finish_run(str(first.run_id), "succeeded")
    clock.move_to(utc(2025, 6, 2, 3, 3))
    assert len(fire_schedule(schedule.pk).started) == 1
    states = list(
        schedule.scheduled_runs.order_by("interval_start").values_list("state", flat=True)
    )
    assert states == ["started", "skipped", "started"]


def test_overlap_queue_starts_waiting_intervals_in_order_when_a_slot_frees(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60, overlap="queue")
    clock.move_to(utc(2025, 6, 2, 3, 1))
    [first] = fire_schedule(schedule.pk).started
    for minute in (2, 3):
        clock.move_to(utc(2025, 6, 2, 3, minute))
        assert len(fire_schedule(schedule.pk).waiting) == 1
    assert not drain_waiting().started  # still busy
    transitions.finish_run(str(first.run_id), "failed", "boom")
    [second] = drain_waiting().started
    assert second.interval_end == utc(2025, 6, 2, 3, 2)
    assert FlowRun.objects.filter(status__in=["queued", "running"]).count() == 1


def test_overlap_allow_and_max_active_runs(flow: Flow, clock: time_machine.Coordinates) -> None:
    allow = make_schedule(flow, kind="interval", every_seconds=60, overlap="allow")
    two = make_schedule(flow, kind="interval", every_seconds=120, overlap="skip", max_active_runs=2)
    for minute in (2, 4, 6):
        clock.move_to(utc(2025, 6, 2, 3, minute))
        fire_schedule(allow.pk)
        fire_schedule(two.pk)
    assert len(runs_of(allow)) == 3
    assert len(runs_of(two)) == 2
    assert two.scheduled_runs.filter(state="skipped").count() == 1


def test_a_disabled_or_deleted_schedule_does_not_fire(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60, enabled=False)
    clock.move_to(utc(2025, 6, 2, 3, 5))
    assert not fire_schedule(schedule.pk).started
    schedule_id = schedule.pk
    schedule.delete()
    assert not fire_schedule(schedule_id).started
    assert FlowRun.objects.count() == 0


def test_an_edit_restarts_the_count_so_catch_up_never_reaches_before_it(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    schedule = make_schedule(
        flow, kind="interval", every_seconds=3600, catchup=True, overlap="queue"
    )
    clock.move_to(utc(2025, 6, 2, 9, 30))
    schedule.every_seconds = 600
    schedule.save()
    fire_schedule(schedule.pk, due=utc(2025, 6, 2, 9))  # sent before the edit: not fired
    clock.move_to(utc(2025, 6, 2, 9, 50, 1))
    fire_schedule(schedule.pk)
    ends = sorted(r.interval_end for r in schedule.scheduled_runs.all())
    assert ends == [utc(2025, 6, 2, 9, 40), utc(2025, 6, 2, 9, 50)]


def test_an_invalid_flow_records_the_interval_as_failed(
    flow: Flow, clock: time_machine.Coordinates
) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    FlowNode.objects.filter(flow=flow, key="paid").update(
        config={"conditions": [{"field": "status", "op": "eqq", "value": "paid"}]}
    )
    clock.move_to(utc(2025, 6, 2, 3, 1))
    [record] = fire_schedule(schedule.pk).failed
    assert "op" in record.error and record.run is None
    assert not fire_schedule(schedule.pk).failed  # the interval is handled, not retried


def test_a_one_off_fires_once_over_the_instant(flow: Flow, clock: time_machine.Coordinates) -> None:
    at = utc(2025, 6, 2, 3, 30)
    schedule = make_schedule(flow, kind="one_off", at=at)
    assert not fire_schedule(schedule.pk).started  # not yet
    clock.move_to(utc(2025, 6, 2, 3, 30, 1))
    [record] = fire_schedule(schedule.pk).started
    assert (record.interval_start, record.interval_end) == (at, at)
    assert fire_schedule(schedule.pk).duplicates
    schedule.refresh_from_db()
    assert schedule.next_fire_at() is None
