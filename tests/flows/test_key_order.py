"""A flow file keeps its key order through the database: whatever door imports it (the API,
the admin's import page, ``importflow``) and whatever door exports it (the API, the admin's
export, ``exportflow``), a file written in the documented order comes back with the same
text — the order of a mapping's targets, of params and of headers included (decision 0033).
"""

from __future__ import annotations

import json
import random
import string
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from pytest_httpserver import HTTPServer
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flowplatform.jsonfields import same_json
from flows.flowfile import apply_flow_file, export_flow
from flows.models import Flow, FlowNode, FlowRun, FlowVersion
from flows.services import RerunError, rerun, start_run, wait_for_run
from nodes.registry import registry
from scheduling.models import FlowSchedule
from scheduling.triggers.models import FlowTrigger
from tests.admin.records import ALL_SUCCEEDED, recorded_run
from tests.api.conftest import make_user
from tests.conftest import WorkerProcess
from tests.flows.helpers import (
    SOURCE_DB_URL,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    posted_records,
)

pytestmark = pytest.mark.usefixtures("example_connections")

SEEDS = range(6)
#: Fields of the API's flow document that are not part of the flow file.
DOCUMENT_ONLY = ("version", "created_at", "updated_at")


def file_text(data: dict[str, Any]) -> str:
    """A flow file as ``exportflow`` and the admin's export write it."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def jsonb_order(keys: list[str]) -> list[str]:
    """The order PostgreSQL's ``jsonb`` gives an object's keys: shortest first, then bytes."""
    return sorted(keys, key=lambda key: (len(key.encode()), key.encode()))


def data_keys(rng: random.Random, count: int, prefix: str = "") -> list[str]:
    """Distinct keys of mixed lengths (non-ASCII and digit-only ones among them), in an order
    ``jsonb`` would change."""
    pool = ["größe", "id", "v2", "10", "2", "créé_le", "a"]
    keys: dict[str, None] = {}  # not a set: the same seed must give the same keys in order
    while len(keys) < count:
        length = rng.randint(1, 14)
        word = "".join(rng.choices(string.ascii_lowercase + "_", k=length))
        keys[rng.choice([word, word, rng.choice(pool)])] = None
    ordered = [prefix + key for key in keys]
    rng.shuffle(ordered)
    while count > 1 and ordered == jsonb_order(ordered):
        rng.shuffle(ordered)
    return ordered


def in_config_order(node_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """A config written in the documented order: its type's fields in declaration order."""
    cls = registry.get(node_type)
    assert cls is not None
    return {name: values[name] for name in cls.Config.model_fields if name in values}


def mapping_value(rng: random.Random, sources: list[str]) -> Any:
    source = rng.choice(sources)
    return rng.choice(
        [
            source,
            {"source": source, "cast": rng.choice(["str", "int", "float"])},
            {"source": source, "default": rng.randint(0, 9)},
            {"value": rng.choice(["x", 1, True, None, {"z": 1, "a": 2}])},
        ]
    )


def random_flow(seed: int, slug: str) -> dict[str, Any]:
    """Two lines — SQL → filter → map_fields → http_post, and an API → map_fields → http_post —
    with random mappings, params, query parameters and headers, schedules and a webhook with
    params, all in the documented order except the keys that are data."""
    rng = random.Random(seed)
    params = {key: rng.choice([0, "x", 2.5, None]) for key in data_keys(rng, rng.randint(2, 6))}
    bound = [f"%({key})s is not null" for key in params if key.isidentifier()]
    query = "select id, status, amount from orders where " + (" and ".join(bound) or "true")
    headers = {f"X-{key}": f"v{i}" for i, key in enumerate(data_keys(rng, rng.randint(2, 5)))}
    sources = ["id", "status", "amount", "customer.email"]
    nodes = [
        {
            "key": "orders",
            "type": "sql_query",
            "config": in_config_order(
                "sql_query",
                {
                    "connection": "warehouse",
                    "query": query,
                    "params": params,
                    "batch_size": rng.choice([50, 500]),
                },
            ),
            "policy": {"max_retries": 2, "timeout_s": 30.5},
        },
        {
            "key": "paid",
            "type": "filter",
            "config": {"conditions": [{"field": "status", "op": "eq", "value": "paid"}]},
        },
        {
            "key": "shape",
            "type": "map_fields",
            "config": {
                "mapping": {
                    target: mapping_value(rng, sources)
                    for target in data_keys(rng, rng.randint(2, 8), "out_")
                }
            },
            "ui": {"x": 10.5, "y": float(rng.randint(0, 400))},
        },
        {
            "key": "push",
            "type": "http_post",
            "config": in_config_order(
                "http_post",
                {"url": "/ingest", "connection": "crm", "headers": headers, "batch_size": 100},
            ),
        },
        {
            "key": "api",
            "type": "http_request",
            "config": in_config_order(
                "http_request",
                {
                    "url": "/items",
                    "connection": "crm",
                    "query": {key: f"q{i}" for i, key in enumerate(data_keys(rng, 3))},
                    "headers": {f"X-{key}": "1" for key in data_keys(rng, 3)},
                    "records_path": "items",
                },
            ),
        },
        {
            "key": "rename",
            "type": "map_fields",
            "config": {
                "mapping": {target: rng.choice(sources) for target in data_keys(rng, 4, "r_")},
                "keep_unmapped": True,
            },
        },
        {
            "key": "send",
            "type": "http_post",
            "config": {"url": "/other", "connection": "crm"},
        },
    ]
    edges = [
        {"from": "orders", "to": "paid"},
        {"from": "paid", "to": "shape"},
        {"from": "shape", "to": "push"},
        {"from": "api", "to": "rename"},
        {"from": "rename", "to": "send"},
    ]
    flow: dict[str, Any] = {"slug": slug, "name": f"Key order {seed}"}
    if rng.random() < 0.5:
        flow["description"] = "Keys «in order»"
    if rng.random() < 0.5:
        flow["priority"] = rng.randint(1, 9)
    if rng.random() < 0.5:
        flow["max_active_runs"] = rng.randint(1, 3)
    flow["nodes"], flow["edges"] = nodes, edges
    flow["schedules"] = [
        {"cron": "0 6 * * 1-5", "timezone": "Europe/Madrid", "params": dict.fromkeys(params, 1)},
        {"every": "30m", "params": dict.fromkeys(data_keys(rng, 4), "p"), "enabled": False},
    ]
    flow["triggers"] = [{"webhook": f"{slug}-hook", "params": dict.fromkeys(data_keys(rng, 3), 1)}]
    flow["alerts"] = [{"on": ["failed"], "email": ["ops@example.com"]}]
    return flow


# --- the doors -----------------------------------------------------------------------------


@pytest.fixture
def root(db: None) -> Any:
    return make_user("root", superuser=True)


def api_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def import_by_api(root: Any, text: str, tmp_path: Path) -> None:
    response = api_client(root).post(
        "/api/v1/flows/", text.encode(), content_type="application/json"
    )
    assert response.status_code == 201, response.content


def import_by_admin(root: Any, text: str, tmp_path: Path) -> None:
    client = Client()
    client.force_login(root)
    upload = SimpleUploadedFile("flow.json", text.encode(), content_type="application/json")
    response = client.post(reverse("admin:flows_flow_import"), {"file": upload})
    assert response.status_code == 302, response.context and response.context.get("problems")


def import_by_command(root: Any, text: str, tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text(text)
    out = StringIO()
    call_command("importflow", str(path), stdout=out, stderr=StringIO())
    assert "created (version 1)" in out.getvalue()


def export_by_api(root: Any, slug: str) -> str:
    response = api_client(root).get(f"/api/v1/flows/{slug}/")
    assert response.status_code == 200
    document = json.loads(response.content)
    return file_text({k: v for k, v in document.items() if k not in DOCUMENT_ONLY})


def export_by_admin(root: Any, slug: str) -> str:
    client = Client()
    client.force_login(root)
    flow = Flow.objects.get(slug=slug)
    response = client.get(reverse("admin:flows_flow_export", args=[flow.pk]))
    assert response.status_code == 200
    return response.content.decode()


def export_by_command(root: Any, slug: str) -> str:
    out = StringIO()
    call_command("exportflow", slug, stdout=out)
    return out.getvalue()


IMPORTS = {"api": import_by_api, "admin": import_by_admin, "importflow": import_by_command}
EXPORTS = {"api": export_by_api, "admin": export_by_admin, "exportflow": export_by_command}


@pytest.mark.parametrize("door", list(IMPORTS))
@pytest.mark.parametrize("seed", SEEDS)
def test_an_imported_file_exports_with_its_own_text(
    root: Any, tmp_path: Path, door: str, seed: int
) -> None:
    flow = random_flow(seed, f"order-{door}-{seed}")
    text = file_text(flow)
    IMPORTS[door](root, text, tmp_path)
    for name, export in EXPORTS.items():
        assert export(root, flow["slug"]) == text, f"exported by {name}"
    # What runs keeps the order too: the version's mapping is the file's.
    version = FlowVersion.objects.get(flow__slug=flow["slug"])
    shape = next(n for n in version.definition["nodes"] if n["key"] == "shape")
    assert list(shape["config"]["mapping"]) == list(flow["nodes"][2]["config"]["mapping"])


def test_the_generated_files_are_ones_jsonb_would_reorder() -> None:
    """The property above would fail on ``jsonb``: the files' data keys are not in its order."""
    for seed in SEEDS:
        mapping = random_flow(seed, "x")["nodes"][2]["config"]["mapping"]
        assert list(mapping) != jsonb_order(list(mapping))


def test_the_columns_keep_json_text(db: None) -> None:
    """On PostgreSQL the columns are ``json`` (kept as written), not ``jsonb``."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite stores JSON as text")
    columns = [
        (FlowNode, "config"),
        (FlowVersion, "definition"),
        (FlowSchedule, "params"),
        (FlowTrigger, "params"),
    ]
    with connection.cursor() as cursor:
        for model, name in columns:
            cursor.execute(
                "select data_type from information_schema.columns"
                " where table_name = %s and column_name = %s",
                [model._meta.db_table, name],
            )
            assert cursor.fetchone() == ("json",), f"{model.__name__}.{name}"


# --- a change of order is a change ---------------------------------------------------------


def test_reordering_a_mapping_makes_a_new_version(root: Any, tmp_path: Path) -> None:
    flow = random_flow(0, "reorder")
    import_by_command(root, file_text(flow), tmp_path)
    mapping = flow["nodes"][2]["config"]["mapping"]
    flow["nodes"][2]["config"]["mapping"] = dict(reversed(mapping.items()))
    path = tmp_path / "flow.json"
    path.write_text(file_text(flow))

    out = StringIO()
    call_command("importflow", str(path), stdout=out)
    assert out.getvalue().strip() == "flow 'reorder' updated (version 2)"
    assert export_by_command(root, "reorder") == file_text(flow)
    latest = FlowVersion.objects.get(flow__slug="reorder", number=2)
    shape = next(n for n in latest.definition["nodes"] if n["key"] == "shape")
    assert list(shape["config"]["mapping"]) == list(reversed(mapping))

    out = StringIO()
    call_command("importflow", str(path), stdout=out)
    assert out.getvalue().strip() == "flow 'reorder' unchanged (version 2)"


def test_reordering_schedule_and_trigger_params_is_saved(root: Any, tmp_path: Path) -> None:
    flow = random_flow(1, "params")
    import_by_command(root, file_text(flow), tmp_path)
    for item in (flow["schedules"][1], flow["triggers"][0]):
        item["params"] = dict(reversed(item["params"].items()))
    response = api_client(root).put(
        "/api/v1/flows/params/", file_text(flow).encode(), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert export_by_command(root, "params") == file_text(flow)
    assert list(FlowTrigger.objects.get().params) == list(flow["triggers"][0]["params"])


def test_an_api_patch_keeps_the_order_of_what_it_sends(root: Any, tmp_path: Path) -> None:
    flow = random_flow(2, "patched")
    import_by_command(root, file_text(flow), tmp_path)
    headers = {"X-Zeta": "1", "X-A": "2", "X-Middle-Long-Name": "3"}
    flow["nodes"][3]["config"]["headers"] = headers
    client = api_client(root)
    response = client.patch(
        "/api/v1/flows/patched/",
        json.dumps({"nodes": flow["nodes"]}).encode(),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert list(json.loads(response.content)["nodes"][3]["config"]["headers"]) == list(headers)
    assert list(export_flow(Flow.objects.get(slug="patched"))["nodes"][3]["config"]["headers"]) == [
        "X-Zeta",
        "X-A",
        "X-Middle-Long-Name",
    ]


# --- what runs: map_fields writes its fields in the mapping's order -------------------------

#: A mapping ``jsonb`` would reorder (it puts "b" first and "zz_last_but_long" last).
MAPPING = {
    "zz_last_but_long": "id",
    "total_amount": {"source": "amount", "cast": "float"},
    "b": "email",
    "status_text": "status",
}


def start_and_wait(slug: str) -> FlowRun:
    run = start_run(slug)
    if not run.is_finished:
        run = wait_for_run(run, timeout=60)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def delivered_orders(peer: HTTPServer) -> list[list[str]]:
    """The field names of every record the peer received, in the order they came."""
    return [list(record) for record in posted_records(peer)]


def run_with_mapping_saved_and_reordered(root: Any, peer: HTTPServer, flow: dict[str, Any]) -> None:
    """Save the flow through the API with MAPPING, run it; reorder the mapping (a PATCH), run
    again: each run's records have the fields in the order of the mapping it ran."""
    add_connection("crm", peer.url_for("/"))
    add_connection("warehouse", SOURCE_DB_URL)
    peer.expect_request("/ingest", method="POST").respond_with_json({"ok": True})
    client = api_client(root)
    with orders_table(40) as table:
        point_minimal_flow_at(flow, table.name)
        flow["nodes"][2]["config"]["mapping"] = MAPPING
        created = client.post("/api/v1/flows/", json.dumps(flow), content_type="application/json")
        assert created.status_code == 201, created.content
        start_and_wait(flow["slug"])
        first = delivered_orders(peer)
        assert first and all(fields == list(MAPPING) for fields in first)

        peer.clear_log()
        flow["nodes"][2]["config"]["mapping"] = dict(reversed(MAPPING.items()))
        patched = client.patch(
            f"/api/v1/flows/{flow['slug']}/",
            json.dumps({"nodes": flow["nodes"]}),
            content_type="application/json",
        )
        assert patched.status_code == 200, patched.content
        assert patched.json()["version"] == 2
        start_and_wait(flow["slug"])
        second = delivered_orders(peer)
        assert len(second) == len(first)
        assert all(fields == list(reversed(MAPPING)) for fields in second)


@pytest.mark.worker
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="workers share the PostgreSQL test database (on SQLite runs execute in-process)",
)
def test_map_fields_output_follows_the_saved_mapping_on_a_worker(
    worker: WorkerProcess, root: Any, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    run_with_mapping_saved_and_reordered(root, httpserver, minimal_flow)


def test_map_fields_output_follows_the_saved_mapping_in_process(
    transactional_db: None,
    eager: None,
    root: Any,
    httpserver: HTTPServer,
    minimal_flow: dict[str, Any],
) -> None:
    run_with_mapping_saved_and_reordered(root, httpserver, minimal_flow)


def test_a_rerun_does_not_reuse_a_mapping_whose_order_changed(
    root: Any, minimal_flow: dict[str, Any]
) -> None:
    flow, _ = apply_flow_file(minimal_flow)
    run = recorded_run(flow, "succeeded", ALL_SUCCEEDED, with_outputs=True)
    mapping = minimal_flow["nodes"][2]["config"]["mapping"]
    minimal_flow["nodes"][2]["config"]["mapping"] = dict(reversed(mapping.items()))
    apply_flow_file(minimal_flow)
    with pytest.raises(RerunError, match="node 'shape' changed since run"):
        rerun(run, from_node="push", latest=True)


def test_a_form_sees_a_change_of_key_order_as_a_change() -> None:
    field = FlowSchedule._meta.get_field("params").formfield()
    assert field.has_changed({"b": 1, "a": 2}, '{"a": 2, "b": 1}')
    assert not field.has_changed({"b": 1, "a": 2}, '{"b": 1, "a": 2}')
    assert field.has_changed({"b": 1}, '{"b": 1, "a": 2}')


def test_same_json_compares_key_order_at_every_depth() -> None:
    assert same_json({"a": [{"x": 1, "y": 2}]}, {"a": [{"x": 1, "y": 2}]})
    assert not same_json({"a": [{"x": 1, "y": 2}]}, {"a": [{"y": 2, "x": 1}]})
    assert not same_json({"a": 1}, {"a": 1.0})
    assert not same_json({"a": True}, {"a": 1})
    assert not same_json([1, 2], [1, 2, 3])
