"""``http_request`` when its worker is SIGKILLed mid-read: every record once, saved pages not
fetched again."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from pytest_httpserver import HTTPServer

from flows.flowfile import apply_flow_file
from flows.models import NodeRun
from flows.services import start_run
from tests.conftest import WorkerProcess, wait_until
from tests.faults.test_faults import reap_until_finished
from tests.nodes.test_http_request import EXAMPLE, SHOP, posted, shop_api

pytestmark = pytest.mark.worker


def test_worker_killed_mid_read_resumes_after_the_saved_pages(
    fault_workers: Callable[..., WorkerProcess], transactional_db: None, httpserver: HTTPServer
) -> None:
    served = shop_api(httpserver, delay_s=0.06)  # 31 pages: ~2 s of reading
    flow = json.loads(EXAMPLE.read_text())
    flow["nodes"][0]["config"].update(rate_limit_per_s=None)
    apply_flow_file(flow)
    first = fault_workers()
    run = start_run("api-orders-to-crm")

    def saved() -> bool:  # the node saved what it read once (after about a second)
        node = NodeRun.objects.filter(run=run, node_key="orders").first()
        return node is not None and bool(node.checkpoint)

    wait_until(saved, 30, 0.02)
    first.kill()
    fault_workers()
    run = reap_until_finished(run, 60)
    assert run.status == "succeeded", run.error
    orders = run.node_runs.get(node_key="orders")
    assert orders.workers_lost == 1 and orders.rows_out == len(SHOP)
    assert posted(httpserver) == [r for r in SHOP if r["amount"] >= 100]  # each once, in order
    resumed_at = orders.checkpoint["pages"]  # the last save before the kill (or a later one)
    assert served.count("1") == 1 and resumed_at >= 10
    assert sorted(set(served), key=int) == [str(p) for p in range(1, 32)]
