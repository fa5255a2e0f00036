"""The admin shows "Flow schedules", not django-celery-beat's own models."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from flows.models import Flow
from scheduling.models import FlowSchedule
from tests.scheduling.conftest import make_schedule

pytestmark = pytest.mark.django_db

BEAT_MODELS = ("Clocked", "Crontabs", "Intervals", "Periodic tasks", "Solar events")


def test_the_index_and_sidebar_show_flow_schedules_only(admin_client: Client) -> None:
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Flow schedules" in html
    for name in BEAT_MODELS:
        assert f">{name}<" not in html, name
    assert "Periodic Tasks" not in html  # the app's own heading
    page = admin_client.get(reverse("admin:flows_flow_changelist")).content.decode()
    assert "Periodic tasks" not in page  # the sidebar


def test_a_schedules_beat_entry_still_opens(admin_client: Client, flow: Flow) -> None:
    schedule: FlowSchedule = make_schedule(flow, kind="interval", every_seconds=3600)
    page = admin_client.get(reverse("admin:scheduling_flowschedule_change", args=[schedule.pk]))
    task = schedule.periodic_task
    assert task is not None
    url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    assert url in page.content.decode()
    assert admin_client.get(url).status_code == 200
