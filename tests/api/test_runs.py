"""Runs over the API: start, list with filters and ordering, inspect, cancel, re-run."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from flows.models import Flow, FlowRun, NodeRun
from flows.services import start_run

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"
FLOW_RUNS = "/api/v1/flows/paid-orders-to-crm/runs/"


def test_start_a_run_answers_202_with_the_queued_run(api: APIClient, flow: Flow) -> None:
    response = api.post(FLOW_RUNS, {"params": {"min_id": 1000}}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["trigger"] == "api"
    assert body["params"] == {"min_id": 1000}
    assert body["version"] == 1
    assert [n["node_key"] for n in body["node_runs"]] == ["orders", "paid", "shape", "push"]
    assert response["Location"].endswith(f"{RUNS}{body['id']}/")
    assert FlowRun.objects.get(pk=body["id"]).trigger == "api"


def test_start_with_a_data_interval(api: APIClient, flow: Flow) -> None:
    body = {"interval_start": "2026-01-01T00:00:00Z", "interval_end": "2026-01-02T00:00:00Z"}
    response = api.post(FLOW_RUNS, body, format="json")
    assert response.status_code == 202
    assert response.json()["interval_end"] == "2026-01-02T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"params": [1, 2]}, "params"),
        ({"params": {}, "priority": 1}, "priority"),
        ({"interval_start": "2026-01-01T00:00:00Z"}, "interval_end"),
        ({"interval_start": "yesterday", "interval_end": "today"}, "interval_start"),
        ({"interval_start": 5, "interval_end": 6}, "interval_start"),
        (
            {"interval_start": "2026-01-02T00:00:00Z", "interval_end": "2026-01-01T00:00:00Z"},
            "interval_end",
        ),
    ],
)
def test_start_with_bad_input_names_the_field(
    api: APIClient, flow: Flow, body: dict[str, object], path: str
) -> None:
    response = api.post(FLOW_RUNS, body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == path
    assert not FlowRun.objects.exists()


def test_starting_an_invalid_stored_flow_is_a_conflict_listing_the_problems(
    api: APIClient, flow: Flow
) -> None:
    flow.nodes.filter(key="paid").update(config={"conditions": [{"field": "x", "op": "eqq"}]})
    response = api.post(FLOW_RUNS, {}, format="json")
    assert response.status_code == 409
    assert response.json()["errors"][0]["path"] == "nodes[1].config.conditions[0].op"
    assert not FlowRun.objects.exists()


def make_runs(flow: Flow) -> list[FlowRun]:
    runs = [start_run(flow, trigger=t) for t in ("api", "schedule", "manual")]
    FlowRun.objects.filter(pk=runs[1].pk).update(status="failed")
    FlowRun.objects.filter(pk=runs[2].pk).update(
        status="succeeded", created_at=timezone.now() - timedelta(days=2)
    )
    return runs


def ids(response: object) -> list[str]:
    return [r["id"] for r in response.json()["results"]]  # type: ignore[attr-defined]


def test_list_filters_by_status_trigger_flow_and_creation_time(api: APIClient, flow: Flow) -> None:
    api_run, schedule_run, old_run = (str(r.id) for r in make_runs(flow))
    assert ids(api.get(RUNS, {"status": "failed"})) == [schedule_run]
    assert set(ids(api.get(f"{RUNS}?status=failed&status=succeeded"))) == {schedule_run, old_run}
    assert ids(api.get(RUNS, {"trigger": "api"})) == [api_run]
    assert len(ids(api.get(RUNS, {"flow": "paid-orders-to-crm"}))) == 3
    assert ids(api.get(RUNS, {"flow": "other"})) == []
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert set(ids(api.get(RUNS, {"created_after": since}))) == {api_run, schedule_run}
    assert ids(api.get(RUNS, {"created_before": since})) == [old_run]
    assert set(ids(api.get(FLOW_RUNS, {"status": "queued"}))) == {api_run}


def test_list_is_newest_first_and_orders_on_request(api: APIClient, flow: Flow) -> None:
    api_run, schedule_run, old_run = (str(r.id) for r in make_runs(flow))
    assert ids(api.get(RUNS)) == [schedule_run, api_run, old_run]
    assert ids(api.get(RUNS, {"ordering": "created_at"})) == [old_run, api_run, schedule_run]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"status": "sleeping"}, "status"),
        ({"trigger": "cron"}, "trigger"),
        ({"created_after": "last week"}, "created_after"),
        ({"ordering": "password"}, "ordering"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"flow": "a\x00b"}, "flow"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(
    api: APIClient, db: None, query: dict[str, str], path: str
) -> None:
    response = api.get(RUNS, query)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == path


def test_retrieve_has_node_runs_with_status_rows_and_timings(api: APIClient, flow: Flow) -> None:
    run = start_run(flow)
    NodeRun.objects.filter(run=run, node_key="orders").update(
        status="succeeded", attempts=1, rows_out=42, duration_ms=15
    )
    body = api.get(f"{RUNS}{run.id}/").json()
    orders = body["node_runs"][0]
    assert (orders["node_key"], orders["status"], orders["rows_out"]) == ("orders", "succeeded", 42)
    assert (orders["attempts"], orders["duration_ms"]) == (1, 15)
    assert body["flow"] == "paid-orders-to-crm"


def test_unknown_or_malformed_run_id_is_404(api: APIClient, db: None) -> None:
    for key in (str(uuid.uuid4()), "not-a-uuid"):
        response = api.get(f"{RUNS}{key}/")
        assert response.status_code == 404
        assert response.json()["errors"][0]["path"] == "id"
    assert api.post(f"{RUNS}{uuid.uuid4()}/cancel/").status_code == 404


def test_cancel_marks_the_run_and_its_pending_nodes_cancelled(api: APIClient, flow: Flow) -> None:
    run = start_run(flow)
    response = api.post(f"{RUNS}{run.id}/cancel/")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert {n["status"] for n in response.json()["node_runs"]} <= {"cancelled", "skipped"}
    assert FlowRun.objects.get(pk=run.pk).status == "cancelled"


def test_cancelling_a_finished_run_is_a_conflict(api: APIClient, flow: Flow) -> None:
    run = start_run(flow)
    FlowRun.objects.filter(pk=run.pk).update(status="succeeded")
    response = api.post(f"{RUNS}{run.id}/cancel/")
    assert response.status_code == 409
    assert FlowRun.objects.get(pk=run.pk).status == "succeeded"


def test_rerun_starts_a_new_run_on_the_same_version(api: APIClient, flow: Flow) -> None:
    run = start_run(flow, params={"min_id": 5})
    response = api.post(f"{RUNS}{run.id}/rerun/", {}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["trigger"] == "rerun" and body["params"] == {"min_id": 5}
    assert body["id"] != str(run.id)


def test_rerun_from_a_node_needs_its_upstream_to_have_succeeded(api: APIClient, flow: Flow) -> None:
    run = start_run(flow)
    response = api.post(f"{RUNS}{run.id}/rerun/", {"from_node": "shape"}, format="json")
    assert response.status_code == 409
    assert response.json()["errors"][0]["path"] == "from_node"
    unknown = api.post(f"{RUNS}{run.id}/rerun/", {"from_node": "nope"}, format="json")
    assert unknown.status_code == 409
    assert FlowRun.objects.count() == 1
