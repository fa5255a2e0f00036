"""Per-flow access in the admin: changelists show only what the actor may see, pages refuse."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

from flows.models import Flow, FlowAccess
from flows.services import start_run
from scheduling.models import FlowSchedule
from tests.access.conftest import admin_client
from tests.admin.forms import page_post_data

pytestmark = pytest.mark.django_db


def listed(actor: User, url: str) -> str:
    response = admin_client(actor).get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_the_flow_list_shows_only_flows_the_actor_may_view(actors: dict[str, User]) -> None:
    for name in ("viewer", "runner", "editor", "member"):
        page = listed(actors[name], "/admin/flows/flow/")
        assert ">alpha<" in page and ">beta<" not in page, name
    page = listed(actors["global_user"], "/admin/flows/flow/")
    assert ">alpha<" in page and ">beta<" in page
    assert admin_client(actors["nobody"]).get("/admin/flows/flow/").status_code == 403


def test_the_page_of_an_unseen_flow_is_refused(actors: dict[str, User], beta: Flow) -> None:
    browser = admin_client(actors["viewer"])
    response = browser.get(f"/admin/flows/flow/{beta.pk}/change/")
    assert response.status_code == 302  # "doesn't exist", back to the index
    assert browser.get(f"/admin/flows/flow/{beta.pk}/export/").status_code == 404
    assert browser.get(f"/admin/flows/flow/{beta.pk}/run/").status_code == 404


def test_a_viewer_sees_the_flow_read_only_and_may_not_run_it(
    actors: dict[str, User], alpha: Flow
) -> None:
    browser = admin_client(actors["viewer"])
    page = browser.get(f"/admin/flows/flow/{alpha.pk}/change/")
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert (
        browser.post(f"/admin/flows/flow/{alpha.pk}/change/", page_post_data(page)).status_code
        == 403
    )
    assert browser.get(f"/admin/flows/flow/{alpha.pk}/run/").status_code == 403


def test_a_change_grant_edits_the_flow_in_the_admin(actors: dict[str, User], alpha: Flow) -> None:
    browser = admin_client(actors["editor"])
    page = browser.get(f"/admin/flows/flow/{alpha.pk}/change/")
    data = page_post_data(page)
    data["name"] = "Edited by a grant"
    response = browser.post(f"/admin/flows/flow/{alpha.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Flow.objects.get(pk=alpha.pk).name == "Edited by a grant"


def test_a_run_grant_runs_the_flow_in_the_admin(actors: dict[str, User], alpha: Flow) -> None:
    browser = admin_client(actors["runner"])
    response = browser.post(f"/admin/flows/flow/{alpha.pk}/run/", {"params": "{}"})
    assert response.status_code == 302
    assert alpha.runs.count() == 1


def test_runs_and_their_actions_follow_the_flow(
    actors: dict[str, User], alpha: Flow, beta: Flow
) -> None:
    alpha_run, beta_run = start_run(alpha), start_run(beta)
    page = listed(actors["viewer"], "/admin/flows/flowrun/")
    assert str(alpha_run.pk)[:8] in page and str(beta_run.pk)[:8] not in page
    viewer = admin_client(actors["viewer"])
    assert viewer.get(f"/admin/flows/flowrun/{beta_run.pk}/change/").status_code == 302
    assert viewer.post(f"/admin/flows/flowrun/{alpha_run.pk}/cancel/").status_code == 403
    runner = admin_client(actors["runner"])
    assert runner.post(f"/admin/flows/flowrun/{beta_run.pk}/cancel/").status_code == 404
    assert runner.post(f"/admin/flows/flowrun/{alpha_run.pk}/cancel/").status_code == 302
    alpha_run.refresh_from_db()
    assert alpha_run.status == "cancelled"
    runner.post(
        "/admin/flows/flowrun/",
        {"action": "cancel_selected", "_selected_action": [str(beta_run.pk)]},
    )
    beta_run.refresh_from_db()
    assert beta_run.status == "queued"


def test_schedules_follow_the_flow(actors: dict[str, User], alpha: Flow, beta: Flow) -> None:
    FlowSchedule.objects.create(flow=alpha, kind="interval", every_seconds=60)
    hidden = FlowSchedule.objects.create(flow=beta, kind="interval", every_seconds=77)
    page = listed(actors["member"], "/admin/scheduling/flowschedule/")
    assert "every 1m" in page and "every 1m17s" not in page
    member = admin_client(actors["member"])
    assert member.get(f"/admin/scheduling/flowschedule/{hidden.pk}/change/").status_code == 302


def test_grants_are_edited_on_the_flow_page_by_grant_managers_only(
    actors: dict[str, User], alpha: Flow
) -> None:
    def inlines(user: User) -> list[str]:
        page = admin_client(user).get(f"/admin/flows/flow/{alpha.pk}/change/")
        return [f.formset.prefix for f in page.context["inline_admin_formsets"]]

    assert "access_grants" not in inlines(actors["editor"])
    boss = User.objects.create_superuser("boss", "boss@example.test", "pw")
    assert "access_grants" in inlines(boss)
    assert FlowAccess.objects.filter(flow=alpha).count() == 4


def upload(flow_file: dict[str, Any]) -> SimpleUploadedFile:
    return SimpleUploadedFile("flow.json", json.dumps(flow_file).encode(), "application/json")


def test_importing_a_flow_file_in_the_admin_follows_the_grants(
    actors: dict[str, User], alpha: Flow, beta: Flow, minimal_flow: dict[str, Any]
) -> None:
    browser = admin_client(actors["editor"])
    url = "/admin/flows/flow/import/"
    mine = {**copy.deepcopy(minimal_flow), "slug": "alpha", "name": "Imported"}
    assert browser.post(url, {"file": upload(mine)}).status_code == 302
    assert Flow.objects.get(pk=alpha.pk).name == "Imported"
    theirs = {**mine, "slug": "beta"}
    page = browser.post(url, {"file": upload(theirs)}).content.decode()
    assert "needs the change permission" in page and Flow.objects.get(pk=beta.pk).name == "Beta"
    scheduled = {**mine, "schedules": [{"every": "1m"}]}
    page = browser.post(url, {"file": upload(scheduled)}).content.decode()
    assert "needs the run permission on the flow" in page
    assert not FlowSchedule.objects.exists()


def test_scheduled_intervals_follow_the_flow(
    actors: dict[str, User], alpha: Flow, beta: Flow
) -> None:
    from datetime import UTC, datetime

    from scheduling.models import ScheduledRun

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for flow in (alpha, beta):
        schedule = FlowSchedule.objects.create(flow=flow, kind="interval", every_seconds=60)
        ScheduledRun.objects.create(
            schedule=schedule, interval_start=moment, interval_end=moment, error=f"{flow.slug}-x"
        )
    page = listed(actors["viewer"], "/admin/scheduling/scheduledrun/")
    assert "alpha: every 1m" in page and "beta: every 1m" not in page


def test_a_flows_alerts_deliveries_and_triggers_are_seen_by_whoever_may_view_the_flow(
    actors: dict[str, User], alpha: Flow, beta: Flow
) -> None:
    from flowplatform.alerts.models import AlertDelivery, FlowAlert
    from scheduling.triggers.models import FlowTrigger, TriggerKind

    def parts(flow: Flow) -> dict[str, Any]:
        return {
            "/admin/alerts/flowalert/": FlowAlert.objects.create(flow=flow, events=["failed"]),
            "/admin/alerts/alertdelivery/": AlertDelivery.objects.create(
                flow=flow, event="failed", key=flow.slug, target="email:ops@example.test"
            ),
            "/admin/scheduling/flowtrigger/": FlowTrigger.objects.create(
                flow=flow, kind=TriggerKind.WEBHOOK, name="in"
            ),
        }

    seen, unseen = parts(alpha), parts(beta)
    viewer = admin_client(actors["viewer"])
    for changelist, row in seen.items():
        assert viewer.get(changelist).status_code == 200, changelist
        assert viewer.get(f"{changelist}{row.pk}/change/").status_code == 200, changelist
        # "doesn't exist": back to the index
        assert viewer.get(f"{changelist}{unseen[changelist].pk}/change/").status_code == 302
        assert admin_client(actors["nobody"]).get(changelist).status_code == 403, changelist
