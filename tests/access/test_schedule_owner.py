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
