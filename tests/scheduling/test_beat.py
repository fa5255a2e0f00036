"""The guarded scheduler in-process: the Redis lease, and what it loads (nothing is sent here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from flowplatform.celery import app as celery_app
from flows.models import Flow
from scheduling.beat import DRAIN_ENTRY, FlowScheduleEntry, GuardedScheduler
from scheduling.leader import LeaderLease
from tests.conftest import wait_until
from tests.scheduling.conftest import make_schedule


@pytest.fixture
def lease_key() -> Iterator[str]:
    key = f"test-lease-{uuid.uuid4().hex[:8]}"
    yield key
    LeaderLease(settings.CELERY_BROKER_URL, key, 1).client.delete(key)


def test_one_lease_holder_and_a_takeover_when_it_stops_renewing(lease_key: str) -> None:
    first = LeaderLease(settings.CELERY_BROKER_URL, lease_key, 1)
    second = LeaderLease(settings.CELERY_BROKER_URL, lease_key, 1)
    assert first.hold()
    assert not second.hold()
    # first stops renewing (as if dead): second takes over once the TTL passes
    wait_until(second.hold, timeout=3, interval=0.1, message="no takeover after the TTL")
    first._renew_at = 0  # its next hold() must renew, and finds the lease gone
    assert not first.hold()


def test_a_released_lease_is_taken_at_once(lease_key: str) -> None:
    first = LeaderLease(settings.CELERY_BROKER_URL, lease_key, 30)
    second = LeaderLease(settings.CELERY_BROKER_URL, lease_key, 30)
    assert first.hold()
    first.release()
    assert second.hold()


@pytest.mark.django_db(transaction=True)  # beat commits and closes connections itself
def test_only_the_lease_holder_ticks_and_flow_schedules_get_their_own_timing(
    flow: Flow, lease_key: str
) -> None:
    yearly = make_schedule(flow, kind="cron", cron="0 0 1 1 *")
    make_schedule(flow, kind="interval", every_seconds=3600, enabled=False)
    with override_settings(FLOWPLATFORM_BEAT_LOCK_KEY=lease_key, FLOWPLATFORM_BEAT_LOCK_TTL_S=30):
        active = GuardedScheduler(app=celery_app)
        standby = GuardedScheduler(app=celery_app)
    try:
        assert active.tick() > 0  # nothing due: it sleeps
        assert standby.tick() == standby._lease.retry_interval  # type: ignore[union-attr]
        assert active._leading and not standby._leading
        entries = active.schedule
        entry = entries[f"flow schedule {yearly.pk}"]
        assert isinstance(entry, FlowScheduleEntry)
        assert entry.timetable == yearly.timetable()
        assert f"flow schedule {yearly.pk + 1}" not in entries  # disabled
        assert DRAIN_ENTRY in entries
    finally:
        active.close()
        standby.close()


@pytest.mark.django_db(transaction=True)
def test_edits_reach_a_running_scheduler_without_reloading_every_entry(
    flow: Flow, lease_key: str
) -> None:
    edited = make_schedule(flow, kind="interval", every_seconds=3600)
    disabled = make_schedule(flow, kind="interval", every_seconds=7200)
    with override_settings(FLOWPLATFORM_BEAT_LOCK_KEY=lease_key):
        scheduler = GuardedScheduler(app=celery_app)
    try:
        scheduler.tick()
        full_read_at = scheduler._full_read_at

        def entries() -> dict[str, object]:
            scheduler._last_change_check = 0  # look for edits now, not within the second
            return scheduler.schedule

        added = make_schedule(flow, kind="cron", cron="0 0 1 1 *")
        edited.every_seconds = 1800
        edited.save()
        disabled.enabled = False
        disabled.save()
        current = entries()
        assert current[f"flow schedule {added.pk}"].timetable == added.timetable()  # type: ignore[attr-defined]
        assert current[f"flow schedule {edited.pk}"].timetable == edited.timetable()  # type: ignore[attr-defined]
        assert f"flow schedule {disabled.pk}" not in current
        edited.delete()
        assert f"flow schedule {edited.pk}" not in entries()
        assert scheduler._full_read_at == full_read_at  # only the changed rows were read
        assert not scheduler.heap_built  # and the heap is rebuilt on the next tick
    finally:
        scheduler.close()
