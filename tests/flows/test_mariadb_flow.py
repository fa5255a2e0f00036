"""A flow from MariaDB on a real worker: sql_query (mysql://) -> filter -> http_post."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from tests.conftest import ROOT, WorkerProcess
from tests.flows.helpers import accepting_crm, add_connection, posted_records
from tests.mariadb import execute
from tests.mariadb import mariadb_url as mariadb_url

pytestmark = pytest.mark.worker

PASSWORD = "s3cret-Pa55word"
STATUSES = ("paid", "pending", "refunded")


@pytest.fixture
def orders(mariadb_url: str) -> Iterator[str]:
    """3,000 orders in MariaDB: id, customer, status, amount (DECIMAL), paid_at (TIMESTAMP)."""
    table = f"orders_{uuid.uuid4().hex[:10]}"
    execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, customer VARCHAR(60), status VARCHAR(10),"
        " amount DECIMAL(12,2), paid_at TIMESTAMP NULL, details JSON)"
    )
    execute(
        f"INSERT INTO {table} SELECT seq, CONCAT('Client ', seq, ' ✓ Ünïcödé'),"
        " ELT(seq % 3 + 1, 'paid', 'pending', 'refunded'),"
        " IF(seq % 7 = 0, 0, (seq % 50) - 0.5),"
        " FROM_UNIXTIME(1767261600 + seq * 60), JSON_OBJECT('n', seq) FROM seq_1_to_3000"
    )
    yield table
    execute(f"DROP TABLE IF EXISTS {table}")


def flow_for(table: str) -> dict[str, Any]:
    """The example flow (examples/mariadb-paid-orders.json) reading ``table``."""
    flow = json.loads((ROOT / "examples" / "mariadb-paid-orders.json").read_text())
    config = flow["nodes"][0]["config"]
    config["query"] = config["query"].replace("FROM orders", f"FROM {table}")
    return dict(flow)


def test_paid_orders_flow_from_mariadb_to_an_http_endpoint(
    worker: WorkerProcess, httpserver: HTTPServer, mariadb_url: str, orders: str
) -> None:
    accepting_crm(httpserver)
    # A password the server ignores for root is still a secret: it must appear nowhere.
    add_connection("shop", mariadb_url)
    apply_flow_file(flow_for(orders))
    run = wait_for_run(start_run("mariadb-paid-orders"), timeout=90)
    assert run.status == "succeeded", run.error
    delivered = posted_records(httpserver)
    expected = [
        i for i in range(1, 3001) if STATUSES[i % 3] == "paid" and i % 7 and (i % 50) - 0.5 > 0
    ]
    assert [r["id"] for r in delivered] == expected and len(expected) > 600
    first = delivered[0]
    assert Decimal(json.dumps(first["amount"])) == Decimal(first["id"] % 50) - Decimal("0.5")
    assert first["customer"].endswith("✓ Ünïcödé")
    assert first["details"] == {"n": first["id"]}
    assert first["paid_at"].endswith("+00:00")  # a TIMESTAMP is an instant, read in UTC
    nodes = {n.node_key: n for n in run.node_runs.all()}
    assert nodes["orders"].rows_out == 3000
    assert nodes["paid"].rows_out == len(expected)
    assert all(n.status == "succeeded" for n in nodes.values())


def test_a_failing_mariadb_query_fails_the_run_without_the_password(
    worker: WorkerProcess, httpserver: HTTPServer, mariadb_url: str
) -> None:
    accepting_crm(httpserver)
    add_connection("shop", mariadb_url.replace("root@", f"root:{PASSWORD}@", 1))
    apply_flow_file(flow_for("no_such_table"))
    run = wait_for_run(start_run("mariadb-paid-orders"), timeout=90)
    assert run.status == "failed"
    errors = " ".join(str(n.error) for n in run.node_runs.all()) + str(run.error)
    assert "Access denied" in errors or "doesn't exist" in errors
    assert PASSWORD not in errors and PASSWORD not in worker.log()
    assert httpserver.log == []
