"""Node positions (``ui``) in the flow file: accepted, kept, exported, and ignored by the engine."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from flows.flowfile import apply_flow_file, export_flow
from flows.models import Flow
from flows.validation import validate_flow

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]


def positioned(flow_file: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(flow_file)
    for i, node in enumerate(data["nodes"]):
        node["ui"] = {"x": 40.0 + 290 * i, "y": 60.5}
    return data


def test_positions_round_trip_through_import_and_export(minimal_flow: dict[str, Any]) -> None:
    data = positioned(minimal_flow)
    flow, _ = apply_flow_file(data)
    exported = export_flow(flow)
    assert [n["ui"] for n in exported["nodes"]] == [n["ui"] for n in data["nodes"]]
    assert list(exported["nodes"][0])[-1] == "ui"


def test_moving_nodes_makes_no_new_version(minimal_flow: dict[str, Any]) -> None:
    flow, _ = apply_flow_file(positioned(minimal_flow))
    first = flow.latest_version
    assert first is not None
    assert "ui" not in first.definition["nodes"][0]  # the engine never sees positions
    moved = positioned(minimal_flow)
    moved["nodes"][0]["ui"] = {"x": 999, "y": 1}
    apply_flow_file(moved)
    assert flow.latest_version == first
    assert export_flow(flow)["nodes"][0]["ui"] == {"x": 999, "y": 1}


@pytest.mark.parametrize(
    ("ui", "path"),
    [
        ({"x": "left", "y": 1}, "nodes[0].ui.x"),
        ({"x": 1}, "nodes[0].ui.y"),
        ({"x": 1, "y": 2, "z": 3}, "nodes[0].ui.z"),
        ({"x": 1e12, "y": 2}, "nodes[0].ui.x"),
    ],
)
def test_a_bad_position_is_named(minimal_flow: dict[str, Any], ui: dict, path: str) -> None:
    minimal_flow["nodes"][0]["ui"] = ui
    assert path in [p.path for p in validate_flow(minimal_flow)]


def test_the_api_accepts_and_returns_positions(
    admin_user: Any, minimal_flow: dict[str, Any]
) -> None:
    api = APIClient()
    api.force_authenticate(admin_user)
    data = positioned(minimal_flow)
    assert api.post("/api/v1/flows/", data, format="json").status_code == 201
    got = api.get(f"/api/v1/flows/{data['slug']}/").json()
    assert [n["ui"] for n in got["nodes"]] == [n["ui"] for n in data["nodes"]]


def test_exportflow_and_importflow_keep_positions(
    minimal_flow: dict[str, Any], tmp_path: Any
) -> None:
    apply_flow_file(positioned(minimal_flow))
    target = tmp_path / "flow.json"
    call_command("exportflow", minimal_flow["slug"], "--output", str(target))
    Flow.objects.all().delete()
    call_command("importflow", str(target))
    assert export_flow(Flow.objects.get())["nodes"][1]["ui"] == {"x": 330.0, "y": 60.5}


def canvas_post(client: Client, name: str, body: Any) -> Any:
    return client.post(
        reverse(f"admin:flows_flow_canvas_{name}"), body, content_type="application/json"
    )


def test_canvas_validate_names_problems_and_gives_port_schemas(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["nodes"][0]["config"]["columns"] = {"id": "integer", "status": "string"}
    minimal_flow["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    body = canvas_post(admin_client, "validate", {"flow": minimal_flow}).json()
    assert not body["valid"]
    assert body["problems"][0]["path"] == "nodes[1].config.conditions[0].op"
    assert body["problems"][0]["node"] == "paid"
    # the filter is invalid, yet what reaches it is known: its fields can be chosen
    assert body["schemas"]["paid"]["inputs"] == {"in": {"id": "integer", "status": "string"}}
    assert Flow.objects.count() == 0


def test_canvas_save_saves_a_valid_graph_only(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    bad = copy.deepcopy(minimal_flow)
    bad["edges"].append({"from": "push", "to": "orders"})
    response = canvas_post(admin_client, "save", {"flow": bad, "new": True})
    assert response.status_code == 400
    assert "is a source" in response.json()["problems"][0]["message"]
    assert Flow.objects.count() == 0
    response = canvas_post(admin_client, "save", {"flow": positioned(minimal_flow), "new": True})
    assert response.status_code == 200, response.content
    flow = Flow.objects.get()
    assert response.json() == {
        "slug": flow.slug,
        "version": 1,
        "url": reverse("admin:flows_flow_change", args=[flow.pk]),
    }
    again = canvas_post(admin_client, "save", {"flow": minimal_flow, "new": True})
    assert again.status_code == 400
    assert again.json()["problems"][0]["path"] == "slug"


def test_canvas_views_need_a_flow_right(client: Client, minimal_flow: dict[str, Any]) -> None:
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))
    assert canvas_post(client, "validate", {"flow": minimal_flow}).status_code == 403
    assert canvas_post(client, "save", {"flow": minimal_flow}).status_code == 403
    assert Flow.objects.count() == 0


def test_the_form_keeps_positions(admin_client: Client, minimal_flow: dict[str, Any]) -> None:
    from tests.admin.forms import page_post_data

    flow, _ = apply_flow_file(positioned(minimal_flow))
    url = reverse("admin:flows_flow_change", args=[flow.pk]) + "?form=1"
    data = page_post_data(admin_client.get(url))
    data["name"] = "Renamed in the form"
    assert admin_client.post(url, data).status_code == 302
    assert export_flow(flow)["nodes"][2]["ui"] == {"x": 620.0, "y": 60.5}
