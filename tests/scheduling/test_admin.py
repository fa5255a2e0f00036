"""The admin: create a cron schedule, see next fire times, errors on the field; the Flow inline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django_celery_beat.models import PeriodicTask

from flows.models import Flow
from scheduling.admin import FlowScheduleInline
from scheduling.models import FlowSchedule
from tests.scheduling.conftest import make_schedule

pytestmark = pytest.mark.django_db
ADD_URL = "/admin/scheduling/flowschedule/add/"


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.test", "pw"))
    return client


def form(flow: Flow, **overrides: str) -> dict[str, str]:
    data = {
        "flow": str(flow.pk),
        "description": "",
        "enabled": "on",
        "kind": "cron",
        "cron": "0 6 * * 1-5",
        "timezone": "Europe/Madrid",
        "every_seconds": "",
        "at_0": "",
        "at_1": "",
        "params": "{}",
        "overlap": "skip",
        "max_active_runs": "1",
        "start_at_0": "",
        "start_at_1": "",
        "end_at_0": "",
        "end_at_1": "",
    }
    data.update(overrides)
    return data


@time_machine.travel(datetime(2025, 6, 2, 3, 0, tzinfo=UTC), tick=False)
def test_a_cron_schedule_created_in_the_admin_shows_its_next_fire_times(
    admin_client: Client, flow: Flow
) -> None:
    response = admin_client.post(ADD_URL, form(flow, params='{"min_id": 3}'))
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = FlowSchedule.objects.get()
    assert schedule.params == {"min_id": 3}
    assert PeriodicTask.objects.get(flow_schedule=schedule).crontab.timezone is not None
    page = admin_client.get(
        f"/admin/scheduling/flowschedule/{schedule.pk}/change/"
    ).content.decode()
    assert "2025-06-02 04:00:00 UTC (06:00 CEST Europe/Madrid)" in page
    assert "2025-06-03 04:00:00 UTC (06:00 CEST Europe/Madrid)" in page
    listing = admin_client.get("/admin/scheduling/flowschedule/").content.decode()
    assert "cron 0 6 * * 1-5 (Europe/Madrid)" in listing
    assert "2025-06-02 04:00:00 UTC" in listing


def test_a_bad_cron_is_reported_on_its_field_and_nothing_is_saved(
    admin_client: Client, flow: Flow
) -> None:
    response = admin_client.post(ADD_URL, form(flow, cron="61 * * * *"))
    assert response.status_code == 200
    assert "cron.minute: 61 is out of range 0-59" in response.content.decode()
    assert not FlowSchedule.objects.exists() and not PeriodicTask.objects.exists()


def test_disable_action_disables_beat_entries(admin_client: Client, flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    admin_client.post(
        "/admin/scheduling/flowschedule/",
        {"action": "disable_schedules", "_selected_action": [str(schedule.pk)]},
    )
    assert not PeriodicTask.objects.get(flow_schedule=schedule).enabled


def test_the_inline_edits_schedules_on_a_flow_admin(flow: Flow) -> None:
    class FlowAdmin(admin.ModelAdmin):
        inlines = [FlowScheduleInline]

    make_schedule(flow, kind="cron", cron="*/5 * * * *")
    site = admin.AdminSite(name="inline-test")
    model_admin = FlowAdmin(Flow, site)
    request = RequestFactory().get("/")
    request.user = User.objects.create_superuser("boss", "boss@example.test", "pw")
    [formset, *_] = model_admin.get_formsets_with_inlines(request, flow)
    formset_class, inline = formset
    prefix = formset_class.get_default_prefix()
    schedule = FlowSchedule.objects.get()
    data: dict[str, Any] = {
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "1",
        f"{prefix}-0-id": str(schedule.pk),
        f"{prefix}-0-flow": str(flow.pk),
        f"{prefix}-0-kind": "cron",
        f"{prefix}-0-cron": "*/10 * * * *",
        f"{prefix}-0-timezone": "UTC",
        f"{prefix}-0-overlap": "skip",
        f"{prefix}-0-max_active_runs": "1",
        f"{prefix}-0-enabled": "on",
    }
    bound = formset_class(data, instance=flow, prefix=prefix)
    assert bound.is_valid(), bound.errors
    bound.save()
    assert PeriodicTask.objects.get(flow_schedule=schedule).crontab.minute == "0,10,20,30,40,50"
    assert "next_fire" in inline.readonly_fields
