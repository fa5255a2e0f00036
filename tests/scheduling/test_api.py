"""``/api/v1/schedules/``: CRUD with next fire times, errors with field paths, permissions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.models import Flow
from scheduling.models import FlowSchedule

pytestmark = pytest.mark.django_db
URL = "/api/v1/schedules/"


def token_client(username: str, *codenames: str, superuser: bool = False) -> APIClient:
    if superuser:
        user = User.objects.create_superuser(username, f"{username}@example.test", "pw")
    else:
        user = User.objects.create_user(username, f"{username}@example.test", "pw")
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(db: None) -> APIClient:
    return token_client("root", superuser=True)


def errors(response: object) -> dict[str, str]:
    return {e["path"]: e["message"] for e in response.json()["errors"]}  # type: ignore[attr-defined]


@time_machine.travel(datetime(2025, 6, 2, 3, 59, tzinfo=UTC), tick=False)
def test_create_a_cron_schedule_and_read_its_next_fire_time(api: APIClient, flow: Flow) -> None:
    response = api.post(
        URL, {"flow": flow.slug, "cron": "0 6 * * 1-5", "timezone": "Europe/Madrid"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "cron" and body["overlap"] == "skip" and body["enabled"]
    assert body["next_fire_at"] == "2025-06-02T04:00:00Z"
    schedule = FlowSchedule.objects.get(pk=body["id"])
    assert PeriodicTask.objects.get(flow_schedule=schedule).crontab.hour == "6"
    listed = api.get(URL, {"flow": flow.slug}).json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]


def test_change_switch_kind_and_delete(api: APIClient, flow: Flow) -> None:
    created = api.post(URL, {"flow": flow.slug, "every": "30s"}, format="json").json()
    assert created["every"] == "30s" and created["kind"] == "interval"
    url = f"{URL}{created['id']}/"
    changed = api.patch(url, {"kind": "cron", "cron": "*/5 * * * *"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["every"] is None and changed.json()["cron"] == "*/5 * * * *"
    assert api.patch(url, {"enabled": False}, format="json").json()["next_fire_at"] is None
    assert not PeriodicTask.objects.get(name=f"flow schedule {created['id']}").enabled
    assert api.delete(url).status_code == 204
    assert not PeriodicTask.objects.filter(task="scheduling.fire").exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"cron": "61 * * * *"}, {"cron": "cron.minute: 61 is out of range 0-59"}),
        (
            {"cron": "* * * * *", "timezone": "Mars/Olympus"},
            {"timezone": '"Mars/Olympus" is not a valid choice.'},
        ),
        (
            {"every": "soon"},
            {"every": "'soon' is not a duration such as '30s', '5m', '1h30m' or '1d'"},
        ),
        ({}, {"kind": "give kind, or exactly one of cron, every or at"}),
        ({"kind": "one_off"}, {"at": "a one-off schedule needs 'at', the time it fires"}),
        (
            {"every": "1h", "catchup": True},
            {
                "catchup": "catch-up runs every missed interval, which overlap 'skip' would drop: use overlap 'queue' or 'allow'"
            },
        ),
        (
            {"every": "1h", "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            {"end": "end must be after start"},
        ),
        (
            {"every": "1h", "max_active_runs": 0},
            {"max_active_runs": "Ensure this value is greater than or equal to 1."},
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    api: APIClient, flow: Flow, body: dict[str, object], expected: dict[str, str]
) -> None:
    response = api.post(URL, {"flow": flow.slug, **body}, format="json")
    assert response.status_code == 400
    assert errors(response) == expected
    assert not FlowSchedule.objects.exists()


def test_unknown_flow(api: APIClient, flow: Flow) -> None:
    response = api.post(URL, {"flow": "nope", "every": "1h"}, format="json")
    assert response.status_code == 400 and "flow" in errors(response)


def test_a_viewer_may_list_but_not_create(flow: Flow) -> None:
    viewer = token_client("viewer", "view_flowschedule")
    assert viewer.get(URL).status_code == 200
    assert viewer.post(URL, {"flow": flow.slug, "every": "1h"}, format="json").status_code == 403
