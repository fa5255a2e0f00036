"""Each schedule owns exactly one PeriodicTask, kept in step on create, update, enable, delete."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from flows.models import Flow
from scheduling.models import FlowSchedule
from scheduling.sync import set_enabled
from tests.scheduling.conftest import make_schedule

pytestmark = pytest.mark.django_db


def last_change() -> datetime | None:
    return PeriodicTasks.last_change()


def test_a_cron_schedule_gets_a_crontab_entry_in_its_timezone(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="cron", cron="0 6 * * mon-fri", timezone="Europe/Madrid")
    task = PeriodicTask.objects.get(flow_schedule=schedule)
    assert task.task == "scheduling.fire"
    assert json.loads(task.kwargs) == {"schedule_id": schedule.pk}
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "6", "1-5")
    assert str(task.crontab.timezone) == "Europe/Madrid"
    assert task.interval is None and task.clocked is None


def test_interval_and_one_off_entries(flow: Flow) -> None:
    every = make_schedule(flow, kind="interval", every_seconds=30)
    once = make_schedule(flow, kind="one_off", at=datetime(2027, 1, 1, tzinfo=UTC))
    assert PeriodicTask.objects.get(flow_schedule=every).interval.every == 30
    entry = PeriodicTask.objects.get(flow_schedule=once)
    assert entry.clocked.clocked_time == datetime(2027, 1, 1, tzinfo=UTC) and entry.one_off


def test_edits_reach_the_entry_and_wake_beat(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="cron", cron="*/5 * * * *")
    before = last_change()
    schedule.cron = "*/10 * * * *"
    schedule.enabled = False
    schedule.save()
    task = PeriodicTask.objects.get(flow_schedule=schedule)
    assert task.crontab.minute == "0,10,20,30,40,50" and not task.enabled
    assert last_change() > before
    assert PeriodicTask.objects.count() == 1


def test_an_edit_that_does_not_touch_the_entry_does_not_wake_beat(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    before = last_change()
    schedule.params = {"x": 1}
    schedule.save()
    assert last_change() == before


def test_a_timing_edit_moves_timing_changed_at_and_wakes_beat(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    stamp, before = schedule.timing_changed_at, last_change()
    schedule.end_at = datetime(2030, 1, 1, tzinfo=UTC)  # invisible in the PeriodicTask
    schedule.save()
    assert schedule.timing_changed_at > stamp
    assert last_change() > before


def test_an_edit_never_writes_back_a_stale_last_fired_at(flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    fired = datetime(2025, 1, 1, tzinfo=UTC)
    FlowSchedule.objects.filter(pk=schedule.pk).update(last_fired_at=fired)  # the fire task
    schedule.description = "edited in a form loaded earlier"
    schedule.save()
    schedule.refresh_from_db()
    assert schedule.last_fired_at == fired


def test_deleting_a_schedule_or_its_flow_deletes_the_entry(flow: Flow) -> None:
    first = make_schedule(flow, kind="interval", every_seconds=60)
    make_schedule(flow, kind="interval", every_seconds=120)
    before = last_change()
    first.delete()
    assert PeriodicTask.objects.filter(task="scheduling.fire").count() == 1
    assert last_change() > before
    flow.delete()
    assert not PeriodicTask.objects.filter(task="scheduling.fire").exists()


def test_bulk_enable_and_disable_update_entries_and_wake_beat(flow: Flow) -> None:
    for seconds in (60, 120, 180):
        make_schedule(flow, kind="interval", every_seconds=seconds)
    before = last_change()
    assert set_enabled(FlowSchedule.objects.filter(enabled=True), False) == 3
    assert not PeriodicTask.objects.filter(task="scheduling.fire", enabled=True).exists()
    assert last_change() > before


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"kind": "cron", "cron": "61 * * * *"}, {"cron": "cron.minute: 61 is out of range 0-59"}),
        (
            {"kind": "cron", "cron": "0 * * * *", "timezone": "Mars/Olympus"},
            {"timezone": "'Mars/Olympus' is not an IANA timezone (e.g. 'Europe/Madrid', 'UTC')"},
        ),
        (
            {"kind": "interval"},
            {"every_seconds": "an interval schedule needs 'every' (e.g. 30s, 5m, 1h)"},
        ),
        ({"kind": "one_off"}, {"at": "a one-off schedule needs 'at', the time it fires"}),
        (
            {"kind": "interval", "every_seconds": 60, "catchup": True},
            {
                "catchup": "catch-up runs every missed interval, which overlap 'skip' would drop: "
                "use overlap 'queue' or 'allow'"
            },
        ),
    ],
)
def test_invalid_schedules_are_refused_field_by_field(
    flow: Flow, fields: dict[str, object], errors: dict[str, str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        FlowSchedule(flow=flow, **fields).full_clean()
    assert {k: v[0] for k, v in caught.value.message_dict.items()} == errors
