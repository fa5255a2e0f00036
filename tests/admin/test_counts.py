"""http_post's counts read as "records sent" and "requests" wherever a user reads them:
the run page, its picture, the API, runflow's lines and table."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from flows.counts import counted, counts_text
from flows.models import Flow, FlowRun
from flows.watch import node_line, summary_table
from tests.admin.records import ALL_SUCCEEDED, recorded_run, run_url

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]


@pytest.fixture
def run(paid_orders: Flow) -> FlowRun:
    run = recorded_run(paid_orders, "succeeded", ALL_SUCCEEDED)
    run.node_runs.filter(node_key="push").update(rows_in=250, rows_out=3)
    run.node_runs.filter(node_key="shape").update(rows_in=250, rows_out=1)
    return run


def test_phrases() -> None:
    assert counts_text("filter", 10, 4) == "in 10 · out 4"
    assert counts_text("http_post", 250, 3) == "250 records sent · 3 requests"
    assert counts_text("http_post", 1, 1) == "1 record sent · 1 request"
    assert counted(1_000, "requests") == "1,000 requests"


def test_the_run_page_and_its_picture_say_records_sent_and_requests(
    admin_client: Client, run: FlowRun
) -> None:
    html = admin_client.get(run_url(run)).content.decode()
    assert '<td class="fp-rows-in">250 records sent</td>' in html
    assert '<td class="fp-rows-out">3 requests</td>' in html
    assert '<td class="fp-rows-out">1</td>' in html  # map_fields: a plain count
    assert "250 records sent · 3 requests" in html  # the picture
    assert "in 250 · out 1" in html


def test_the_api_says_what_each_count_counts(run: FlowRun) -> None:
    from tests.api.conftest import make_user, token_client

    api: APIClient = token_client(make_user("reader", superuser=True))
    nodes = {n["node_key"]: n for n in api.get(f"/api/v1/runs/{run.pk}/").json()["node_runs"]}
    assert nodes["push"]["counts"] == {"rows_in": "records sent", "rows_out": "requests"}
    assert nodes["shape"]["counts"] == {"rows_in": "rows in", "rows_out": "rows out"}


def test_runflow_lines_and_table_say_it_too(run: FlowRun) -> None:
    push = run.node_runs.get(node_key="push")
    assert node_line(push).split(None, 2)[2].split() == [
        "250",
        "records",
        "sent,",
        "3",
        "requests",
        "0.42s",
    ]
    shape = run.node_runs.get(node_key="shape")
    assert "rows in       250  out         1" in node_line(shape)
    table = summary_table(run)
    [push_line] = [line for line in table if line.startswith("push")]
    assert push_line.endswith("(in = records sent, out = requests)")


def test_the_run_page_shows_rows_out_per_port(admin_client: Client, run: FlowRun) -> None:
    # (as a branch records them: [[port, rows], ...] in port order)
    run.node_runs.filter(node_key="paid").update(
        rows_out=12, rows_out_by_port=[["paid", 9], ["refunds", 3], ["else", 0]]
    )
    html = admin_client.get(run_url(run)).content.decode()
    assert '<span class="fp-port-rows" data-port="paid">paid 9</span> · ' in html
    assert '<span class="fp-port-rows" data-port="else">else 0</span></div>' in html
