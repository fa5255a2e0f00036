"""The ``http_post`` node against a real HTTP server on loopback (pytest-httpserver)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from nodes.builtin import delivery, http_post
from nodes.builtin.http_post import HttpPostNode
from nodes.sdk import ConnectionInfo, ExecutionContext, FieldType, NodeError

FAST = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05}
ORDERS = [
    {"id": 1, "total": Decimal("12.50"), "day": date(2024, 2, 29), "name": "Zoë 東京"},
    {"id": 2, "total": Decimal("0.10"), "at": datetime(2024, 1, 1, tzinfo=UTC), "meta": {"a": [1]}},
    {"id": 3, "total": None, "name": None},
]


@pytest.fixture(autouse=True)
def allow_loopback(settings: Settings) -> None:
    settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = True


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays the node asks for; recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(delivery, "_sleep", lambda delay, stop=None: delays.append(delay))
    return delays


@pytest.fixture
def other_origin() -> Iterator[HTTPServer]:
    """A second server: a different origin (another port) from ``httpserver``."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def slow_server() -> Iterator[tuple[HTTPServer, list[str]]]:
    """A threaded server whose first answer hangs (past any test timeout_s); later ones do not.

    Yields the server and the Idempotency-Key of each request, recorded as it arrives.
    """
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    release, seen = threading.Event(), []

    def hang(request: Request) -> Response:
        seen.append(request.headers["Idempotency-Key"])
        release.wait(timeout=10)
        return Response("late")

    def answer(request: Request) -> Response:
        seen.append(request.headers["Idempotency-Key"])
        return Response("ok")

    server.expect_oneshot_request("/ingest").respond_with_handler(hang)
    server.expect_request("/ingest").respond_with_handler(answer)
    server.start()
    yield server, seen
    release.set()
    server.clear()
    server.stop()


def post(config: dict[str, Any], records: list[dict[str, Any]] = ORDERS, **context: Any) -> Any:
    node = HttpPostNode({**FAST, **config})
    context.setdefault("run_id", "run-1")
    context.setdefault("node_key", "push")
    out = list(node.execute(ExecutionContext(**context), {"in": iter([records])}))
    return [summary for batch in out for summary in batch]


def expected_key(
    batch: int, run_id: str = "run-1", node_key: str = "push", partition: int = 0
) -> str:
    return hashlib.sha256(f"{run_id}:{node_key}:{partition}:{batch}".encode()).hexdigest()[:32]


def bodies(server: HTTPServer) -> list[Any]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def keys(server: HTTPServer) -> list[str | None]:
    return [request.headers.get("Idempotency-Key") for request, _ in server.log]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_batch_size_one_sends_one_json_object_per_request(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ingest", method="POST").respond_with_data("ok", status=201)
    summaries = post({"url": httpserver.url_for("/ingest")})
    assert bodies(httpserver) == [
        {"id": 1, "total": 12.50, "day": "2024-02-29", "name": "Zoë 東京"},
        {"id": 2, "total": 0.10, "at": "2024-01-01T00:00:00+00:00", "meta": {"a": [1]}},
        {"id": 3, "total": None, "name": None},
    ]
    assert b'"total":12.50' in httpserver.log[0][0].get_data()  # Decimal digits kept exactly
    assert all(r.headers["Content-Type"] == "application/json" for r, _ in httpserver.log)
    assert summaries == [
        {"batch": i, "records": 1, "status": 201, "attempts": 1, "idempotency_key": expected_key(i)}
        for i in range(3)
    ]


def test_larger_batches_send_json_arrays(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ingest").respond_with_data("ok")
    summaries = post({"url": httpserver.url_for("/ingest"), "batch_size": 2})
    assert [len(body) for body in bodies(httpserver)] == [2, 1]
    assert bodies(httpserver)[1] == [{"id": 3, "total": None, "name": None}]
    assert [(s["batch"], s["records"]) for s in summaries] == [(0, 2), (1, 1)]
    assert keys(httpserver) == [expected_key(0), expected_key(1)]


def test_empty_input_sends_nothing(httpserver: HTTPServer) -> None:
    assert post({"url": httpserver.url_for("/ingest")}, records=[]) == []
    assert httpserver.log == []


def test_5xx_is_retried_with_the_same_idempotency_key(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/ingest").respond_with_data("busy", status=503)
    httpserver.expect_oneshot_request("/ingest").respond_with_data("busy", status=503)
    httpserver.expect_request("/ingest").respond_with_data("ok")
    summaries = post({"url": httpserver.url_for("/ingest")}, records=ORDERS[:1])
    assert summaries == [
        {"batch": 0, "records": 1, "status": 200, "attempts": 3, "idempotency_key": expected_key(0)}
    ]
    assert keys(httpserver) == [expected_key(0)] * 3
    assert len({request.get_data() for request, _ in httpserver.log}) == 1


def test_the_key_differs_per_run_node_and_partition(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ingest").respond_with_data("ok")
    url = httpserver.url_for("/ingest")
    post({"url": url}, records=ORDERS[:1], run_id="run-2")
    post({"url": url}, records=ORDERS[:1], node_key="other")
    post({"url": url}, records=ORDERS[:1], partition=4)
    assert keys(httpserver) == [
        expected_key(0, run_id="run-2"),
        expected_key(0, node_key="other"),
        expected_key(0, partition=4),
    ]
    assert len(set(keys(httpserver))) == 3


def test_a_4xx_fails_permanently_at_once_with_status_and_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ingest").respond_with_data("field 'email' is required " * 20, 400)
    with pytest.raises(NodeError) as caught:
        post({"url": httpserver.url_for("/ingest")})
    assert caught.value.permanent
    assert str(caught.value) == "HTTP 400: " + ("field 'email' is required " * 20)[:200]
    assert len(httpserver.log) == 1


def test_429_waits_for_retry_after(httpserver: HTTPServer, waits: list[float]) -> None:
    httpserver.expect_oneshot_request("/ingest").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_request("/ingest").respond_with_data("ok")
    config = {"url": httpserver.url_for("/ingest"), "retry_backoff_max_s": 60}
    summaries = post(config, records=ORDERS[:1])
    assert waits == [7.0]
    assert summaries[0]["attempts"] == 2 and summaries[0]["status"] == 200


def test_retry_after_is_capped(httpserver: HTTPServer, waits: list[float]) -> None:
    httpserver.expect_oneshot_request("/ingest").respond_with_data(
        "", status=429, headers={"Retry-After": "3600"}
    )
    httpserver.expect_request("/ingest").respond_with_data("ok")
    post({"url": httpserver.url_for("/ingest"), "retry_backoff_max_s": 2}, records=ORDERS[:1])
    assert waits == [2.0]


def test_retry_after_may_be_an_http_date(httpserver: HTTPServer, waits: list[float]) -> None:
    httpserver.expect_oneshot_request("/ingest").respond_with_data(
        "", status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    httpserver.expect_request("/ingest").respond_with_data("ok")
    post({"url": httpserver.url_for("/ingest")}, records=ORDERS[:1])
    assert waits == [0.0]  # a date in the past: retry at once


def test_read_timeouts_are_retried(slow_server: tuple[HTTPServer, list[str]]) -> None:
    server, seen = slow_server
    summaries = post({"url": server.url_for("/ingest"), "timeout_s": 0.2}, records=ORDERS[:1])
    assert summaries[0]["attempts"] == 2
    assert seen == [expected_key(0), expected_key(0)]


def test_backoff_is_exponential_with_full_jitter(
    httpserver: HTTPServer, waits: list[float]
) -> None:
    httpserver.expect_request("/ingest").respond_with_data("down", status=500)
    config = {
        "url": httpserver.url_for("/ingest"),
        "max_retries": 4,
        "retry_backoff_s": 1.0,
        "retry_backoff_max_s": 5,
    }
    with pytest.raises(NodeError, match="gave up after 5 attempts, last: HTTP 500") as caught:
        post(config, records=ORDERS[:1])
    assert not caught.value.permanent
    assert len(waits) == 4
    for retry, wait in enumerate(waits):
        assert 0 <= wait <= min(5, 2**retry)


def test_connection_refused_is_retried_then_fails_not_permanently(waits: list[float]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/ingest"
    with pytest.raises(NodeError) as caught:
        post({"url": url, "max_retries": 2}, records=ORDERS[:1])
    assert not caught.value.permanent
    assert str(caught.value) == "gave up after 3 attempts, last: network error: Connection refused"
    assert len(waits) == 2


def test_connection_headers_and_basic_auth_are_sent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/ingest").respond_with_data("ok")
    base = httpserver.url_for("/api/v1/").replace("://", "://alice:p%40ss@")
    connection = ConnectionInfo("crm", base, {"X-Api-Key": "k-123"})
    post(
        {"connection": "crm", "url": "ingest", "headers": {"X-Source": "flow"}},
        records=ORDERS[:1],
        connection_lookup=lambda name: connection,
    )
    request = httpserver.log[0][0]
    assert request.path == "/api/v1/ingest"
    assert request.headers["X-Api-Key"] == "k-123"
    assert request.headers["X-Source"] == "flow"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:p@ss").decode()


def test_the_connection_url_alone_is_the_target(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    connection = ConnectionInfo("hook", httpserver.url_for("/hook"))
    post({"connection": "hook"}, records=ORDERS[:1], connection_lookup=lambda name: connection)
    assert httpserver.log[0][0].path == "/hook"


def test_same_origin_redirects_re_post_the_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_data("", 308, {"Location": "/new"})
    httpserver.expect_request("/new").respond_with_data("ok")
    summaries = post({"url": httpserver.url_for("/old")}, records=ORDERS[:1])
    assert [request.path for request, _ in httpserver.log] == ["/old", "/new"]
    assert bodies(httpserver)[1]["id"] == 1
    assert summaries[0]["status"] == 200


def test_cross_origin_redirects_drop_credentials(
    httpserver: HTTPServer, other_origin: HTTPServer
) -> None:
    httpserver.expect_request("/api/ingest").respond_with_data(
        "", 307, {"Location": other_origin.url_for("/elsewhere")}
    )
    other_origin.expect_request("/elsewhere").respond_with_data("ok")
    base = httpserver.url_for("/api").replace("://", "://alice:secret@")
    connection = ConnectionInfo("crm", base, {"X-Api-Key": "k-123"})
    post(
        {"connection": "crm", "url": "/ingest"},
        records=ORDERS[:1],
        connection_lookup=lambda name: connection,
    )
    moved = other_origin.log[0][0]
    assert "X-Api-Key" not in moved.headers and "Authorization" not in moved.headers
    assert moved.headers["Idempotency-Key"] == expected_key(0)


def test_a_redirect_to_the_metadata_address_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ingest").respond_with_data(
        "", 302, {"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    with pytest.raises(NodeError, match=r"169\.254\.169\.254, a link-local or metadata") as caught:
        post({"url": httpserver.url_for("/ingest")}, records=ORDERS[:1])
    assert caught.value.permanent


def test_endless_redirects_fail_permanently(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/loop").respond_with_data("", 302, {"Location": "/loop"})
    with pytest.raises(NodeError, match="more than 5 redirects") as caught:
        post({"url": httpserver.url_for("/loop")}, records=ORDERS[:1])
    assert caught.value.permanent
    assert len(httpserver.log) == 6


def test_metadata_and_non_http_urls_are_refused() -> None:
    for url, message in [
        ("http://169.254.169.254/latest/meta-data/", "link-local or metadata"),
        ("http://[fd00:ec2::254]/", "link-local or metadata"),
    ]:
        with pytest.raises(NodeError, match=message) as caught:
            post({"url": url}, records=ORDERS[:1])
        assert caught.value.permanent
    connection = ConnectionInfo("files", "file:///etc")
    with pytest.raises(NodeError, match="only http and https") as caught:
        post(
            {"connection": "files", "url": "passwd"},
            records=ORDERS[:1],
            connection_lookup=lambda name: connection,
        )
    assert caught.value.permanent


def test_loopback_is_refused_unless_the_deployment_allows_it(
    httpserver: HTTPServer, settings: Settings
) -> None:
    httpserver.expect_request("/ingest").respond_with_data("ok")
    settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = False
    for url in (
        httpserver.url_for("/ingest"),
        httpserver.url_for("/ingest").replace("localhost", "127.0.0.1"),
    ):
        with pytest.raises(NodeError, match="private, loopback or reserved") as caught:
            post({"url": url}, records=ORDERS[:1])
        assert caught.value.permanent
    assert httpserver.log == []


def test_errors_never_show_connection_secrets(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/ingest").respond_with_data("nope", 403)
    base = httpserver.url_for("/api").replace("://", "://alice:hunter2@")
    connection = ConnectionInfo("crm", base, {"X-Api-Key": "k-secret"})
    with pytest.raises(NodeError) as caught:
        post(
            {"connection": "crm", "url": "ingest"},
            records=ORDERS[:1],
            connection_lookup=lambda name: connection,
        )
    assert str(caught.value) == "HTTP 403: nope"


def test_stops_between_batches_when_the_run_is_cancelled(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ingest").respond_with_data("ok")
    with pytest.raises(NodeError, match="cancelled") as caught:
        post({"url": httpserver.url_for("/ingest")}, is_cancelled=lambda: bool(httpserver.log))
    assert caught.value.permanent
    assert len(httpserver.log) == 1


def test_unserialisable_records_fail_permanently(httpserver: HTTPServer) -> None:
    with pytest.raises(NodeError, match="batch 0 cannot be sent as JSON") as caught:
        post({"url": httpserver.url_for("/ingest")}, records=[{"x": object()}])
    assert caught.value.permanent


def test_server_sees_utf8_json(httpserver: HTTPServer) -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.get_data().decode("utf-8"))
        return Response("ok")

    httpserver.expect_request("/ingest").respond_with_handler(handler)
    post({"url": httpserver.url_for("/ingest")}, records=ORDERS[:1])
    assert "Zoë 東京" in seen[0]


@pytest.mark.parametrize(
    ("config", "loc", "message"),
    [
        ({"url": "/ingest"}, (), "absolute http(s) URL"),
        ({"url": "ftp://host/x"}, (), "absolute http(s) URL"),
        ({"url": "http://u:p@host/x"}, (), "credentials belong in a connection"),
        ({"url": "http://host/x", "connection": "crm"}, (), "a path below the connection"),
        ({"url": "http://host/", "batch_size": 0}, ("batch_size",), "greater than or equal to 1"),
        ({"url": "http://host/", "max_retries": 21}, ("max_retries",), "less than or equal to 20"),
        ({"url": "http://host/", "headers": {"X-A": "a\r\nX-B: b"}}, ("headers",), "line break"),
        ({"url": "http://host/", "method": "PUT"}, ("method",), "Extra inputs"),
    ],
)
def test_config_validation_errors(
    config: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        HttpPostNode(config)
    error = caught.value.errors()[0]
    assert error["loc"] == loc
    assert message in error["msg"]


def test_output_is_a_typed_summary() -> None:
    node = HttpPostNode({"url": "http://crm.example/ingest"})
    assert node.output_schema({}).fields == {
        "batch": FieldType.INTEGER,
        "records": FieldType.INTEGER,
        "status": FieldType.INTEGER,
        "attempts": FieldType.INTEGER,
        "idempotency_key": FieldType.STRING,
    }
    entry = HttpPostNode.describe()
    assert entry["outputs"][0]["kind"] == "summary" and entry["category"] == "destination"
    assert all(p.get("description") for p in entry["config_schema"]["properties"].values())


def test_credential_headers_are_refused_in_the_config() -> None:
    with pytest.raises(ValidationError) as caught:
        HttpPostNode({"url": "http://host/", "headers": {"Authorization": "Bearer x"}})
    assert caught.value.errors()[0]["loc"] == ("headers",)
    assert "put it in a connection" in str(caught.value)


def test_a_peer_echoing_credentials_does_not_leak_them_into_the_error(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/ingest").respond_with_data(
        "bad token: Bearer s3cr3t-tok", status=401
    )
    node = HttpPostNode({"connection": "crm", "url": "ingest"})
    context = ExecutionContext(
        connection_lookup=lambda name: ConnectionInfo(
            name, httpserver.url_for("/"), {"Authorization": "Bearer s3cr3t-tok"}
        )
    )
    with pytest.raises(NodeError) as caught:
        list(node.execute(context, {"in": [[{"id": 1}]]}))
    assert "s3cr3t-tok" not in str(caught.value)
    assert str(caught.value).startswith("HTTP 401: bad token: ***")


def _numbered(batches: int, size: int = 2) -> list[list[dict[str, Any]]]:
    return [[{"n": b * size + i} for i in range(size)] for b in range(batches)]


def test_the_next_batch_is_read_while_the_peer_answers_the_previous_one(
    httpserver: HTTPServer,
) -> None:
    second_read = threading.Event()

    def upstream() -> Iterator[list[dict[str, Any]]]:
        first, second = _numbered(2)
        yield first
        second_read.set()
        yield second

    def handler(request: Request) -> Response:
        # The first answer waits until the node has read the second batch: this only passes
        # when reading goes on while a request is in flight.
        if json.loads(request.get_data())[0]["n"] == 0 and not second_read.wait(5):
            return Response("the next batch was not read meanwhile", 500)
        return Response("ok")

    httpserver.expect_request("/ingest").respond_with_handler(handler)
    node = HttpPostNode({**FAST, "url": httpserver.url_for("/ingest"), "batch_size": 2})
    context = ExecutionContext(run_id="run-1", node_key="push")
    out = list(node.execute(context, {"in": upstream()}))
    assert [s["status"] for batch in out for s in batch] == [200, 200]


@pytest.fixture
def checkpoint_every(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the least time between two checkpoints for the test."""

    def every(seconds: float) -> None:
        monkeypatch.setattr(http_post, "CHECKPOINT_EVERY_S", seconds)

    return every


def test_batches_are_sent_acknowledged_and_checkpointed_in_order(
    httpserver: HTTPServer, checkpoint_every: Any
) -> None:
    checkpoint_every(0)  # a peer slower than the cadence: every batch is checkpointed
    httpserver.expect_request("/ingest").respond_with_data("ok")
    saved: list[Any] = []
    node = HttpPostNode({**FAST, "url": httpserver.url_for("/ingest"), "batch_size": 2})
    context = ExecutionContext(run_id="run-1", node_key="push", save_checkpoint=saved.append)
    out = list(node.execute(context, {"in": iter(_numbered(5))}))
    assert [s["batch"] for batch in out for s in batch] == [0, 1, 2, 3, 4]
    assert keys(httpserver) == [expected_key(i) for i in range(5)]
    assert saved == [{"acked": i} for i in range(5)]


def test_a_fast_peer_is_checkpointed_at_the_cadence_not_per_request(
    httpserver: HTTPServer, checkpoint_every: Any
) -> None:
    # (A cadence no test outlasts: the node saves nothing while it succeeds.)
    checkpoint_every(3600)
    httpserver.expect_request("/ingest").respond_with_data("ok")
    saved: list[Any] = []
    node = HttpPostNode({**FAST, "url": httpserver.url_for("/ingest"), "batch_size": 2})
    context = ExecutionContext(run_id="run-1", node_key="push", save_checkpoint=saved.append)
    out = list(node.execute(context, {"in": iter(_numbered(5))}))
    assert [s["batch"] for batch in out for s in batch] == [0, 1, 2, 3, 4]
    assert saved == []  # the node succeeded: its finish, not a checkpoint, says it was sent


def test_a_slow_checkpoint_spaces_out_the_next_ones(
    httpserver: HTTPServer, checkpoint_every: Any
) -> None:
    checkpoint_every(0)  # every batch, were saving free
    httpserver.expect_request("/ingest").respond_with_data("ok")
    saved: list[Any] = []

    def save_slowly(value: Any) -> None:  # a database taking 0.1 s per write
        saved.append(value)
        time.sleep(0.1)

    node = HttpPostNode({**FAST, "url": httpserver.url_for("/ingest"), "batch_size": 2})
    context = ExecutionContext(run_id="run-1", node_key="push", save_checkpoint=save_slowly)
    started = time.monotonic()
    out = list(node.execute(context, {"in": iter(_numbered(5))}))
    assert [s["batch"] for batch in out for s in batch] == [0, 1, 2, 3, 4]
    # After one write of 0.1 s, the next waits 20 times as long (the batches took less).
    assert time.monotonic() - started < 0.1 * http_post.CHECKPOINT_COST_FACTOR
    assert saved == [{"acked": 0}]


def test_what_the_peer_took_is_checkpointed_before_the_node_stops(
    httpserver: HTTPServer, checkpoint_every: Any
) -> None:
    checkpoint_every(3600)

    def handler(request: Request) -> Response:
        refused = json.loads(request.get_data())[0]["n"] == 6
        return Response("bad record", 400) if refused else Response("ok")

    httpserver.expect_request("/ingest").respond_with_handler(handler)
    saved: list[Any] = []
    node = HttpPostNode({**FAST, "url": httpserver.url_for("/ingest"), "batch_size": 2})
    context = ExecutionContext(run_id="run-1", node_key="push", save_checkpoint=saved.append)
    with pytest.raises(NodeError, match="HTTP 400"):
        list(node.execute(context, {"in": iter(_numbered(5))}))
    assert saved == [{"acked": 2}]  # once, with the last batch taken: a retry resumes after it


def test_a_refused_batch_stops_the_node_before_the_next_is_sent(httpserver: HTTPServer) -> None:
    def handler(request: Request) -> Response:
        refused = json.loads(request.get_data())[0]["n"] == 2
        return Response("bad record", 400) if refused else Response("ok")

    httpserver.expect_request("/ingest").respond_with_handler(handler)
    saved: list[Any] = []
    node = HttpPostNode({**FAST, "url": httpserver.url_for("/ingest"), "batch_size": 2})
    context = ExecutionContext(run_id="run-1", node_key="push", save_checkpoint=saved.append)
    with pytest.raises(NodeError, match="HTTP 400: bad record") as caught:
        list(node.execute(context, {"in": iter(_numbered(4))}))
    assert caught.value.permanent
    assert [body[0]["n"] for body in bodies(httpserver)] == [0, 2]
    assert saved == [{"acked": 0}]


def test_a_batch_taken_while_the_next_was_read_is_recorded_when_the_read_fails(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/ingest").respond_with_data("ok")

    def upstream() -> Iterator[list[dict[str, Any]]]:
        yield [{"n": 0}, {"n": 1}]
        raise NodeError("source unavailable", permanent=False)

    saved: list[Any] = []
    node = HttpPostNode({**FAST, "url": httpserver.url_for("/ingest"), "batch_size": 2})
    context = ExecutionContext(run_id="run-1", node_key="push", save_checkpoint=saved.append)
    with pytest.raises(NodeError, match="source unavailable"):
        list(node.execute(context, {"in": upstream()}))
    assert [body[0]["n"] for body in bodies(httpserver)] == [0]
    assert saved == [{"acked": 0}]  # a retry of the node resumes after it, not sending it twice


def test_a_stopped_node_does_not_wait_out_a_backoff(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ingest").respond_with_data("busy", 503)

    def upstream() -> Iterator[list[dict[str, Any]]]:
        yield [{"n": 0}]
        raise NodeError("source unavailable", permanent=False)

    config = {
        "url": httpserver.url_for("/ingest"),
        "retry_backoff_s": 60,
        "retry_backoff_max_s": 60,
    }
    node = HttpPostNode(config)
    started = time.monotonic()
    with pytest.raises(NodeError, match="source unavailable"):
        list(node.execute(ExecutionContext(run_id="run-1", node_key="push"), {"in": upstream()}))
    assert time.monotonic() - started < 10  # not the 60 s backoff


def test_a_peer_echoing_basic_auth_or_a_token_at_the_cut_leaks_neither(
    httpserver: HTTPServer,
) -> None:
    token, password = "tok-" + "Q7wErTy9" * 5, "Pa55-w0rd-9876"
    echo = "." * 185 + "{}\n"  # the 200-character cut falls 15 characters into a secret

    def handler(request: Request) -> Response:
        return Response(echo.format(request.headers["Authorization"]), status=401)

    httpserver.expect_request("/ingest").respond_with_handler(handler)
    base = httpserver.url_for("/").replace("://", f"://etl:{password}@")
    connections = {
        "bearer": ConnectionInfo("bearer", httpserver.url_for("/"), {"Authorization": token}),
        "basic": ConnectionInfo("basic", base),
    }
    basic = base64.b64encode(f"etl:{password}".encode()).decode()
    for name, secret in (("bearer", token), ("basic", basic)):
        with pytest.raises(NodeError) as caught:
            post(
                {"connection": name, "url": "ingest"},
                records=ORDERS[:1],
                connection_lookup=lambda name: connections[name],
            )
        message = str(caught.value)
        assert message.startswith("HTTP 401: " + "." * 185)
        pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}
        assert [piece for piece in pieces if piece in message] == []
