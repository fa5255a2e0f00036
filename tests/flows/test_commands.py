"""The flows-as-code commands: importflow, exportflow, runflow, addconnection."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from flows.models import Flow, FlowNode, FlowVersion
from nodes.models import Connection
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def write(tmp_path: Path, data: Any, name: str = "flow.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.usefixtures("example_connections")
def test_import_creates_then_updates(tmp_path: Path, minimal_flow: dict[str, Any]) -> None:
    path = write(tmp_path, minimal_flow)
    assert run("importflow", str(path)).strip() == "flow 'paid-orders-to-crm' created (version 1)"
    assert run("importflow", str(path)).strip() == "flow 'paid-orders-to-crm' unchanged (version 1)"
    minimal_flow["nodes"][3]["config"]["batch_size"] = 10
    write(tmp_path, minimal_flow)
    assert run("importflow", str(path)).strip() == "flow 'paid-orders-to-crm' updated (version 2)"
    assert run("importflow", str(path)).strip() == "flow 'paid-orders-to-crm' unchanged (version 2)"
    minimal_flow["name"] = "Renamed"  # not the graph: the same version, but updated
    write(tmp_path, minimal_flow)
    assert run("importflow", str(path)).strip() == "flow 'paid-orders-to-crm' updated (version 2)"


@pytest.mark.usefixtures("example_connections")
def test_an_imported_file_exports_with_the_same_text(tmp_path: Path) -> None:
    """Keys come back in the documented order; only the keys inside a mapping (data, not
    fields) come back in the database's order."""
    text = (ROOT / "examples" / "paid-orders.json").read_text()
    run("importflow", str(write(tmp_path, text)))
    exported = run("exportflow", "paid-orders-to-crm")

    def canonical(document: str) -> str:
        data = json.loads(document)
        mapping = data["nodes"][2]["config"]["mapping"]
        data["nodes"][2]["config"]["mapping"] = dict(sorted(mapping.items()))
        return json.dumps(data, indent=2, ensure_ascii=False)

    assert canonical(exported) == canonical(text)
    policy_and_ports = json.loads(text)
    policy_and_ports["nodes"][0]["policy"] = {"timeout_s": 60, "max_retries": 2}
    policy_and_ports["edges"][0] = {
        "from": "orders",
        "from_port": "out",
        "to": "paid",
        "to_port": "in",
    }
    run("importflow", str(write(tmp_path, policy_and_ports)))
    again = json.loads(run("exportflow", "paid-orders-to-crm"))
    assert list(again["nodes"][0]["policy"]) == ["max_retries", "timeout_s"]
    assert list(again["edges"][0]) == ["from", "from_port", "to", "to_port"]
    assert list(again) == ["slug", "name", "description", "nodes", "edges"]
    assert list(again["nodes"][0]) == ["key", "type", "config", "policy"]


@pytest.mark.usefixtures("example_connections")
def test_several_problems_are_printed_in_order_the_first_first(
    tmp_path: Path, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    minimal_flow["nodes"][3]["config"]["batch_size"] = 0
    minimal_flow["edges"].append({"from": "push", "to": "orders"})
    err = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(
            "importflow", str(write(tmp_path, minimal_flow)), stdout=StringIO(), stderr=err
        )
    lines = err.getvalue().splitlines()
    assert [line.split(": ", 1)[1].split(" ")[0] for line in lines] == [
        "nodes[1].config.conditions[0].op",
        "nodes[3].config.batch_size",
        "edges[3].to",
    ]
    assert "'eqq' is not one of eq, ne, gt, gte, lt, lte, in, not_in, contains" in lines[0]
    assert str(caught.value).endswith(
        "3 problems (above), nothing changed; the first: nodes[1].config.conditions[0].op "
        "(node 'paid'): 'eqq' is not one of eq, ne, gt, gte, lt, lte, in, not_in, contains, "
        "startswith, endswith, is_null, not_null, regex"
    )


def test_a_missing_connection_is_refused_when_the_file_is_imported(
    tmp_path: Path, minimal_flow: dict[str, Any]
) -> None:
    Connection.objects.create(name="crm")
    with pytest.raises(CommandError) as caught:
        run("importflow", str(write(tmp_path, minimal_flow)))
    assert (
        "nodes[0].config.connection (node 'orders'): connection 'warehouse' does not exist"
        in str(caught.value)
    )
    assert Flow.objects.count() == 0


@pytest.mark.usefixtures("example_connections")
def test_export_round_trips(tmp_path: Path, minimal_flow: dict[str, Any]) -> None:
    run("importflow", str(write(tmp_path, minimal_flow)))
    exported = json.loads(run("exportflow", "paid-orders-to-crm"))
    assert exported == minimal_flow
    # and importing the export changes nothing
    run("importflow", str(write(tmp_path, exported, "again.json")))
    assert FlowVersion.objects.count() == 1


@pytest.mark.usefixtures("example_connections")
def test_export_to_a_file(tmp_path: Path, minimal_flow: dict[str, Any]) -> None:
    run("importflow", str(write(tmp_path, minimal_flow)))
    target = tmp_path / "out.json"
    run("exportflow", "paid-orders-to-crm", "--output", str(target))
    assert json.loads(target.read_text())["slug"] == "paid-orders-to-crm"


@pytest.mark.usefixtures("example_connections")
def test_a_refused_file_changes_nothing(tmp_path: Path, minimal_flow: dict[str, Any]) -> None:
    run("importflow", str(write(tmp_path, minimal_flow)))
    minimal_flow["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    minimal_flow["nodes"][3]["config"]["batch_size"] = 7
    with pytest.raises(CommandError) as caught:
        run("importflow", str(write(tmp_path, minimal_flow)))
    assert "nodes[1].config.conditions[0].op (node 'paid')" in str(caught.value)
    assert FlowNode.objects.get(key="push").config.get("batch_size") == 100
    assert FlowVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON at line 1 column 2"),
        ("[]", "a flow file must be a JSON object"),
        ('{"slug": "x"}', "name: Field required"),
    ],
)
def test_bad_files_get_one_readable_line(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        run("importflow", str(write(tmp_path, content)))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert Flow.objects.count() == 0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read file"):
        run("importflow", str(tmp_path / "nope.json"))


def test_export_unknown_flow() -> None:
    with pytest.raises(CommandError, match="flow 'nope' does not exist"):
        run("exportflow", "nope")


def test_runflow_unknown_flow() -> None:
    with pytest.raises(CommandError, match="flow 'nope' does not exist"):
        run("runflow", "nope")


def test_runflow_bad_param() -> None:
    with pytest.raises(CommandError, match="must look like NAME=VALUE"):
        run("runflow", "nope", "--param", "novalue")


def test_addconnection_stores_the_url_encrypted() -> None:
    out = run("addconnection", "warehouse", "postgresql://etl:s3cret@db.internal:5432/dw")
    assert (
        out.strip() == "connection 'warehouse' created (postgresql://etl:***@db.internal:5432/dw)"
    )
    connection = Connection.objects.get(name="warehouse")
    assert "s3cret" not in connection.encrypted_url
    assert "s3cret" not in connection.display_url
    assert connection.secret_url() == "postgresql://etl:s3cret@db.internal:5432/dw"
    out = run("addconnection", "warehouse", "postgresql://etl:other@db.internal/dw")
    assert "updated" in out


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x/y", "unsupported scheme 'ftp'"),
        ("postgresql:///dw", "postgresql URLs need a host"),
        ("http://host:99999/", "not a valid URL"),
        ("sqlite://", "sqlite URLs need a file path"),
    ],
)
def test_addconnection_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("addconnection", "x", url)
    assert Connection.objects.count() == 0


def test_addconnection_refuses_bad_names() -> None:
    with pytest.raises(CommandError, match="must use only letters"):
        run("addconnection", "has space", "http://x/")


@pytest.mark.usefixtures("example_connections")
def test_secrets_never_reach_an_export(tmp_path: Path, minimal_flow: dict[str, Any]) -> None:
    run(
        "addconnection",
        "crm",
        "https://bot:hunter2@crm.example/api",
        "--header",
        "Authorization=Bearer tok-123",
    )
    run("importflow", str(write(tmp_path, minimal_flow)))
    exported = run("exportflow", "paid-orders-to-crm")
    assert "hunter2" not in exported and "tok-123" not in exported
    connection = Connection.objects.get(name="crm")
    assert "hunter2" not in repr(connection.info()) and "tok-123" not in repr(connection.info())
    assert connection.header_names == ["Authorization"]


@pytest.mark.django_db(transaction=True)
def test_runflow_rerun_from_the_failed_node(
    eager: None, httpserver: Any, minimal_flow: dict[str, Any]
) -> None:
    from flows.models import FlowRun
    from tests.flows.helpers import (
        SOURCE_DB_URL,
        add_connection,
        orders_table,
        point_minimal_flow_at,
    )

    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("crm", httpserver.url_for("/"))
    httpserver.expect_oneshot_request("/ingest").respond_with_data("no", status=400)
    with orders_table(30) as table:
        from flows.flowfile import apply_flow_file

        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        with pytest.raises(CommandError, match="node 'push' failed: HTTP 400"):
            run("runflow", "paid-orders-to-crm", "--wait")
        failed = FlowRun.objects.get()
        httpserver.expect_request("/ingest").respond_with_json({"ok": True})
        out = run("runflow", "paid-orders-to-crm", "--rerun", str(failed.id), "--wait")
    assert out.strip().endswith(": succeeded")
    second = FlowRun.objects.exclude(pk=failed.pk).get()
    assert second.trigger == "rerun"
    assert second.node_runs.get(node_key="orders").reused_from_id == failed.id


def test_runflow_from_needs_rerun() -> None:
    with pytest.raises(CommandError, match="--from and --latest need --rerun RUN_ID"):
        run("runflow", "x", "--from", "push")


def test_runflow_rerun_of_an_unknown_run() -> None:
    with pytest.raises(CommandError, match="run 'nope' of flow 'x' does not exist"):
        run("runflow", "x", "--rerun", "nope")


def test_a_token_in_the_user_name_is_masked() -> None:
    out = run("addconnection", "gh", "https://ghp_t0ken@api.example/")
    assert "ghp_t0ken" not in out
    assert Connection.objects.get(name="gh").display_url == "https://***@api.example/"


def test_an_unencoded_slash_in_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(CommandError) as caught:
        run("addconnection", "dw", "postgresql://app:12/34xyz@db/dw")
    assert "URL-encode" in str(caught.value) and "34xyz" not in str(caught.value)
