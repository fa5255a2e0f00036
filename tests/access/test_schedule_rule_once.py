"""One rule for schedule writes (``scheduling.access``), whichever door: API, admin form, action.

A user holding run on ``alpha`` but change only on ``beta`` may not enable ``alpha``'s schedule
through the API (enabling is a change: it needs change, or the schedule permission); the admin's
*Enable* action used to look at run only and enabled it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from flows.models import Flow
from scheduling.models import FlowSchedule
from tests.access.conftest import admin_client, api_client, grant, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def runner_of_alpha(alpha: Flow, beta: Flow) -> User:
    user = make_user("runner_of_alpha")
    grant(alpha, user, view=True, run=True)
    grant(beta, user, view=True, change=True)
    return user


@pytest.fixture
def disabled(alpha: Flow) -> FlowSchedule:
    return FlowSchedule.objects.create(flow=alpha, kind="interval", every_seconds=60, enabled=False)


def test_the_api_refuses_enabling_without_change(
    runner_of_alpha: User, disabled: FlowSchedule
) -> None:
    api: APIClient = api_client(runner_of_alpha)
    response = api.patch(f"/api/v1/schedules/{disabled.pk}/", {"enabled": True}, format="json")
    assert response.status_code == 403


def test_the_admin_enable_action_refuses_it_too(
    runner_of_alpha: User, disabled: FlowSchedule
) -> None:
    client: Client = admin_client(runner_of_alpha)
    response = client.post(
        reverse("admin:scheduling_flowschedule_changelist"),
        {"action": "enable_schedules", "_selected_action": [disabled.pk]},
        follow=True,
    )
    assert response.status_code == 200
    disabled.refresh_from_db()
    assert not disabled.enabled and disabled.owner is None
    text = " ".join(str(m) for m in response.context["messages"])
    assert "1 schedule(s) not enabled" in text


def test_the_admin_enable_action_takes_ownership_when_allowed(
    actors: dict[str, User], disabled: FlowSchedule
) -> None:
    client = admin_client(actors["member"])  # change and run on alpha
    client.post(
        reverse("admin:scheduling_flowschedule_changelist"),
        {"action": "enable_schedules", "_selected_action": [disabled.pk]},
    )
    disabled.refresh_from_db()
    assert disabled.enabled and disabled.owner == actors["member"]
    assert not disabled.run_as_operator


def test_the_admin_form_and_the_api_give_the_same_refusal(
    actors: dict[str, User], disabled: FlowSchedule
) -> None:
    editor = actors["editor"]  # change on alpha, no run
    api_answer = api_client(editor).patch(
        f"/api/v1/schedules/{disabled.pk}/", {"enabled": True}, format="json"
    )
    assert api_answer.status_code == 403
    client = admin_client(editor)
    url = reverse("admin:scheduling_flowschedule_change", args=[disabled.pk])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(enabled="on", params="{}")
    page = client.post(url, data)
    assert page.status_code == 200  # refused: the form comes back with the error
    errors = " ".join(page.context["adminform"].form.non_field_errors())
    assert api_answer.json()["detail"] in errors


def test_the_flow_page_inline_lets_an_editor_delete_a_schedule(
    actors: dict[str, User], alpha: Flow
) -> None:
    from tests.admin.forms import page_post_data

    schedule = FlowSchedule.objects.create(flow=alpha, kind="interval", every_seconds=60)
    client = admin_client(actors["editor"])  # change on alpha, no run
    url = reverse("admin:flows_flow_change", args=[alpha.pk])
    data = page_post_data(client.get(url))
    data["schedules-0-DELETE"] = "on"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not FlowSchedule.objects.filter(pk=schedule.pk).exists()
