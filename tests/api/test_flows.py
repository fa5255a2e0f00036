"""Flows over the API: CRUD in flow-file shape, versions, validation, optimistic concurrency."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rest_framework.test import APIClient

from flows.models import Flow, FlowRun, FlowVersion
from flows.services import start_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

FLOWS = "/api/v1/flows/"
FLOW = "/api/v1/flows/paid-orders-to-crm/"


def paths(response: Any) -> list[str]:
    return [error["path"] for error in response.json()["errors"]]


def test_create_stores_the_flow_and_its_first_version(
    api: APIClient, minimal_flow: dict[str, Any]
) -> None:
    response = api.post(FLOWS, minimal_flow, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["version"] == 1
    assert body["nodes"] == minimal_flow["nodes"]
    assert body["edges"] == minimal_flow["edges"]
    assert response["Location"].endswith(FLOW)
    assert response["ETag"].startswith('"')
    assert FlowVersion.objects.filter(flow__slug="paid-orders-to-crm").count() == 1


def test_retrieve_is_the_flow_file_plus_version_and_etag(api: APIClient, flow: Flow) -> None:
    response = api.get(FLOW)
    assert response.status_code == 200
    body = response.json()
    assert {"slug", "name", "description", "nodes", "edges", "version"} <= set(body)
    assert body["version"] == 1
    assert api.get(FLOW)["ETag"] == response["ETag"]


def test_list_gives_summaries_with_version_and_node_count(api: APIClient, flow: Flow) -> None:
    body = api.get(FLOWS).json()
    assert body["count"] == 1
    assert body["results"][0]["slug"] == "paid-orders-to-crm"
    assert body["results"][0]["version"] == 1
    assert body["results"][0]["node_count"] == 4
    assert "nodes" not in body["results"][0]


def test_list_orders_and_paginates(api: APIClient, minimal_flow: dict[str, Any]) -> None:
    for slug in ("b-flow", "a-flow", "c-flow"):
        assert api.post(FLOWS, {**minimal_flow, "slug": slug}, format="json").status_code == 201
    body = api.get(FLOWS, {"ordering": "-slug", "limit": 2}).json()
    assert [f["slug"] for f in body["results"]] == ["c-flow", "b-flow"]
    assert body["count"] == 3 and body["next"]
    assert [f["slug"] for f in api.get(body["next"]).json()["results"]] == ["a-flow"]


def test_create_with_an_existing_slug_is_a_conflict_and_changes_nothing(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    response = api.post(FLOWS, {**minimal_flow, "name": "Other"}, format="json")
    assert response.status_code == 409
    assert paths(response) == ["slug"]
    assert Flow.objects.get(slug=flow.slug).name == "Paid orders to CRM"


def test_update_replaces_the_graph_and_makes_a_new_version(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    changed = copy.deepcopy(minimal_flow)
    changed["nodes"][1]["config"]["conditions"][0]["value"] = "refunded"
    response = api.put(FLOW, changed, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2
    assert response.json()["nodes"][1]["config"]["conditions"][0]["value"] == "refunded"
    assert flow.versions.count() == 2


def test_update_without_graph_change_keeps_the_version(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    response = api.put(FLOW, {**minimal_flow, "name": "Renamed"}, format="json")
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert response.json()["name"] == "Renamed"


def test_partial_update_changes_only_the_fields_given(api: APIClient, flow: Flow) -> None:
    response = api.patch(FLOW, {"description": "new words"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["description"] == "new words"
    assert response.json()["name"] == "Paid orders to CRM"
    assert len(response.json()["nodes"]) == 4


def test_a_client_can_put_back_what_it_got(api: APIClient, flow: Flow) -> None:
    document = api.get(FLOW).json()
    assert api.put(FLOW, document, format="json").status_code == 200


def test_the_url_slug_wins_and_a_different_body_slug_is_refused(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    body = {k: v for k, v in minimal_flow.items() if k != "slug"}
    assert api.put(FLOW, body, format="json").status_code == 200
    response = api.put(FLOW, {**minimal_flow, "slug": "elsewhere"}, format="json")
    assert response.status_code == 400
    assert paths(response) == ["slug"]
    assert not Flow.objects.filter(slug="elsewhere").exists()


def test_stale_version_is_a_conflict(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    changed = copy.deepcopy(minimal_flow)
    changed["nodes"][3]["config"]["batch_size"] = 5
    assert api.put(FLOW, {**changed, "version": 1}, format="json").status_code == 200
    stale = api.put(FLOW, {**minimal_flow, "version": 1}, format="json")
    assert stale.status_code == 409
    assert paths(stale) == ["version"]
    assert api.get(FLOW).json()["nodes"][3]["config"]["batch_size"] == 5


def test_stale_etag_is_a_failed_precondition(api: APIClient, flow: Flow) -> None:
    etag = api.get(FLOW)["ETag"]
    assert api.patch(FLOW, {"name": "First"}, format="json", HTTP_IF_MATCH=etag).status_code == 200
    stale = api.patch(FLOW, {"name": "Second"}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert paths(stale) == ["If-Match"]
    assert Flow.objects.get(slug=flow.slug).name == "First"
    assert api.delete(FLOW, HTTP_IF_MATCH=etag).status_code == 412


def test_a_graph_with_a_cycle_and_a_bad_edge_lists_each_problem(
    api: APIClient, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["edges"].append({"from": "shape", "to": "paid"})
    minimal_flow["edges"].append({"from": "push", "to": "nothere"})
    response = api.post(FLOWS, minimal_flow, format="json")
    assert response.status_code == 400
    assert paths(response) == ["edges[4].to", "edges"]  # both, in one pass
    assert "cycle: paid -> shape -> paid" in response.json()["errors"][1]["message"]
    minimal_flow["edges"].pop()
    response = api.post(FLOWS, minimal_flow, format="json")
    assert response.status_code == 400
    assert "cycle" in response.json()["errors"][0]["message"]
    assert not Flow.objects.exists()


def test_config_problems_name_the_path_and_the_node(
    api: APIClient, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    minimal_flow["nodes"][3]["config"]["batch_size"] = "many"
    response = api.post(FLOWS, minimal_flow, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["path"], e["node"]) for e in errors] == [
        ("nodes[1].config.conditions[0].op", "paid"),
        ("nodes[3].config.batch_size", "push"),
    ]


def test_incompatible_ports_are_refused(api: APIClient, minimal_flow: dict[str, Any]) -> None:
    minimal_flow["edges"].append({"from": "push", "to": "orders"})
    response = api.post(FLOWS, minimal_flow, format="json")
    assert response.status_code == 400
    assert paths(response) == ["edges[3].to"]
    assert "source" in response.json()["errors"][0]["message"]


def test_an_invalid_update_changes_nothing(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["name"] = "Changed"
    minimal_flow["nodes"][0]["type"] = "no_such_type"
    response = api.put(FLOW, minimal_flow, format="json")
    assert response.status_code == 400
    assert paths(response) == ["nodes[0].type"]
    assert Flow.objects.get(slug=flow.slug).name == "Paid orders to CRM"
    assert flow.versions.count() == 1


def test_validate_the_stored_flow(api: APIClient, flow: Flow) -> None:
    response = api.post(f"{FLOW}validate/")
    assert response.status_code == 200
    assert response.json() == {"valid": True, "errors": []}


def test_validate_a_posted_graph_without_saving_it(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["edges"].append({"from": "shape", "to": "paid"})
    response = api.post(f"{FLOW}validate/", minimal_flow, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert body["errors"] == [
        {"path": "edges", "node": None, "message": "the graph has a cycle: paid -> shape -> paid"}
    ]
    assert len(api.get(FLOW).json()["edges"]) == 3


def test_versions_newest_first_and_one_by_number(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["nodes"][3]["config"]["batch_size"] = 7
    api.put(FLOW, minimal_flow, format="json")
    body = api.get(f"{FLOW}versions/").json()
    assert [v["number"] for v in body["results"]] == [2, 1]
    version = api.get(f"{FLOW}versions/1/").json()
    assert version["definition"]["edges"][0] == {
        "from": "orders",
        "from_port": "out",
        "to": "paid",
        "to_port": "in",
    }
    missing = api.get(f"{FLOW}versions/9/")
    assert missing.status_code == 404
    assert paths(missing) == ["number"]


def test_delete_removes_the_flow_with_its_versions_and_runs(api: APIClient, flow: Flow) -> None:
    run = start_run(flow)
    FlowRun.objects.filter(pk=run.pk).update(status="succeeded")
    assert api.delete(FLOW).status_code == 204
    assert not Flow.objects.exists() and not FlowRun.objects.exists()
    assert api.get(FLOW).status_code == 404


def test_delete_is_refused_while_a_run_is_active(api: APIClient, flow: Flow) -> None:
    start_run(flow)
    response = api.delete(FLOW)
    assert response.status_code == 409
    assert Flow.objects.filter(pk=flow.pk).exists()


def test_unknown_slug_is_a_json_404_naming_the_slug(api: APIClient, db: None) -> None:
    for method in ("get", "put", "patch", "delete"):
        response = getattr(api, method)("/api/v1/flows/nope/", {}, format="json")
        assert response.status_code == 404, method
        assert paths(response) == ["slug"]
    assert api.post("/api/v1/flows/nope/validate/").status_code == 404
    assert api.get("/api/v1/flows/nope/versions/").status_code == 404
    assert api.post("/api/v1/flows/nope/runs/", {}, format="json").status_code == 404
