"""Real ``celery beat`` processes and a real worker: runs appear on time, once per interval."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from flows.models import Flow, FlowRun
from scheduling.models import FlowSchedule, ScheduledRun
from tests.conftest import WorkerProcess, wait_until
from tests.scheduling.conftest import BeatProcess, make_schedule

pytestmark = pytest.mark.worker

Beats = Callable[..., BeatProcess]


def runs(schedule: FlowSchedule, **filters: Any) -> list[FlowRun]:
    return list(
        FlowRun.objects.filter(scheduled_run__schedule=schedule, **filters).order_by(
            "interval_start"
        )
    )


def entry(schedule: FlowSchedule) -> str:
    return f"flow schedule {schedule.pk}"


def holds_for(predicate: Callable[[], bool], seconds: float) -> bool:
    """True when ``predicate`` stays true for ``seconds`` (for things that must not happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.1)
    return True


def assert_one_run_per_interval(schedule: FlowSchedule) -> None:
    starts = list(schedule.scheduled_runs.values_list("interval_start", flat=True))
    assert len(starts) == len(set(starts))
    assert FlowRun.objects.filter(scheduled_run__schedule=schedule).count() == len(
        schedule.scheduled_runs.exclude(run=None)
    )
    assert FlowRun.objects.filter(flow=schedule.flow).count() == len(
        schedule.scheduled_runs.exclude(run=None)
    )


def test_an_every_2s_schedule_fires_runs_that_succeed_with_their_interval(
    worker: WorkerProcess, tick_flow: Flow, beats: Beats
) -> None:
    schedule = make_schedule(tick_flow, kind="interval", every_seconds=2, overlap="allow")
    beats().wait_started()
    done = wait_until(
        lambda: len(runs(schedule, status="succeeded")) >= 3 and runs(schedule, status="succeeded"),
        timeout=40,
        interval=0.2,
        message=f"fewer than 3 scheduled runs succeeded; see {worker.log_path}",
    )
    for run in done:
        assert run.trigger == "schedule"
        assert run.interval_end - run.interval_start == timedelta(seconds=2)
        assert run.interval_end.timestamp() % 2 == 0  # aligned on the epoch
        # On time: beat wakes at least every second; the rest is the run's creation (a slow
        # CI machine measured 1.7 s).
        assert run.created_at - run.interval_end < timedelta(seconds=2.5)
        # The query returns its row only when both interval ends were bound, 2 s apart.
        assert run.node_runs.get().rows_out == 1
    ends = [r.interval_end for r in done]
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(ends))
    assert_one_run_per_interval(schedule)


def test_two_beats_sending_the_same_intervals_still_make_one_run_per_interval(
    worker: WorkerProcess, tick_flow: Flow, beats: Beats
) -> None:
    schedule = make_schedule(tick_flow, kind="interval", every_seconds=2, overlap="allow")
    # Separate leases: both beats are active and both send every interval.
    first, second = beats(lease_key="lease-a").wait_started(), beats(lease_key="lease-b")
    second.wait_started()
    wait_until(
        lambda: first.sent(entry(schedule)) >= 4 and second.sent(entry(schedule)) >= 4,
        timeout=40,
        interval=0.2,
        message="both beats should send",
    )
    first.stop()
    second.stop()
    wait_until(
        lambda: not runs(schedule, status__in=["queued", "running"]),
        timeout=20,
        message="runs did not finish",
    )
    assert_one_run_per_interval(schedule)
    handled = schedule.scheduled_runs.count()
    assert 4 <= handled < first.sent(entry(schedule)) + second.sent(entry(schedule))


def test_a_standby_beat_takes_over_when_the_active_one_dies(
    worker: WorkerProcess, tick_flow: Flow, beats: Beats
) -> None:
    schedule = make_schedule(tick_flow, kind="interval", every_seconds=2, overlap="allow")
    active = beats(lease_ttl_s=2).wait_started()
    wait_until(active.leading, timeout=10, message="the first beat did not take the lease")
    standby = beats(lease_ttl_s=2).wait_started()
    wait_until(lambda: len(runs(schedule)) >= 2, timeout=20, message="no runs")
    assert not standby.leading() and standby.sent(entry(schedule)) == 0
    active.kill()
    killed_at = timezone.now()
    wait_until(standby.leading, timeout=10, message="the standby did not take over")
    wait_until(
        lambda: len(runs(schedule, interval_end__gt=killed_at)) >= 2,
        timeout=20,
        message="no runs after the takeover",
    )
    assert standby.sent(entry(schedule)) >= 2
    assert_one_run_per_interval(schedule)


def test_a_one_off_fires_once_even_if_beat_restarts_right_after(
    worker: WorkerProcess, tick_flow: Flow, beats: Beats
) -> None:
    first = beats().wait_started()
    wait_until(first.leading, timeout=10, message="beat did not take the lease")
    schedule = make_schedule(tick_flow, kind="one_off", at=timezone.now() + timedelta(seconds=2))
    wait_until(lambda: first.sent(entry(schedule)) == 1, timeout=15, message="one-off not sent")
    first.kill()  # right after sending: its own records may not be written yet
    second = beats().wait_started()
    wait_until(second.leading, timeout=10, message="the new beat did not take the lease")
    [record] = wait_until(
        lambda: list(ScheduledRun.objects.filter(schedule=schedule, run__status="succeeded")),
        timeout=20,
        message="the one-off run did not succeed",
    )
    assert record.interval_start == record.interval_end == schedule.at
    assert holds_for(lambda: ScheduledRun.objects.filter(schedule=schedule).count() == 1, 3)
    assert FlowRun.objects.count() == 1


def test_overlap_skip_skips_while_a_slow_run_is_active(
    worker: WorkerProcess, tick_flow: Flow, beats: Beats
) -> None:
    schedule = make_schedule(
        tick_flow, kind="interval", every_seconds=2, overlap="skip", params={"sleep": 4}
    )
    beats().wait_started()
    wait_until(
        lambda: len(runs(schedule, status="succeeded")) >= 2,
        timeout=40,
        interval=0.2,
        message="two slow runs did not succeed",
    )
    done = runs(schedule, status="succeeded")
    skipped = list(schedule.scheduled_runs.filter(state="skipped"))
    assert len(skipped) >= 1
    first = done[0]
    assert first.finished_at is not None and first.started_at is not None
    assert any(first.created_at < s.created_at < first.finished_at for s in skipped)
    assert done[1].created_at >= first.finished_at  # never two at once
    assert first.finished_at - first.started_at >= timedelta(seconds=4)


def test_an_edit_is_picked_up_without_restarting_beat(
    worker: WorkerProcess, tick_flow: Flow, beats: Beats
) -> None:
    schedule = make_schedule(tick_flow, kind="interval", every_seconds=3600, overlap="allow")
    beat = beats().wait_started()
    wait_until(beat.leading, timeout=10, message="beat did not take the lease")
    edited_at = timezone.now()
    schedule.every_seconds = 2
    schedule.save()
    wait_until(
        lambda: len(runs(schedule, status="succeeded")) >= 2,
        timeout=20,
        interval=0.2,
        message="the edited schedule did not fire",
    )
    first = runs(schedule)[0]
    assert first.interval_end - first.interval_start == timedelta(seconds=2)
    assert first.created_at - edited_at < timedelta(seconds=5)
    assert "Schedule changed" in beat.log()
