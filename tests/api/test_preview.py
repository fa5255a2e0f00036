"""Data preview: a node and its upstream nodes on a sample, in the web process, without effects."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_httpserver import HTTPServer
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.models import Flow, FlowAccess
from nodes.models import Connection
from tests.api.conftest import VIEWER_PERMS, make_user
from tests.flows.helpers import (
    SOURCE_DB_URL,
    add_connection,
    orders_table,
    point_minimal_flow_at,
)

PREVIEW = "/api/v1/flows/paid-orders-to-crm/preview/"
UNSAVED = "/api/v1/flows/preview/"


@pytest.fixture
def crm(httpserver: HTTPServer) -> HTTPServer:
    """The ``crm`` connection (with a bearer token) to a loopback peer that records requests."""
    httpserver.expect_request("/ingest", method="POST").respond_with_json({"ok": True})
    add_connection(
        "crm", httpserver.url_for("/"), {"Authorization": "Bearer s3cr3t-crm-token-value"}
    )
    return httpserver


@pytest.fixture
def orders(db: None, crm: HTTPServer, minimal_flow: dict[str, Any]) -> Any:
    """The minimal flow on a 300-row orders table, stored, with its connections."""
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(300) as table:
        flow = point_minimal_flow_at(minimal_flow, table.name)
        api = token_client(make_user("root", superuser=True))
        assert api.post("/api/v1/flows/", flow, format="json").status_code == 201
        yield table, flow


def by_key(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["key"]: entry for entry in answer["nodes"]}


def token_client(user: User) -> APIClient:
    """A client with ``user``'s token (made once per user)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def root() -> APIClient:
    return token_client(User.objects.get(username="root"))


def test_preview_shows_every_node_on_the_way_and_sends_nothing(
    orders: Any, crm: HTTPServer
) -> None:
    table, _ = orders
    response = root().post(PREVIEW, {"node": "push", "limit": 10}, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert [e["key"] for e in answer["nodes"]] == ["orders", "paid", "shape", "push"]
    nodes = by_key(answer)
    # The source read 10 rows; the filter kept the paid ones among them.
    assert [r["id"] for r in nodes["orders"]["records"]] == list(range(1, 11))
    assert nodes["orders"]["limit_reached"] is True
    paid = [r for r in table.rows[:10] if r[3] == "paid" and r[4] > 0]
    assert [r["id"] for r in nodes["paid"]["records"]] == [r[0] for r in paid]
    assert nodes["paid"]["inputs"] == {"in": ["orders"]}
    assert nodes["shape"]["schema"] is not None and "total" in nodes["shape"]["schema"]
    assert nodes["orders"]["sample_schema"]["amount"] == "decimal"
    # The sink showed what it would send, and the peer received nothing.
    push = nodes["push"]
    assert push["status"] == "dry_run"
    assert len(push["records"]) == 1  # one request of up to 100 records
    request = push["records"][0]
    assert request["method"] == "POST" and request["url"].endswith("/ingest")
    assert [r["order_id"] for r in request["body"]] == [r[0] for r in paid]
    assert request["headers"]["Authorization"] == "***"
    assert "s3cr3t" not in response.content.decode()
    assert crm.log == []


def test_an_unsaved_document_is_previewed_without_being_saved(orders: Any) -> None:
    _, flow = orders
    document = {**flow, "slug": "a-new-flow", "name": "Draft"}
    document["nodes"][1]["config"]["conditions"] = [
        {"field": "status", "op": "eq", "value": "refunded"}
    ]
    body = {"node": "paid", "limit": 30, "flow": document}
    response = root().post(UNSAVED, body, format="json")
    assert response.status_code == 200, response.json()
    paid = by_key(response.json())["paid"]["records"]
    assert paid and {r["status"] for r in paid} == {"refunded"}
    assert not Flow.objects.filter(slug="a-new-flow").exists()


def test_the_limit_is_pushed_down_into_the_query(orders: Any) -> None:
    _, flow = orders
    # Half a billion rows, and the sixth divides by zero: only a query that stops at the
    # limit (LIMIT in the SQL, not a client reading a first batch of 1000) answers, and fast.
    flow["nodes"][0]["config"]["query"] = (
        "select id, 'paid' as status, 10 / (id - 6) as amount"
        " from (select generate_series(1, 500000000) as id) as s where id > %(min_id)s"
    )
    flow["nodes"][0]["config"]["batch_size"] = 1000
    started = time.monotonic()
    response = root().post(
        UNSAVED,
        {"node": "orders", "limit": 5, "params": {"min_id": 0}, "flow": {**flow, "slug": "big"}},
        format="json",
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.json()
    orders_entry = by_key(response.json())["orders"]
    assert orders_entry["status"] == "ok", orders_entry
    assert [r["id"] for r in orders_entry["records"]] == [1, 2, 3, 4, 5]
    assert elapsed < 5


def test_a_preview_is_bounded_in_time(orders: Any, settings: Any) -> None:
    _, flow = orders
    settings.FLOWPLATFORM_PREVIEW_TIMEOUT_S = 1
    flow["nodes"][0]["config"]["query"] = "select pg_sleep(30) as id"
    started = time.monotonic()
    response = root().post(
        UNSAVED, {"node": "shape", "flow": {**flow, "slug": "slow"}}, format="json"
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["timed_out"] is True
    nodes = by_key(answer)
    assert nodes["orders"]["status"] == "timed_out"
    assert "time limit (1 s)" in nodes["orders"]["message"]
    assert nodes["paid"]["status"] == "not_run"
    assert elapsed < 5


def test_a_failing_node_is_reported_in_its_entry(orders: Any) -> None:
    _, flow = orders
    flow["nodes"][0]["config"]["query"] = "select * from no_such_table_here"
    response = root().post(UNSAVED, {"node": "paid", "flow": flow}, format="json")
    assert response.status_code == 200
    nodes = by_key(response.json())
    assert nodes["orders"]["status"] == "failed"
    assert "no_such_table_here" in nodes["orders"]["message"]
    assert nodes["paid"]["status"] == "not_run"


def test_the_answer_is_bounded_in_size(orders: Any) -> None:
    from django.test import override_settings

    with override_settings(FLOWPLATFORM_PREVIEW_MAX_BYTES=2000):
        response = root().post(PREVIEW, {"node": "orders", "limit": 100}, format="json")
    entry = by_key(response.json())["orders"]
    assert entry["cut_for_size"] is True
    assert 0 < len(entry["records"]) < entry["count"] == 100


def test_only_the_part_leading_to_the_node_must_be_valid(orders: Any) -> None:
    _, flow = orders
    flow["nodes"][3]["config"] = {"url": "not a url"}  # the sink, downstream of "paid"
    ok = root().post(UNSAVED, {"node": "paid", "flow": flow}, format="json")
    assert ok.status_code == 200, ok.json()
    bad = root().post(UNSAVED, {"node": "push", "flow": flow}, format="json")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["path"].startswith("nodes[3].config")
    assert bad.json()["errors"][0]["node"] == "push"


def test_bad_requests_name_the_field(orders: Any) -> None:
    api = root()
    unknown = api.post(PREVIEW, {"node": "nope"}, format="json")
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["path"] == "node"
    assert "no node 'nope'" in unknown.json()["errors"][0]["message"]
    too_many = api.post(PREVIEW, {"node": "paid", "limit": 100000}, format="json")
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["path"] == "limit"
    extra = api.post(PREVIEW, {"node": "paid", "rows": 3}, format="json")
    assert extra.status_code == 400 and extra.json()["errors"][0]["path"] == "rows"


def test_preview_needs_the_run_right(orders: Any) -> None:
    viewer = token_client(make_user("viewer", *VIEWER_PERMS))
    assert viewer.post(PREVIEW, {"node": "paid"}, format="json").status_code == 403
    stranger = make_user("stranger")
    flow = Flow.objects.get(slug="paid-orders-to-crm")
    FlowAccess.objects.create(flow=Flow.objects.create(slug="other", name="o"), user=stranger,
                              can_view=True, can_run=True)  # fmt: skip
    # Run on some other flow passes the gate; this flow is not even visible: 404.
    assert token_client(stranger).post(PREVIEW, {"node": "paid"}, format="json").status_code == 404
    FlowAccess.objects.create(flow=flow, user=stranger, can_view=True, can_run=True)
    response = token_client(stranger).post(PREVIEW, {"node": "paid"}, format="json")
    assert response.status_code == 200, response.json()
    nobody = token_client(make_user("nobody"))
    assert nobody.post(PREVIEW, {"node": "paid"}, format="json").status_code == 403


def test_an_unsaved_document_needs_what_saving_and_running_it_would(orders: Any) -> None:
    _, flow = orders
    runner = make_user("runner", *VIEWER_PERMS, "flows.run_flow")
    body = {"node": "paid", "flow": {**flow, "slug": "brand-new"}}
    refused = token_client(runner).post(UNSAVED, body, format="json")
    assert refused.status_code == 403
    assert "add_flow" in refused.json()["errors"][0]["message"]
    # Edits of a stored flow: the change and run rights on it.
    stored = {"node": "paid", "flow": flow}
    assert token_client(runner).post(UNSAVED, stored, format="json").status_code == 403
    editor = make_user("editor")
    FlowAccess.objects.create(
        flow=Flow.objects.get(slug=flow["slug"]), user=editor, can_view=True, can_change=True,
        can_run=True,
    )  # fmt: skip
    assert token_client(editor).post(UNSAVED, stored, format="json").status_code == 200
    assert token_client(editor).post(UNSAVED, body, format="json").status_code == 403
    creator = make_user("creator", "flows.add_flow", "flows.run_flow")
    assert token_client(creator).post(UNSAVED, body, format="json").status_code == 200


def test_preview_needs_the_use_of_the_connections(orders: Any) -> None:
    runner = make_user("runner", *VIEWER_PERMS, "flows.run_flow")
    warehouse = Connection.objects.get(name="warehouse")
    warehouse.allowed_groups.create(name="analysts")
    response = token_client(runner).post(PREVIEW, {"node": "paid"}, format="json")
    assert response.status_code == 403
    assert response.json()["errors"][0]["path"] == "nodes[0].config.connection"
    runner.groups.add(warehouse.allowed_groups.get())
    assert token_client(runner).post(PREVIEW, {"node": "paid"}, format="json").status_code == 200


def test_what_a_sink_would_send_is_not_fed_further_down(orders: Any, crm: HTTPServer) -> None:
    _, flow = orders
    flow["nodes"].append({"key": "audit", "type": "dummy_audit", "config": {}})
    flow["edges"].append({"from": "push", "to": "audit"})
    response = root().post(UNSAVED, {"node": "audit", "flow": flow}, format="json")
    assert response.status_code == 200, response.json()
    nodes = by_key(response.json())
    assert nodes["push"]["status"] == "dry_run"
    assert nodes["audit"]["status"] == "not_run"
    assert "upstream node 'push'" in nodes["audit"]["message"]
    assert crm.log == []
