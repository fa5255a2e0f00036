"""The per-flow permission matrix of the API: every actor, every kind of request.

Rules under test: lists show only what the actor may see; a flow the actor may not see
answers 404 wherever it is named (flow, run, schedule); a visible flow without the needed
right answers 403; an actor with no right of the kind anywhere gets 403 before any lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from flows.models import Flow, FlowRun
from flows.services import start_run
from scheduling.models import FlowSchedule
from tests.access.conftest import ACTORS

pytestmark = pytest.mark.django_db

A = "/api/v1/flows/alpha/"
B = "/api/v1/flows/beta/"

#: Expected status per actor, in the order of ACTORS:
#: global_user, viewer, runner, editor, member, nobody.
MATRIX: dict[str, tuple[int, ...]] = {
    "create flow": (201, 403, 403, 403, 403, 403),
    "get alpha": (200, 200, 200, 200, 200, 403),
    "get beta": (200, 404, 404, 404, 404, 403),
    "versions of beta": (200, 404, 404, 404, 404, 403),
    "validate alpha": (200, 200, 200, 200, 200, 403),
    "patch alpha": (200, 403, 403, 200, 200, 403),
    "patch beta": (200, 403, 403, 404, 404, 403),
    "delete alpha": (409, 403, 403, 403, 403, 403),  # 409: it has an active run
    "run alpha": (202, 403, 202, 403, 202, 403),
    "run beta": (202, 403, 404, 403, 404, 403),
    "get alpha run": (200, 200, 200, 200, 200, 403),
    "get beta run": (200, 404, 404, 404, 404, 403),
    "cancel alpha run": (200, 403, 200, 403, 200, 403),
    "cancel beta run": (200, 403, 404, 403, 404, 403),
    "rerun alpha run": (202, 403, 202, 403, 202, 403),
    "create alpha schedule": (201, 403, 403, 403, 201, 403),
    "create beta schedule": (201, 403, 403, 400, 400, 403),  # 400: no such flow for them
    "enable alpha schedule": (200, 403, 403, 403, 200, 403),
    "disable alpha schedule": (200, 403, 403, 200, 200, 403),
    "get beta schedule": (200, 404, 404, 404, 404, 403),
    "delete alpha schedule": (204, 403, 403, 204, 204, 403),
}


@pytest.fixture
def world(
    apis: dict[str, APIClient], alpha: Flow, beta: Flow, minimal_flow: dict[str, Any]
) -> dict[str, Any]:
    """A queued run of each flow and a disabled and an enabled schedule of alpha."""
    return {
        "new_flow": {**minimal_flow, "slug": "gamma"},
        "alpha_run": start_run(alpha),
        "beta_run": start_run(beta),
        "off": FlowSchedule.objects.create(
            flow=alpha, kind="interval", every_seconds=60, enabled=False
        ),
        "on": FlowSchedule.objects.create(flow=alpha, kind="interval", every_seconds=120),
        "beta_schedule": FlowSchedule.objects.create(flow=beta, kind="interval", every_seconds=60),
    }


def request(name: str, client: APIClient, world: dict[str, Any]) -> Any:
    alpha_run: FlowRun = world["alpha_run"]
    beta_run: FlowRun = world["beta_run"]
    schedules = "/api/v1/schedules/"
    calls: dict[str, Callable[[], Any]] = {
        "create flow": lambda: client.post("/api/v1/flows/", world["new_flow"], format="json"),
        "get alpha": lambda: client.get(A),
        "get beta": lambda: client.get(B),
        "versions of beta": lambda: client.get(f"{B}versions/"),
        "validate alpha": lambda: client.post(f"{A}validate/", {}, format="json"),
        "patch alpha": lambda: client.patch(A, {"name": "Renamed"}, format="json"),
        "patch beta": lambda: client.patch(B, {"name": "Renamed"}, format="json"),
        "delete alpha": lambda: client.delete(A),
        "run alpha": lambda: client.post(f"{A}runs/", {}, format="json"),
        "run beta": lambda: client.post(f"{B}runs/", {}, format="json"),
        "get alpha run": lambda: client.get(f"/api/v1/runs/{alpha_run.pk}/"),
        "get beta run": lambda: client.get(f"/api/v1/runs/{beta_run.pk}/"),
        "cancel alpha run": lambda: client.post(f"/api/v1/runs/{alpha_run.pk}/cancel/"),
        "cancel beta run": lambda: client.post(f"/api/v1/runs/{beta_run.pk}/cancel/"),
        "rerun alpha run": lambda: client.post(
            f"/api/v1/runs/{alpha_run.pk}/rerun/", {}, format="json"
        ),
        "create alpha schedule": lambda: client.post(
            schedules, {"flow": "alpha", "every": "1h"}, format="json"
        ),
        "create beta schedule": lambda: client.post(
            schedules, {"flow": "beta", "every": "1h"}, format="json"
        ),
        "enable alpha schedule": lambda: client.patch(
            f"{schedules}{world['off'].pk}/", {"enabled": True}, format="json"
        ),
        "disable alpha schedule": lambda: client.patch(
            f"{schedules}{world['on'].pk}/", {"enabled": False}, format="json"
        ),
        "get beta schedule": lambda: client.get(f"{schedules}{world['beta_schedule'].pk}/"),
        "delete alpha schedule": lambda: client.delete(f"{schedules}{world['on'].pk}/"),
    }
    return calls[name]()


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", MATRIX)
def test_permission_matrix(
    name: str, actor: str, apis: dict[str, APIClient], world: dict[str, Any]
) -> None:
    expected = MATRIX[name][ACTORS.index(actor)]
    response = request(name, apis[actor], world)
    assert response.status_code == expected, (name, actor, response.content[:500])
    if expected in (403, 404):
        assert response.json()["errors"][0]["message"]


EXPECTED_LISTS = {
    "global_user": ["alpha", "beta"],
    "viewer": ["alpha"],
    "runner": ["alpha"],
    "editor": ["alpha"],
    "member": ["alpha"],
}


@pytest.mark.parametrize("actor", ACTORS)
def test_lists_show_only_what_the_actor_may_see(
    actor: str, apis: dict[str, APIClient], world: dict[str, Any]
) -> None:
    client = apis[actor]
    if actor == "nobody":
        for url in ("/api/v1/flows/", "/api/v1/runs/", "/api/v1/schedules/"):
            assert client.get(url).status_code == 403, url
        return
    slugs = EXPECTED_LISTS[actor]
    flows = client.get("/api/v1/flows/").json()["results"]
    assert [f["slug"] for f in flows] == slugs
    runs = client.get("/api/v1/runs/").json()["results"]
    assert sorted({r["flow"] for r in runs}) == slugs
    schedules = client.get("/api/v1/schedules/").json()["results"]
    assert sorted({s["flow"] for s in schedules}) == slugs
    assert client.get(f"{A}runs/").status_code == 200
    assert client.get(f"{A}versions/1/").status_code == 200
    filtered = client.get("/api/v1/runs/", {"flow": "beta"}).json()["results"]
    assert filtered == ([] if "beta" not in slugs else filtered)


def test_a_404_for_an_unseen_flow_is_the_same_as_for_a_missing_one(
    apis: dict[str, APIClient], world: dict[str, Any]
) -> None:
    unseen = apis["viewer"].get(B)
    missing = apis["viewer"].get("/api/v1/flows/gamma/")
    assert unseen.status_code == missing.status_code == 404
    assert unseen.json()["detail"] == missing.json()["detail"]


def test_a_grant_of_change_lets_a_flow_be_edited_and_a_creator_keeps_their_flow(
    apis: dict[str, APIClient], minimal_flow: dict[str, Any], actors: dict[str, Any]
) -> None:
    from tests.access.conftest import api_client, make_user

    creator = api_client(make_user("creator", "add_flow"))
    created = creator.post("/api/v1/flows/", {**minimal_flow, "slug": "mine"}, format="json")
    assert created.status_code == 201, created.json()
    assert creator.patch("/api/v1/flows/mine/", {"name": "Mine"}, format="json").status_code == 200
    assert creator.get("/api/v1/flows/alpha/").status_code == 404
