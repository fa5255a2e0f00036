"""A schedule starts runs, so creating, changing or enabling one needs ``flows.run_flow``.

The actor is a designer: every flow and schedule model permission except ``run_flow``.
Before the rule, each of these writes made beat run the flow for them, with their params.
Disabling and deleting stay allowed with the change and delete permissions.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client, RequestFactory
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.models import Flow
from scheduling.models import FlowSchedule
from tests.scheduling.conftest import make_schedule

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

SCHEDULES = "/api/v1/schedules/"
DESIGNER_PERMS = (
    "view_flow",
    "add_flow",
    "change_flow",
    "view_flowrun",
    "view_flowschedule",
    "add_flowschedule",
    "change_flowschedule",
    "delete_flowschedule",
)


@pytest.fixture
def designer(db: None) -> User:
    user = User.objects.create_user("designer", "designer@example.test", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=DESIGNER_PERMS))
    return user


@pytest.fixture
def api(designer: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=designer).key}")
    return client


@pytest.fixture
def browser(designer: User) -> Client:
    client = Client()
    client.force_login(designer)
    return client


def refusal(response: Any) -> str:
    assert response.status_code == 403, response.content[:500]
    body = response.json()
    return " ".join([body["detail"], *(e["message"] for e in body["errors"])])


def test_creating_a_schedule_through_the_api_needs_run_flow(api: APIClient, flow: Flow) -> None:
    response = api.post(
        SCHEDULES, {"flow": flow.slug, "every": "1m", "params": {"min_id": 0}}, format="json"
    )
    assert "run permission" in refusal(response) and "run_flow" in refusal(response)
    assert not FlowSchedule.objects.exists() and not PeriodicTask.objects.exists()


def test_enabling_a_schedule_through_the_api_needs_run_flow(api: APIClient, flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60, enabled=False)
    response = api.patch(f"{SCHEDULES}{schedule.pk}/", {"enabled": True}, format="json")
    assert "run_flow" in refusal(response)
    schedule.refresh_from_db()
    assert not schedule.enabled and not PeriodicTask.objects.get(flow_schedule=schedule).enabled


def test_changing_what_a_schedule_runs_needs_run_flow(api: APIClient, flow: Flow) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=3600)
    for change in (
        {"params": {"min_id": 99}},
        {"every": "1s"},
        {"kind": "cron", "cron": "* * * * *"},
    ):
        assert "run_flow" in refusal(api.patch(f"{SCHEDULES}{schedule.pk}/", change, format="json"))
    schedule.refresh_from_db()
    assert schedule.params == {} and schedule.every_seconds == 3600


def test_disabling_editing_the_description_and_deleting_need_no_run_flow(
    api: APIClient, flow: Flow
) -> None:
    schedule = make_schedule(flow, kind="interval", every_seconds=60)
    url = f"{SCHEDULES}{schedule.pk}/"
    assert api.patch(url, {"enabled": False}, format="json").status_code == 200
    assert not PeriodicTask.objects.get(flow_schedule=schedule).enabled
    assert api.patch(url, {"description": "paused"}, format="json").status_code == 200
    assert api.delete(url).status_code == 204
    assert not FlowSchedule.objects.exists()


def test_a_flow_file_put_with_schedules_needs_run_flow(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    body = {**minimal_flow, "schedules": [{"every": "30s", "params": {"min_id": 0}}]}
    response = api.put(f"/api/v1/flows/{flow.slug}/", body, format="json")
    assert "run_flow" in refusal(response)
    assert response.json()["errors"][0]["path"] == "schedules"
    assert not FlowSchedule.objects.exists()


def test_a_new_flow_file_with_schedules_needs_run_flow(
    api: APIClient, db: None, minimal_flow: dict[str, Any]
) -> None:
    body = {**minimal_flow, "slug": "fresh", "schedules": [{"cron": "* * * * *"}]}
    assert "run_flow" in refusal(api.post("/api/v1/flows/", body, format="json"))
    assert not Flow.objects.filter(slug="fresh").exists()
    del body["schedules"]
    assert api.post("/api/v1/flows/", body, format="json").status_code == 201


def test_a_flow_file_that_keeps_or_only_removes_schedules_needs_no_run_flow(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    make_schedule(flow, kind="interval", every_seconds=60)
    make_schedule(flow, kind="cron", cron="0 6 * * *")
    url = f"/api/v1/flows/{flow.slug}/"
    assert api.patch(url, {"name": "Renamed"}, format="json").status_code == 200
    kept = [{"every": "1m"}]
    assert api.patch(url, {"schedules": kept}, format="json").status_code == 200
    assert list(FlowSchedule.objects.values_list("every_seconds", flat=True)) == [60]
    disabled = [{"every": "1m", "enabled": False}]
    assert api.patch(url, {"schedules": disabled}, format="json").status_code == 200
    enabled_again = [{"every": "1m"}]
    assert "run_flow" in refusal(api.patch(url, {"schedules": enabled_again}, format="json"))
    assert not FlowSchedule.objects.get().enabled


def admin_form(flow: Flow, **overrides: str) -> dict[str, str]:
    data = {
        "flow": str(flow.pk),
        "description": "",
        "enabled": "on",
        "kind": "interval",
        "cron": "",
        "timezone": "UTC",
        "every_seconds": "60",
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
    return {**data, **overrides}


def test_creating_a_schedule_in_the_admin_needs_run_flow(browser: Client, flow: Flow) -> None:
    response = browser.post("/admin/scheduling/flowschedule/add/", admin_form(flow))
    assert response.status_code == 403  # without run_flow on any flow, no add page at all
    assert not FlowSchedule.objects.exists()


def test_enabling_in_the_admin_needs_run_flow_and_disabling_does_not(
    browser: Client, flow: Flow
) -> None:
    off = make_schedule(flow, kind="interval", every_seconds=60, enabled=False)
    on = make_schedule(flow, kind="interval", every_seconds=120)
    page = f"/admin/scheduling/flowschedule/{off.pk}/change/"
    response = browser.post(page, admin_form(flow))
    assert response.status_code == 200 and "needs the run permission" in response.content.decode()
    changelist = "/admin/scheduling/flowschedule/"
    browser.post(changelist, {"action": "enable_schedules", "_selected_action": [str(off.pk)]})
    off.refresh_from_db()
    assert not off.enabled and not PeriodicTask.objects.get(flow_schedule=off).enabled
    browser.post(changelist, {"action": "disable_schedules", "_selected_action": [str(on.pk)]})
    on.refresh_from_db()
    assert not on.enabled


def test_the_flow_page_schedule_inline_refuses_a_new_schedule(designer: User, flow: Flow) -> None:
    from scheduling.admin import FlowScheduleInline

    class FlowAdmin(admin.ModelAdmin):
        inlines = [FlowScheduleInline]

    model_admin = FlowAdmin(Flow, admin.AdminSite(name="inline-run-test"))
    request = RequestFactory().post("/")
    request.user = designer
    formsets = list(model_admin.get_formsets_with_inlines(request, flow))
    assert formsets, "the inline is on the page (schedules may be deleted from it)"
    [(formset_class, inline)] = formsets
    assert not inline.has_add_permission(request, flow)
    prefix = formset_class.get_default_prefix()
    data = {
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-0-kind": "interval",
        f"{prefix}-0-every_seconds": "60",
        f"{prefix}-0-timezone": "UTC",
        f"{prefix}-0-overlap": "skip",
        f"{prefix}-0-max_active_runs": "1",
        f"{prefix}-0-enabled": "on",
    }
    bound = formset_class(data, instance=flow, prefix=prefix)
    if bound.is_valid():
        bound.save()
    assert not FlowSchedule.objects.exists()


def test_a_designer_with_run_flow_may_do_all_of_it(
    designer: User, api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    designer.user_permissions.add(Permission.objects.get(codename="run_flow"))
    designer = User.objects.get(pk=designer.pk)  # permissions are cached per instance
    created = api.post(SCHEDULES, {"flow": flow.slug, "every": "1m"}, format="json")
    assert created.status_code == 201, created.json()
    body = {**copy.deepcopy(minimal_flow), "schedules": [{"every": "30s"}]}
    assert api.put(f"/api/v1/flows/{flow.slug}/", body, format="json").status_code == 200
