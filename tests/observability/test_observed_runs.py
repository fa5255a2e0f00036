"""A run across real processes is observable: one trace from the API request to the last node,
metrics moving on the web process and the worker (and scraped by a real Prometheus), JSON
log lines carrying the run.

gunicorn and the worker export their spans with ``OTEL_TRACES_EXPORTER=console`` (one JSON
object per line in their logs), which the tests parse.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from rest_framework.authtoken.models import Token

from flows.flowfile import apply_flow_file
from flows.models import Flow, FlowRun, RunStatus
from scheduling.triggers.models import FlowTrigger, TriggerKind
from scheduling.triggers.secrets import new_secret
from tests.api.conftest import make_user
from tests.conftest import PG_URL, WorkerProcess, wait_until
from tests.flows.helpers import SOURCE_DB_URL, accepting_crm, add_connection
from tests.observability.processes import Process, WebProcess, free_port, hex_id, spans_in

pytestmark = pytest.mark.worker

METRICS_TOKEN = "metrics-token-for-the-tests"
FLOW: dict[str, Any] = {
    "slug": "observed",
    "name": "Observed flow",
    "nodes": [
        {
            "key": "rows",
            "type": "sql_query",
            "config": {
                "connection": "warehouse",
                "query": "select n, 'item ' || n as name from generate_series(1, 10) n",
            },
        },
        {
            "key": "keep",
            "type": "filter",
            "config": {"conditions": [{"field": "n", "op": "gt", "value": 2}]},
        },
        {
            "key": "shape",
            "type": "map_fields",
            "config": {"mapping": {"value": "n", "label": "name"}},
        },
    ],
    "edges": [{"from": "rows", "to": "keep"}, {"from": "keep", "to": "shape"}],
}
NODE_TYPES = {"rows": "sql_query", "keep": "filter", "shape": "map_fields"}
OBSERVED_QUEUE = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-observed"


def _db_url() -> str:
    return f"{PG_URL}/{settings.DATABASES['default']['NAME']}"


@pytest.fixture(scope="module")
def observed(django_db_setup: None, _clean_broker: None) -> Iterator[dict[str, Any]]:
    """A traced web process and a traced worker serving metrics, on the test database."""
    # A queue of their own: the session's plain worker must not take these runs.
    common = {
        "OTEL_TRACES_EXPORTER": "console",
        "FLOWPLATFORM_METRICS_TOKEN": METRICS_TOKEN,
        "FLOWPLATFORM_LOG_FORMAT": "json",
        "CELERY_TASK_DEFAULT_QUEUE": OBSERVED_QUEUE,
    }
    worker_port = free_port()
    worker = WorkerProcess(
        settings.DATABASES["default"]["NAME"],
        extra_env={**common, "FLOWPLATFORM_WORKER_METRICS_PORT": str(worker_port)},
    )
    worker.args[worker.args.index("--queues") + 1] = OBSERVED_QUEUE
    web = WebProcess(_db_url(), **common)
    worker.start()
    try:
        web.start()
        try:
            yield {
                "worker": worker,
                "web": web,
                "worker_metrics": f"http://127.0.0.1:{worker_port}",
            }
        finally:
            web.stop()
    finally:
        worker.stop()


@pytest.fixture
def api(observed: dict[str, Any], transactional_db: None) -> requests.Session:
    add_connection("warehouse", SOURCE_DB_URL)
    apply_flow_file(FLOW)
    user = make_user("runner", superuser=True)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    return session


def start_and_finish(api: requests.Session, web: WebProcess, slug: str = "observed") -> FlowRun:
    response = api.post(f"{web.url}/api/v1/flows/{slug}/runs/", json={}, timeout=30)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    def finished() -> FlowRun | None:
        run = FlowRun.objects.get(id=run_id)
        return run if run.is_finished else None

    run = wait_until(finished, 60, 0.1, "the run did not finish")
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return metric_samples(response.text)


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_one_trace_from_the_api_request_to_the_last_node(
    observed: dict[str, Any], api: requests.Session
) -> None:
    web, worker = observed["web"], observed["worker"]
    run = start_and_finish(api, web)
    assert len(run.trace_id) == 32 and int(run.trace_id, 16)

    def node_spans() -> list[dict[str, Any]] | None:
        spans = [
            s
            for s in spans_in(worker.log())
            if s["name"].startswith("node ")
            and s["attributes"].get("flowplatform.run_id") == str(run.id)
        ]
        return spans if len(spans) == len(FLOW["nodes"]) else None

    nodes = wait_until(node_spans, 30, 0.2, "the worker did not export a span per node")
    web_spans = wait_until(
        lambda: [
            s for s in spans_in(web.log()) if hex_id(s["context"]["trace_id"]) == run.trace_id
        ],
        30,
        0.2,
        "the web process exported no span of the run's trace",
    )
    root = next(s for s in web_spans if s["name"] == "flow_run observed")
    request = next(s for s in web_spans if s["kind"] == "SpanKind.SERVER")
    # The root span is a child of the API request's span: one trace id from there on.
    assert root["parent_id"] == request["context"]["span_id"]
    assert root["attributes"]["flowplatform.run_id"] == str(run.id)
    assert root["attributes"]["flowplatform.flow"] == "observed"
    assert root["attributes"]["flowplatform.version"] == run.version.number
    for span in nodes:
        key = span["name"].removeprefix("node ")
        attributes = span["attributes"]
        assert hex_id(span["context"]["trace_id"]) == run.trace_id
        assert span["parent_id"], "a node span has a parent in the run's trace"
        assert attributes["flowplatform.node_key"] == key
        assert attributes["flowplatform.node_type"] == NODE_TYPES[key]
        assert attributes["flowplatform.flow"] == "observed"
        assert attributes["flowplatform.version"] == run.version.number
        assert attributes["flowplatform.attempt"] == 1
        assert span["status"]["status_code"] == "OK"
    rows = {
        s["name"]: (
            s["attributes"]["flowplatform.rows_in"],
            s["attributes"]["flowplatform.rows_out"],
        )
        for s in nodes
    }
    assert rows == {"node rows": (0, 10), "node keep": (10, 8), "node shape": (8, 8)}

    # The API shows the trace id (no link without FLOWPLATFORM_TRACE_URL_TEMPLATE).
    detail = api.get(f"{web.url}/api/v1/runs/{run.id}/", timeout=10).json()
    assert detail["trace_id"] == run.trace_id and detail["trace_url"] == ""


def test_what_a_node_does_is_traced_and_the_engines_bookkeeping_is_not(
    observed: dict[str, Any], api: requests.Session
) -> None:
    web, worker = observed["web"], observed["worker"]
    run = start_and_finish(api, web)

    def trace() -> list[dict[str, Any]] | None:
        spans = [
            s
            for s in spans_in(worker.log()) + spans_in(web.log())
            if hex_id(s["context"]["trace_id"]) == run.trace_id
        ]
        nodes = [s for s in spans if s["name"].startswith("node ")]
        roots = [s for s in spans if s["name"] == "flow_run observed"]
        return spans if len(nodes) == len(FLOW["nodes"]) and roots else None

    spans = wait_until(trace, 30, 0.2, "the run's trace was not exported")
    by_id = {s["context"]["span_id"]: s for s in spans}
    root = next(s for s in spans if s["name"] == "flow_run observed")
    for span in spans:
        parent = by_id.get(span["parent_id"] or "")
        if span["kind"] == "SpanKind.CLIENT":
            # What a node or the request does; never taking, claiming or finishing a node,
            # nor recording the run.
            assert parent is not None, span["name"]
            assert parent["name"].startswith("node ") or parent["kind"] == "SpanKind.SERVER"
        # The engine's tasks, and the messages that move the run along, carry the trace
        # without spans of their own.
        assert not span["name"].startswith(("run/flows.", "apply_async/")), span["name"]
        # Every node is a child of the run's root span, whichever task ran it.
        if span["name"].startswith("node "):
            assert span["parent_id"] == root["context"]["span_id"], span["name"]
    rows = next(s for s in spans if s["name"] == "node rows")
    statements = [
        s["attributes"].get("db.statement", "")
        for s in spans
        if s["parent_id"] == rows["context"]["span_id"]
    ]
    assert any("statement_timeout" in statement for statement in statements), statements
    # The reset of its connection for the next query is bookkeeping.
    assert not any("DISCARD" in statement for statement in statements), statements


def test_a_webhook_runs_trace_holds_the_redis_calls_of_its_request(
    observed: dict[str, Any], api: requests.Session
) -> None:
    """The webhook counts its calls in the broker's Redis (its rate limit): those commands are
    client spans of the run's trace, under the request that started it, as the worker's nodes."""
    web, worker = observed["web"], observed["worker"]
    flow = apply_flow_file({**FLOW, "slug": "observed-hook", "triggers": [{"webhook": "rows"}]})[0]
    secret = new_secret(FlowTrigger.objects.get(flow=flow, kind=TriggerKind.WEBHOOK))
    response = requests.post(
        f"{web.url}/hooks/observed-hook/rows",
        json={},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    run = wait_until(
        lambda: FlowRun.objects.filter(
            id=response.json()["run"], finished_at__isnull=False
        ).first(),
        60,
        0.1,
        "the webhook's run did not finish",
    )
    assert run.status == RunStatus.SUCCEEDED, run.error

    def trace() -> list[dict[str, Any]] | None:
        spans = [
            s
            for s in spans_in(worker.log()) + spans_in(web.log())
            if hex_id(s["context"]["trace_id"]) == run.trace_id
        ]
        nodes = [s for s in spans if s["name"].startswith("node ")]
        redis_calls = [s for s in spans if s["attributes"].get("db.system") == "redis"]
        return spans if len(nodes) == len(FLOW["nodes"]) and redis_calls else None

    spans = wait_until(trace, 30, 0.2, "the run's trace has no Redis span")
    request = next(s for s in spans if s["kind"] == "SpanKind.SERVER")
    root = next(s for s in spans if s["name"] == "flow_run observed-hook")
    assert root["parent_id"] == request["context"]["span_id"]
    redis_calls = [s for s in spans if s["attributes"].get("db.system") == "redis"]
    broker = urlsplit(settings.CELERY_BROKER_URL)
    for span in redis_calls:
        assert span["kind"] == "SpanKind.CLIENT"
        assert span["parent_id"] == request["context"]["span_id"], span["name"]
        assert span["attributes"]["net.peer.port"] == (broker.port or 6379)
        assert span["attributes"]["db.redis.database_index"] == int(broker.path.strip("/") or 0)
    # The commands of the pipeline (INCR, EXPIRE), their arguments left out.
    statements = [s["attributes"].get("db.statement", "") for s in redis_calls]
    assert any(st.split() == ["INCRBY", "?", "?", "EXPIRE", "?", "?"] for st in statements), (
        statements
    )


def test_a_retried_node_stays_in_the_runs_trace_under_its_root(
    observed: dict[str, Any], api: requests.Session, httpserver: HTTPServer
) -> None:
    web, worker = observed["web"], observed["worker"]
    accepting_crm(httpserver)
    push = {
        "key": "push",
        "type": "http_post",
        "config": {"url": "/ingest", "connection": "crm", "batch_size": 100},
    }
    flaky = {
        "key": "flaky",
        "type": "dummy_flaky",
        "config": {"fail_times": 1},
        "policy": {"max_retries": 1, "retry_backoff_s": 0.1},
    }
    apply_flow_file(
        {
            **FLOW,
            "slug": "observed-retry",
            "name": "Observed retry",
            "nodes": [FLOW["nodes"][0], flaky, push],
            "edges": [{"from": "rows", "to": "flaky"}, {"from": "flaky", "to": "push"}],
        }
    )
    run = start_and_finish(api, web, "observed-retry")
    assert run.node_runs.get(node_key="flaky").attempts == 2

    def trace() -> list[dict[str, Any]] | None:
        spans = [
            s
            for s in spans_in(worker.log()) + spans_in(web.log())
            if hex_id(s["context"]["trace_id"]) == run.trace_id
        ]
        attempts = [s for s in spans if s["name"] == "node flaky"]
        roots = [s for s in spans if s["name"] == "flow_run observed-retry"]
        pushed = [s for s in spans if s["name"] == "node push"]
        return spans if len(attempts) == 2 and roots and pushed else None

    spans = wait_until(trace, 30, 0.2, "the retried node's spans were not exported")
    root = next(s for s in spans if s["name"] == "flow_run observed-retry")
    attempts = sorted(
        (s for s in spans if s["name"] == "node flaky"),
        key=lambda s: s["attributes"]["flowplatform.attempt"],
    )
    assert [s["attributes"]["flowplatform.attempt"] for s in attempts] == [1, 2]
    assert [s["status"]["status_code"] for s in attempts] == ["ERROR", "OK"]
    assert "flaky failure on attempt 1" in attempts[0]["attributes"]["flowplatform.error"]
    for span in attempts:
        assert span["parent_id"] == root["context"]["span_id"]
    assert not [s for s in spans if s["name"].startswith(("run/flows.", "apply_async/"))]
    # What the node sends is traced (requests), under the node's span.
    node_push = next(s for s in spans if s["name"] == "node push")
    assert node_push["parent_id"] == root["context"]["span_id"]
    under_push = [s for s in spans if s["parent_id"] == node_push["context"]["span_id"]]
    [post] = [s for s in under_push if s["kind"] == "SpanKind.CLIENT" and s["name"] == "POST"]
    status = {"http.status_code", "http.response.status_code"} & post["attributes"].keys()
    assert [post["attributes"][key] for key in status] == [200]
    assert len(httpserver.log) == 1


def test_a_scheduled_runs_root_span_is_a_child_of_the_schedule_firing_task(
    observed: dict[str, Any], api: requests.Session
) -> None:
    from django.utils import timezone

    from flowplatform.celery import app
    from tests.scheduling.conftest import make_schedule

    worker = observed["worker"]
    flow = Flow.objects.get(slug="observed")
    schedule = make_schedule(flow, kind="interval", every_seconds=2)
    before = scrape(observed["worker_metrics"])
    # The first fire time after the schedule was made, sent once it has passed, as beat would.
    due = datetime.fromtimestamp(int(schedule.timing_changed_at.timestamp()) // 2 * 2 + 2, tz=UTC)
    wait_until(lambda: timezone.now() > due, 5, 0.05)
    app.send_task("scheduling.fire", args=[schedule.pk, due.isoformat()], queue=OBSERVED_QUEUE)
    run = wait_until(
        lambda: (
            FlowRun.objects.filter(flow=flow, trigger="schedule", finished_at__isnull=False)
            .order_by("-created_at")
            .first()
        ),
        60,
        0.2,
        "the scheduled run did not finish",
    )
    assert run.status == RunStatus.SUCCEEDED, run.error

    def trace() -> list[dict[str, Any]] | None:
        spans = [
            s for s in spans_in(worker.log()) if hex_id(s["context"]["trace_id"]) == run.trace_id
        ]
        nodes = [s for s in spans if s["name"].startswith("node ")]
        fired = [s for s in spans if s["name"] == "run/scheduling.fire"]
        return spans if len(nodes) == len(FLOW["nodes"]) and fired else None

    spans = wait_until(trace, 30, 0.2, "the scheduled run's trace was not exported")
    [fired] = [s for s in spans if s["name"] == "run/scheduling.fire"]
    [root] = [s for s in spans if s["name"] == "flow_run observed"]
    # The task beat sent keeps Celery's span; the run's root is its child, the nodes the root's.
    assert root["parent_id"] == fired["context"]["span_id"]
    assert root["attributes"]["flowplatform.trigger"] == "schedule"
    for span in spans:
        if span["name"].startswith("node "):
            assert span["parent_id"] == root["context"]["span_id"]
    after = scrape(observed["worker_metrics"])
    lag = "flowplatform_schedule_fire_lag_seconds_count"
    assert value(after, lag) - value(before, lag) == 1


def test_runs_started_by_the_cli_and_by_a_rerun_get_their_root_span(
    observed: dict[str, Any], api: requests.Session
) -> None:
    web, worker = observed["web"], observed["worker"]
    env = {
        **worker.env,
        "OTEL_TRACES_EXPORTER": "console",
        "CELERY_TASK_DEFAULT_QUEUE": OBSERVED_QUEUE,
        "FLOWPLATFORM_LOG_FORMAT": "json",
    }
    cli = subprocess.run(
        [sys.executable, "manage.py", "runflow", "observed", "--wait", "--timeout", "60"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    [cli_root] = [s for s in spans_in(cli.stdout) if s["name"] == "flow_run observed"]
    assert cli_root["attributes"]["flowplatform.trigger"] == "manual"
    by_cli = FlowRun.objects.get(id=cli_root["attributes"]["flowplatform.run_id"])
    assert hex_id(cli_root["context"]["trace_id"]) == by_cli.trace_id

    original = start_and_finish(api, web)
    response = api.post(f"{web.url}/api/v1/runs/{original.id}/rerun/", json={}, timeout=30)
    assert response.status_code == 202, response.text
    rerun = wait_until(
        lambda: FlowRun.objects.filter(id=response.json()["id"], finished_at__isnull=False).first(),
        60,
        0.1,
        "the rerun did not finish",
    )
    assert rerun.trigger == "rerun" and rerun.trace_id not in ("", original.trace_id)

    def traces() -> dict[str, list[dict[str, Any]]] | None:
        spans = spans_in(worker.log()) + spans_in(web.log()) + spans_in(cli.stdout)
        found = {
            run.trace_id: [s for s in spans if hex_id(s["context"]["trace_id"]) == run.trace_id]
            for run in (by_cli, rerun)
        }
        complete = all(
            len([s for s in trace if s["name"].startswith("node ")]) == len(FLOW["nodes"])
            for trace in found.values()
        )
        return found if complete else None

    found = wait_until(traces, 30, 0.2, "the runs' traces were not exported")
    for run in (by_cli, rerun):
        trace = found[run.trace_id]
        [root] = [s for s in trace if s["name"] == "flow_run observed"]
        assert root["attributes"]["flowplatform.trigger"] == run.trigger
        for span in trace:
            if span["name"].startswith("node "):
                assert span["parent_id"] == root["context"]["span_id"]
    # The rerun's root is a child of the API request that asked for it.
    [rerun_root] = [s for s in found[rerun.trace_id] if s["name"] == "flow_run observed"]
    request = next(
        s
        for s in found[rerun.trace_id]
        if s["kind"] == "SpanKind.SERVER" and s["context"]["span_id"] == rerun_root["parent_id"]
    )
    assert "rerun" in request["attributes"].get("http.route", request["name"])


def test_worker_log_lines_are_json_with_the_run_and_its_trace(
    observed: dict[str, Any], api: requests.Session
) -> None:
    run = start_and_finish(api, observed["web"])
    worker = observed["worker"]

    def run_lines() -> list[dict[str, Any]] | None:
        from tests.observability.processes import json_lines

        lines = [
            line
            for line in json_lines(worker.log())
            if "level" in line and line.get("run_id") == str(run.id)
        ]
        keys = {line.get("node_key") for line in lines}
        return lines if {"rows", "keep", "shape"} <= keys else None

    lines = wait_until(run_lines, 30, 0.2, "the worker logged no JSON line per node of the run")
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["trace_id"] == run.trace_id
        assert len(line["span_id"]) == 16
    assert any("succeeded" in line["message"] for line in lines)


def test_metrics_move_on_the_web_process_and_the_worker(
    observed: dict[str, Any], api: requests.Session
) -> None:
    web, worker_url = observed["web"], observed["worker_metrics"]
    # Without the token, /metrics is refused (web and worker).
    assert requests.get(f"{web.url}/metrics", timeout=10).status_code == 401
    assert requests.get(f"{worker_url}/metrics", timeout=10).status_code == 401
    assert (
        requests.get(
            f"{web.url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10
        ).status_code
        == 401
    )
    before = scrape(worker_url)
    start_and_finish(api, web)
    start_and_finish(api, web)
    after = scrape(worker_url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("flowplatform_runs_total", flow="observed", status="succeeded", trigger="api") == 2
    assert moved("flowplatform_run_duration_seconds_count", flow="observed") == 2
    for node_type in NODE_TYPES.values():
        assert moved("flowplatform_node_runs_total", node_type=node_type, status="succeeded") == 2
        assert moved("flowplatform_node_duration_seconds_count", node_type=node_type) == 2
    assert moved("flowplatform_rows_total", node_type="sql_query", direction="out") == 20
    assert moved("flowplatform_rows_total", node_type="filter", direction="in") == 20
    assert moved("flowplatform_rows_total", node_type="filter", direction="out") == 16
    # The web process reads runs and queues when scraped.
    web_samples = scrape(web.url)
    assert (
        "flowplatform_queue_depth",
        (("queue", OBSERVED_QUEUE),),
    ) in web_samples
    assert value(web_samples, "flowplatform_active_runs", flow="observed") == 0


def test_a_real_prometheus_scrapes_the_worker_and_the_web_process(
    observed: dict[str, Any], api: requests.Session, tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("Debian's prometheus package is not installed (.ci/run installs it)")
    start_and_finish(api, observed["web"])
    worker_target = observed["worker_metrics"].removeprefix("http://")
    web_target = observed["web"].url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "flowplatform",
                        "authorization": {"credentials": METRICS_TOKEN},
                        "static_configs": [
                            {"targets": [worker_target], "labels": {"process": "worker"}},
                            {"targets": [web_target], "labels": {"process": "web"}},
                        ],
                    }
                ],
            }
        )
    )
    port = free_port()
    server = Process(
        "prometheus",
        [
            prometheus,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tempfile.mkdtemp(dir=tmp_path)}",
        ],
        {"PATH": "/usr/bin:/bin"},
    ).start()
    try:

        def query(expression: str) -> list[dict[str, Any]] | None:
            if not server.alive():
                pytest.fail(f"prometheus exited:\n{server.log()[-3000:]}")
            try:
                answer = requests.get(
                    f"http://127.0.0.1:{port}/api/v1/query", params={"query": expression}, timeout=2
                ).json()
            except (requests.ConnectionError, ValueError):
                return None
            return answer["data"]["result"] or None

        node_runs = wait_until(
            lambda: query('flowplatform_node_runs_total{process="worker",node_type="filter"}'),
            60,
            0.5,
            "Prometheus did not scrape the worker's metrics",
        )
        assert float(node_runs[0]["value"][1]) >= 1
        queue = wait_until(
            lambda: query('flowplatform_queue_depth{process="web"}'),
            30,
            0.5,
            "Prometheus did not scrape the web process's metrics",
        )
        assert queue[0]["metric"]["queue"] == OBSERVED_QUEUE
        up = query("up")
        assert up is not None and all(item["value"][1] == "1" for item in up)
    finally:
        server.stop()


def test_workerping_answers_for_a_live_worker_and_fails_fast_for_a_missing_one(
    observed: dict[str, Any],
) -> None:
    worker = observed["worker"]
    env = {**worker.env}
    command = [sys.executable, "manage.py", "workerping", "--timeout", "3"]
    alive = subprocess.run(
        [*command, "--name", worker.name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert alive.returncode == 0, alive.stderr
    assert "pong" in alive.stdout
    started = time.monotonic()
    missing = subprocess.run(
        [*command, "--name", "celery@nowhere"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "did not answer within 3s" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 30
