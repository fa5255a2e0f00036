"""The command line for what the API does: listflows, listruns, cancelrun, testconnection,
and addconnection --test."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from pytest_httpserver import HTTPServer

from flowplatform.audit.models import AuditEntry
from flows.flowfile import apply_flow_file
from flows.models import Flow, FlowAccess, FlowRun
from tests.admin.records import ALL_SUCCEEDED, recorded_run
from tests.conftest import ROOT
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def flows(minimal_flow: dict[str, Any]) -> tuple[Flow, Flow]:
    first = apply_flow_file(minimal_flow)[0]
    second = apply_flow_file({**minimal_flow, "slug": "b-second", "name": "Second"})[0]
    return first, second


def test_listflows_prints_one_line_per_flow(flows: tuple[Flow, Flow]) -> None:
    first, _ = flows
    recorded_run(first, "succeeded", ALL_SUCCEEDED)
    lines = run("listflows").splitlines()
    assert lines[0].split() == ["slug", "version", "nodes", "runs", "last", "run", "name"]
    assert lines[1].split()[:5] == ["b-second", "v1", "4", "0", "-"]
    assert lines[2].split()[:5] == ["paid-orders-to-crm", "v1", "4", "1", "succeeded"]
    assert lines[2].endswith("Paid orders to CRM")


def test_listflows_without_flows_says_how_to_add_one(db: None) -> None:
    assert "importflow" in run("listflows")


def test_listruns_filters_by_flow_and_status(flows: tuple[Flow, Flow]) -> None:
    first, second = flows
    failed = recorded_run(first)
    running = recorded_run(first, status="running")
    other = recorded_run(second, "succeeded", ALL_SUCCEEDED)
    every = run("listruns")
    assert all(str(r.pk) in every for r in (failed, running, other))
    mine = run("listruns", "--flow", first.slug)
    assert str(other.pk) not in mine and str(failed.pk) in mine
    only = run("listruns", "--flow", first.slug, "--status", "running").splitlines()
    assert len(only) == 2 and only[1].startswith(str(running.pk))
    assert "no runs" in run("listruns", "--status", "cancelled")
    with pytest.raises(CommandError, match="flow 'nope' does not exist"):
        run("listruns", "--flow", "nope")


def test_listruns_refuses_an_unknown_status_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "listruns", "--status", "done"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice: 'done'" in result.stderr


def test_cancelrun_cancels_an_active_run_and_records_who(flows: tuple[Flow, Flow]) -> None:
    first, _ = flows
    active = recorded_run(first, status="running")
    assert run("cancelrun", str(active.pk)).strip().endswith("cancelled")
    active.refresh_from_db()
    assert active.status == "cancelled"
    entry = AuditEntry.objects.filter(action="cancel").get()
    assert entry.source == "cli" and entry.object_id == str(active.pk)
    with pytest.raises(CommandError, match="has already finished"):
        run("cancelrun", str(active.pk))
    with pytest.raises(CommandError, match="run 'nope' does not exist"):
        run("cancelrun", "nope")


def test_cancelrun_as_a_user_needs_the_run_right(flows: tuple[Flow, Flow]) -> None:
    first, _ = flows
    active = recorded_run(first, status="running")
    viewer = User.objects.create_user("viewer")
    FlowAccess.objects.create(flow=first, user=viewer, can_view=True)
    with pytest.raises(CommandError, match="needs the run permission"):
        run("cancelrun", str(active.pk), "--as", "viewer")
    assert FlowRun.objects.get(pk=active.pk).status == "running"
    FlowAccess.objects.filter(user=viewer).update(can_run=True)
    run("cancelrun", str(active.pk), "--as", "viewer")
    assert AuditEntry.objects.get(action="cancel").actor_name == "viewer"


def test_testconnection_reports_a_working_database_and_http_peer(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("ok")
    add_connection("dw", SOURCE_DB_URL)
    add_connection("peer", httpserver.url_for("/"), {"Authorization": "Bearer tok-123456789"})
    assert run("testconnection", "dw").startswith("connection 'dw' works: connected")
    out = run("testconnection", "peer")
    assert out.startswith("connection 'peer' works: HTTP 200") and "tok-1234" not in out


def test_testconnection_fails_in_one_line_without_secrets() -> None:
    add_connection("dw", "postgresql://reader:pa55-w0rd@127.0.0.1:1/dw")
    with pytest.raises(CommandError) as caught:
        run("testconnection", "dw")
    assert str(caught.value).startswith("connection 'dw' failed its test: ")
    assert "pa55-w0rd" not in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(CommandError, match="connection 'nope' does not exist"):
        run("testconnection", "nope")


def test_addconnection_test_saves_then_tries_it(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("ok")
    out = run("addconnection", "peer", httpserver.url_for("/"), "--test")
    assert "connection 'peer' created" in out and "connection 'peer' works: HTTP 200" in out
    with pytest.raises(CommandError, match=r"connection 'dead' \(created\) failed its test"):
        run("addconnection", "dead", "http://127.0.0.1:1/", "--test")
