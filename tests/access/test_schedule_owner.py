"""The schedule's owner: whoever last made a change that needed run; firings run as them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from flows.models import Flow, FlowAccess
from scheduling.firing import handle_interval
from scheduling.models import FlowSchedule, ScheduledRunState

pytestmark = pytest.mark.django_db
START = datetime(2026, 3, 1, tzinfo=UTC)


def fire(schedule: FlowSchedule, minutes: int) -> list[str]:
    start = START + timedelta(minutes=minutes)
    outcome = handle_interval(schedule, start, start + timedelta(minutes=1), "schedule")
    return [r.state for r in outcome.started + outcome.failed]


def test_the_api_records_the_owner_and_a_disable_keeps_it(
    apis: dict[str, APIClient], actors: dict[str, User], alpha: Flow
) -> None:
    created = apis["member"].post(
        "/api/v1/schedules/", {"flow": "alpha", "every": "1m"}, format="json"
    )
    schedule = FlowSchedule.objects.get(pk=created.json()["id"])
    assert schedule.owner == actors["member"]
    url = f"/api/v1/schedules/{schedule.pk}/"
    assert apis["editor"].patch(url, {"enabled": False}, format="json").status_code == 200
    schedule.refresh_from_db()
    assert schedule.owner == actors["member"]


def test_a_firing_runs_as_the_owner_and_stops_when_the_owner_loses_run(
    actors: dict[str, User], alpha: Flow
) -> None:
    schedule = FlowSchedule.objects.create(
        flow=alpha, kind="interval", every_seconds=60, owner=actors["member"]
    )
    assert fire(schedule, 0) == [ScheduledRunState.STARTED]
    alpha.runs.update(status="succeeded")
    FlowAccess.objects.filter(flow=alpha, group__name="team-a").update(can_run=False)
    schedule = FlowSchedule.objects.select_related("flow").get(pk=schedule.pk)
    assert fire(schedule, 1) == [ScheduledRunState.FAILED]
    record = schedule.scheduled_runs.get(state=ScheduledRunState.FAILED)
    assert record.error == "member needs the run permission on flow 'alpha' (run_flow)"
    assert alpha.runs.count() == 1


def test_a_schedule_without_owner_runs_as_the_operator(alpha: Flow) -> None:
    schedule = FlowSchedule.objects.create(flow=alpha, kind="interval", every_seconds=60)
    assert fire(schedule, 0) == [ScheduledRunState.STARTED]


def test_deleting_the_owner_disables_the_schedule_and_records_why(
    actors: dict[str, User], alpha: Flow
) -> None:
    from flowplatform.audit.models import AuditEntry

    owner = actors["member"]
    schedule = FlowSchedule.objects.create(
        flow=alpha, kind="interval", every_seconds=60, owner=owner
    )
    owner.delete()
    schedule = FlowSchedule.objects.select_related("flow").get(pk=schedule.pk)
    assert schedule.owner is None and not schedule.enabled
    assert schedule.periodic_task is not None and not schedule.periodic_task.enabled
    entry = AuditEntry.objects.filter(object_type="scheduling.flowschedule", action="change").last()
    assert entry is not None and entry.object_id == str(schedule.pk)
    assert entry.details["fields"] == ["enabled"]
    assert "owner member was deleted" in entry.details["reason"]


def test_a_schedule_whose_owner_is_gone_never_fires_as_the_operator(
    actors: dict[str, User], alpha: Flow
) -> None:
    schedule = FlowSchedule.objects.create(
        flow=alpha, kind="interval", every_seconds=60, owner=actors["member"]
    )
    # The owner disappears without the model's delete (raw SQL, a restore...) and the schedule
    # is still enabled: the firing refuses to run it as the operator.
    FlowSchedule.objects.filter(pk=schedule.pk).update(owner=None)
    schedule = FlowSchedule.objects.select_related("flow").get(pk=schedule.pk)
    assert schedule.enabled
    assert fire(schedule, 0) == [ScheduledRunState.FAILED]
    record = schedule.scheduled_runs.get()
    assert "owner was deleted" in record.error
    assert alpha.runs.count() == 0


def test_operator_schedules_stay_operator_schedules_until_a_user_takes_them(
    apis: dict[str, APIClient], actors: dict[str, User], alpha: Flow
) -> None:
    schedule = FlowSchedule.objects.create(flow=alpha, kind="interval", every_seconds=60)
    assert schedule.run_as_operator
    schedule.description = "edited"
    schedule.save()
    assert FlowSchedule.objects.get(pk=schedule.pk).run_as_operator
    url = f"/api/v1/schedules/{schedule.pk}/"
    assert apis["member"].patch(url, {"every": "2m"}, format="json").status_code == 200
    schedule.refresh_from_db()
    assert schedule.owner == actors["member"] and not schedule.run_as_operator
