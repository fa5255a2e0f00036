"""The ``http_request`` source against a real HTTP server on loopback (pytest-httpserver)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from flows.validation import validate_flow
from nodes.builtin import delivery, page_reader
from nodes.builtin.http_request import HttpRequestNode
from nodes.builtin.page_reader import page_records
from nodes.sdk import ConnectionInfo, ExecutionContext, FieldType, NodeError, RecordSchema
from nodes.sdk.node import RowBatch, as_records
from tests.conftest import WorkerProcess
from tests.flows.helpers import add_connection

FAST = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 5}
ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 26)]


@pytest.fixture(autouse=True)
def allow_loopback(settings: Settings) -> None:
    settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = True


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays the node asks for; recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(delivery, "_sleep", lambda delay, stop=None: delays.append(delay))
    return delays


def read(config: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    """Every record the node outputs."""
    node = HttpRequestNode({**FAST, **config})
    context.setdefault("run_id", "run-1")
    context.setdefault("node_key", "api")
    return [r for batch in node.execute(ExecutionContext(**context), {}) for r in as_records(batch)]


def requested(server: HTTPServer) -> list[dict[str, str]]:
    """The query of each request the server saw, in order."""
    return [dict(request.args) for request, _ in server.log]


def paged_by_query(param: str, size_param: str, first: int) -> Callable[[Request], Response]:
    """Pages of ITEMS numbered from ``first`` by ``param``, ``size_param`` records a page."""

    def handler(request: Request) -> Response:
        size = int(request.args[size_param])
        start = (int(request.args[param]) - first) * size
        return Response(json.dumps({"data": ITEMS[start : start + size]}))

    return handler


# --- records_path -----------------------------------------------------------------------------


def test_the_body_itself_is_the_list_of_records(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_json(ITEMS[:3])
    assert read({"url": httpserver.url_for("/items")}) == ITEMS[:3]
    assert httpserver.log[0][0].headers["Accept"] == "application/json"


def test_a_dotted_records_path_reaches_a_nested_list(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_json({"result": {"items": ITEMS[:2]}})
    config = {"url": httpserver.url_for("/items"), "records_path": "result.items"}
    assert read(config) == ITEMS[:2]


def test_a_single_object_is_one_record(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/me").respond_with_json({"user": {"id": 7, "name": "Zoë"}})
    assert read({"url": httpserver.url_for("/me"), "records_path": "user"}) == [
        {"id": 7, "name": "Zoë"}
    ]


def test_records_path_forms_and_their_errors() -> None:
    assert page_records({"data": None}, "data") == []
    assert page_records({"a": [{"x": 1}]}, "a") == [{"x": 1}]
    with pytest.raises(NodeError, match=r"page 3: records_path 'data' is not in the answer"):
        page_records({"items": []}, "data", page=2)
    with pytest.raises(NodeError, match=r"records_path 'data' is a string, not a list or an obj"):
        page_records({"data": "x"}, "data")
    with pytest.raises(NodeError, match=r"records_path '': item 1 is a number, not an object"):
        page_records([{"id": 1}, 2], "")


def test_an_answer_that_is_not_json_fails_naming_the_page(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_data("<html>oops</html>")
    with pytest.raises(NodeError, match=r"page 1: the answer is not JSON: <html>oops") as info:
        read({"url": httpserver.url_for("/items")})
    assert info.value.permanent


# --- pagination -------------------------------------------------------------------------------


def test_next_url_in_the_body_is_followed_until_it_is_missing(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items", query_string="").respond_with_json(
        {"data": ITEMS[:10], "links": {"next": "/items?after=10"}}
    )
    httpserver.expect_request("/items", query_string="after=10").respond_with_json(
        {"data": ITEMS[10:20], "links": {"next": httpserver.url_for("/items") + "?after=20"}}
    )
    httpserver.expect_request("/items", query_string="after=20").respond_with_json(
        {"data": ITEMS[20:], "links": {"next": None}}
    )
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "pagination": {"type": "next_url", "path": "links.next"},
    }
    assert read(config) == ITEMS
    assert len(httpserver.log) == 3


def test_next_url_from_an_rfc8288_link_header(httpserver: HTTPServer) -> None:
    base = httpserver.url_for("/items")
    links = {
        "": f'<{base}?page=2>; rel="next", <{base}?page=3>; rel="last"',
        "page=2": f'<{base}?page=1>; rel="prev", </items?page=3>; rel="next last"',
        "page=3": f'<{base}?page=2>; rel="prev"',
    }
    chunks = {"": ITEMS[:10], "page=2": ITEMS[10:20], "page=3": ITEMS[20:]}
    for query, link in links.items():
        httpserver.expect_request("/items", query_string=query).respond_with_json(
            chunks[query], headers={"Link": link}
        )
    config = {"url": base, "pagination": {"type": "next_url", "link_header": True}}
    assert read(config) == ITEMS
    assert requested(httpserver) == [{}, {"page": "2"}, {"page": "3"}]


def test_cursor_is_sent_back_until_the_api_gives_none(httpserver: HTTPServer) -> None:
    pages = {None: (ITEMS[:10], "c10"), "c10": (ITEMS[10:20], "c20"), "c20": (ITEMS[20:], None)}

    def handler(request: Request) -> Response:
        assert request.args["region"] == "eu"
        data, cursor = pages[request.args.get("after")]
        return Response(json.dumps({"items": data, "meta": {"next_cursor": cursor}}))

    httpserver.expect_request("/items").respond_with_handler(handler)
    config = {
        "url": httpserver.url_for("/items"),
        "query": {"region": "eu"},
        "records_path": "items",
        "pagination": {"type": "cursor", "path": "meta.next_cursor", "param": "after"},
    }
    assert read(config) == ITEMS
    assert [q.get("after") for q in requested(httpserver)] == [None, "c10", "c20"]


def test_offset_pagination_stops_on_a_short_page(httpserver: HTTPServer) -> None:
    def handler(request: Request) -> Response:
        offset, limit = int(request.args["skip"]), int(request.args["take"])
        return Response(json.dumps(ITEMS[offset : offset + limit]))

    httpserver.expect_request("/items").respond_with_handler(handler)
    config = {
        "url": httpserver.url_for("/items"),
        "pagination": {"type": "offset", "param": "skip", "limit_param": "take", "limit": 10},
    }
    assert read(config) == ITEMS
    assert requested(httpserver) == [
        {"skip": "0", "take": "10"},
        {"skip": "10", "take": "10"},
        {"skip": "20", "take": "10"},  # 5 records: short, the last page
    ]


def test_page_pagination_stops_on_an_empty_page(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_handler(paged_by_query("p", "n", 0))
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "pagination": {"type": "page", "param": "p", "start": 0, "size_param": "n", "size": 5},
    }
    assert read(config) == ITEMS  # 25 records: five full pages, then an empty one
    assert [q["p"] for q in requested(httpserver)] == ["0", "1", "2", "3", "4", "5"]


def test_reaching_max_pages_fails_clearly(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_handler(paged_by_query("page", "per_page", 1))
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "pagination": {"type": "page", "size": 5, "max_pages": 3},
    }
    with pytest.raises(NodeError, match=r"pagination.max_pages: read 3 pages and the API has more"):
        read(config)
    assert len(httpserver.log) == 3


def test_max_pages_with_on_max_pages_stop_keeps_what_was_read(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_handler(paged_by_query("page", "per_page", 1))
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "pagination": {"type": "page", "size": 5, "max_pages": 3, "on_max_pages": "stop"},
    }
    assert read(config) == ITEMS[:15]


def test_the_last_page_at_max_pages_is_not_a_failure(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_handler(paged_by_query("page", "per_page", 1))
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "pagination": {"type": "page", "size": 10, "max_pages": 3},
    }
    assert read(config) == ITEMS  # the third page is short: nothing beyond it


# --- retries, rate limit ----------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(httpserver: HTTPServer, waits: list[float]) -> None:
    httpserver.expect_ordered_request("/items").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3"}
    )
    httpserver.expect_ordered_request("/items").respond_with_json(ITEMS[:2])
    assert read({"url": httpserver.url_for("/items")}) == ITEMS[:2]
    assert waits == [3.0]


def test_a_500_in_the_middle_is_retried_and_every_record_comes_once(
    httpserver: HTTPServer, waits: list[float]
) -> None:
    handler = paged_by_query("page", "per_page", 1)
    failed: list[str] = []

    def flaky(request: Request) -> Response:
        if request.args["page"] == "2" and not failed:
            failed.append("page 2")
            return Response("database down", status=500)
        return handler(request)

    httpserver.expect_request("/items").respond_with_handler(flaky)
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "pagination": {"type": "page", "size": 10},
    }
    assert read(config) == ITEMS
    assert [q["page"] for q in requested(httpserver)] == ["1", "2", "2", "3"]
    assert len(waits) == 1


def test_a_4xx_is_not_retried(httpserver: HTTPServer, waits: list[float]) -> None:
    httpserver.expect_request("/items").respond_with_data("no such list", status=404)
    with pytest.raises(NodeError, match=r"HTTP 404: no such list") as info:
        read({"url": httpserver.url_for("/items")})
    assert info.value.permanent and waits == [] and len(httpserver.log) == 1


def test_rate_limit_spaces_the_requests(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_handler(paged_by_query("page", "per_page", 1))
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "rate_limit_per_s": 20,
        "pagination": {"type": "page", "size": 5},
    }
    started = time.monotonic()
    assert read(config) == ITEMS
    assert len(httpserver.log) == 6
    assert time.monotonic() - started >= 5 / 20  # six requests: five gaps of 1/20 s at least


# --- query, body, connection ------------------------------------------------------------------


def test_query_binds_run_values_without_templating(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/changes").respond_with_json([])
    config = {
        "url": httpserver.url_for("/changes"),
        "query": {
            "since": {"run": "interval_start"},
            "until": {"run": "interval_end"},
            "region": {"run": "region"},
            "active": True,
            "limit": 50,
            "q": "{interval_start}",
        },
    }
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    read(config, interval_start=start, interval_end=end, params={"region": "eu & us"})
    assert requested(httpserver) == [
        {
            "since": "2026-01-01T00:00:00+00:00",
            "until": "2026-01-02T00:00:00+00:00",
            "region": "eu & us",
            "active": "true",
            "limit": "50",
            "q": "{interval_start}",  # text is sent as written, never formatted
        }
    ]


def test_a_run_value_the_run_lacks_fails_naming_the_query_key(httpserver: HTTPServer) -> None:
    config = {"url": httpserver.url_for("/x"), "query": {"since": {"run": "interval_start"}}}
    with pytest.raises(NodeError, match=r"query.since: the run has no value 'interval_start'"):
        read(config)
    assert httpserver.log == []


def test_post_sends_its_json_body_with_every_page(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/search", method="POST").respond_with_handler(
        paged_by_query("page", "per_page", 1)
    )
    config = {
        "url": httpserver.url_for("/search"),
        "method": "POST",
        "body": {"filter": {"status": "open"}},
        "records_path": "data",
        "pagination": {"type": "page", "size": 10},
    }
    assert read(config) == ITEMS
    assert {r.get_data() for r, _ in httpserver.log} == {b'{"filter":{"status":"open"}}'}
    assert httpserver.log[0][0].headers["Content-Type"] == "application/json"


def test_a_connection_gives_the_base_url_and_credentials(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/v2/items", headers={"Authorization": "Bearer tok-123456789"}
    ).respond_with_json(ITEMS[:1])
    crm = ConnectionInfo(
        "crm", httpserver.url_for("/v2/"), headers={"Authorization": "Bearer tok-123456789"}
    )
    config = {"connection": "crm", "url": "items"}
    assert read(config, connection_lookup=lambda name: crm) == ITEMS[:1]


# --- security ---------------------------------------------------------------------------------


def test_a_metadata_address_is_refused_even_when_private_ones_are_allowed() -> None:
    config = {"url": "http://169.254.169.254/latest/meta-data/iam/"}
    with pytest.raises(NodeError, match=r"link-local or metadata address") as info:
        read(config)
    assert info.value.permanent


def test_a_next_link_to_a_metadata_address_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_json(
        {"data": ITEMS[:1], "next": "http://169.254.169.254/latest/meta-data/"}
    )
    config = {
        "url": httpserver.url_for("/items"),
        "records_path": "data",
        "pagination": {"type": "next_url", "path": "next"},
    }
    with pytest.raises(NodeError, match=r"link-local or metadata address"):
        read(config)


def test_private_addresses_are_refused_unless_allowed(
    httpserver: HTTPServer, settings: Settings
) -> None:
    settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = False
    with pytest.raises(NodeError, match=r"a private, loopback or reserved address"):
        read({"url": httpserver.url_for("/items")})
    assert httpserver.log == []


def test_an_echoed_token_never_reaches_the_error(httpserver: HTTPServer) -> None:
    token = "s3cr3t-api-token-0123456789"

    def echo(request: Request) -> Response:
        return Response(f"bad request, you sent {request.headers['Authorization']}", status=400)

    httpserver.expect_request("/items").respond_with_handler(echo)
    api = ConnectionInfo(
        "api", httpserver.url_for("/"), headers={"Authorization": f"Bearer {token}"}
    )
    context = ExecutionContext(connection_lookup=lambda name: api)
    node = HttpRequestNode({"connection": "api", "url": "items"})
    with pytest.raises(NodeError) as info:
        list(node.execute(context, {}))
    assert httpserver.log[0][0].headers["Authorization"] == f"Bearer {token}"
    assert "bad request, you sent" in str(info.value)
    assert token not in str(info.value) and token[:8] not in str(info.value)


def test_credentials_in_config_headers_are_refused() -> None:
    flow = one_node_flow({"url": "https://api.example.com/x", "headers": {"Authorization": "x"}})
    assert [str(p) for p in validate_flow(flow)] == [
        "nodes[0].config.headers (node 'api'): Value error, header 'Authorization' carries "
        "credentials: put it in a connection"
    ]


# --- save-time checks -------------------------------------------------------------------------


def one_node_flow(config: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
    nodes = [{"key": "api", "type": "http_request", "config": config}, *more]
    edges = [{"from": "api", "to": node["key"]} for node in more]
    return {"slug": "api", "name": "API", "nodes": nodes, "edges": edges}


def test_an_unknown_pagination_type_is_a_save_time_error_at_its_type() -> None:
    flow = one_node_flow({"url": "https://api.example.com/x", "pagination": {"type": "pages"}})
    problems = validate_flow(flow)
    assert [(p.path, p.node) for p in problems] == [("nodes[0].config.pagination.type", "api")]
    assert problems[0].message == (
        "unknown pagination type 'pages': expected one of none, next_url, cursor, offset, page"
    )


def test_pagination_field_errors_are_at_the_field() -> None:
    flow = one_node_flow(
        {"url": "https://api.example.com/x", "pagination": {"type": "cursor", "params": "c"}}
    )
    assert sorted((p.path, p.message) for p in validate_flow(flow)) == [
        ("nodes[0].config.pagination.params", "Extra inputs are not permitted"),
        ("nodes[0].config.pagination.path", "Field required"),
    ]


def test_a_bad_query_value_is_named() -> None:
    config = {
        "url": "https://api.example.com/x",
        "query": {"since": {"run": "x", "at": 1}, "l": [1]},
    }
    assert sorted(str(p) for p in validate_flow(one_node_flow(config))) == [
        "nodes[0].config.query.l (node 'api'): a query value is a text, a number, a boolean or "
        '{"run": "<run value>"}',
        "nodes[0].config.query.since.at (node 'api'): Extra inputs are not permitted",
    ]


def test_declared_columns_are_the_schema_downstream_checks_use() -> None:
    config = {"url": "https://api.example.com/x", "columns": {"id": "integer", "name": "string"}}
    node = HttpRequestNode(config)
    assert node.output_schema({}) == RecordSchema({"id": FieldType.INTEGER, "name": "string"})
    keep = {
        "key": "keep",
        "type": "filter",
        "config": {"conditions": [{"field": "email", "op": "eq", "value": "x"}]},
    }
    problems = validate_flow(one_node_flow(config, keep))
    assert [p.path for p in problems] == ["nodes[1].config.conditions[0].field"]
    assert "'email' does not exist upstream" in problems[0].message


def test_declared_columns_shape_the_records_as_row_batches(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/items").respond_with_json(
        [{"id": 1, "name": "a", "extra": True}, {"id": 2}]
    )
    node = HttpRequestNode(
        {"url": httpserver.url_for("/items"), "columns": {"id": "integer", "name": "string"}}
    )
    batches = list(node.execute(ExecutionContext(), {}))
    assert all(type(b) is RowBatch for b in batches)
    assert [r for b in batches for r in b] == [{"id": 1, "name": "a"}, {"id": 2, "name": None}]


# --- resuming after a worker loss -------------------------------------------------------------


class Checkpoints:
    """What the engine keeps for a node run between deliveries: the last saved checkpoint."""

    def __init__(self) -> None:
        self.value: Any = None

    def context(self, storage: FileSystemStorage) -> ExecutionContext:
        return ExecutionContext(
            run_id="run-7",
            node_key="api",
            storage=storage,
            checkpoint=self.value,
            save_checkpoint=self.save,
        )

    def save(self, value: Any) -> None:
        self.value = json.loads(json.dumps(value))  # stored as JSON, as the engine does


BIG = [{"id": i} for i in range(1, 5001)]  # five pages of 1,000: one batch per page


def big_pages(request: Request) -> Response:
    page = int(request.args["page"])
    return Response(json.dumps(BIG[(page - 1) * 1000 : page * 1000]))


@pytest.fixture
def save_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Save (and checkpoint) after every batch rather than every second."""
    monkeypatch.setattr(page_reader, "SAVE_EVERY_S", 0)


def test_a_redelivered_source_resumes_after_the_last_saved_page(
    httpserver: HTTPServer, tmp_path: Path, save_every_batch: None
) -> None:
    httpserver.expect_request("/items").respond_with_handler(big_pages)
    config = {"url": httpserver.url_for("/items"), "pagination": {"type": "page", "size": 1000}}
    storage, checkpoints = FileSystemStorage(location=tmp_path), Checkpoints()

    first = HttpRequestNode(config).execute(checkpoints.context(storage), {})
    lost = [r for batch in islice(first, 2) for r in batch]  # the worker dies after two pages
    first.close()
    assert lost == BIG[:2000]
    assert checkpoints.value["pages"] == 2

    second = HttpRequestNode(config).execute(checkpoints.context(storage), {})
    records = [r for batch in second for r in batch]
    assert records == BIG  # every record once, in order
    # pages 1 and 2 were replayed from storage, not fetched again (page 6 is the empty end)
    assert [q["page"] for q in requested(httpserver)] == ["1", "2", "3", "4", "5", "6"]
    assert list(tmp_path.rglob("*.json")) == []  # the saved pages are removed once read


def test_a_failed_page_saves_the_pages_before_it_for_the_retry(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    failed: list[int] = []

    def once_broken(request: Request) -> Response:
        if request.args["page"] == "3" and not failed:
            failed.append(3)
            return Response("maintenance", status=503)
        return big_pages(request)

    httpserver.expect_request("/items").respond_with_handler(once_broken)
    config = {
        "url": httpserver.url_for("/items"),
        "max_retries": 0,
        "pagination": {"type": "page", "size": 1000},
    }
    storage, checkpoints = FileSystemStorage(location=tmp_path), Checkpoints()
    with pytest.raises(NodeError, match="HTTP 503: maintenance") as info:
        list(HttpRequestNode(config).execute(checkpoints.context(storage), {}))
    assert not info.value.permanent  # the engine retries the node under its policy
    assert checkpoints.value["pages"] == 2  # saved on failure, well before the second was up
    records = [
        r
        for batch in HttpRequestNode(config).execute(checkpoints.context(storage), {})
        for r in batch
    ]
    assert records == BIG
    assert [q["page"] for q in requested(httpserver)] == ["1", "2", "3", "3", "4", "5", "6"]


def test_a_resume_whose_saved_pages_are_gone_starts_again(
    httpserver: HTTPServer, tmp_path: Path, save_every_batch: None
) -> None:
    httpserver.expect_request("/items").respond_with_handler(big_pages)
    config = {"url": httpserver.url_for("/items"), "pagination": {"type": "page", "size": 1000}}
    storage, checkpoints = FileSystemStorage(location=tmp_path), Checkpoints()
    first = HttpRequestNode(config).execute(checkpoints.context(storage), {})
    next(first)
    first.close()
    for saved in tmp_path.rglob("*.json"):
        saved.unlink()
    records = [
        r
        for batch in HttpRequestNode(config).execute(checkpoints.context(storage), {})
        for r in batch
    ]
    assert records == BIG


# --- on the real engine and worker ------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "api-to-crm.json"
SHOP = [
    {
        "id": i,
        "customer": f"Client {i} ✓",
        "email": f"c{i}@example.test",
        "status": "paid",
        "amount": float(i % 250),
    }
    for i in range(1, 3001)
]


def shop_api(server: HTTPServer, fail_page: int | None = None, delay_s: float = 0) -> list[str]:
    """``/orders`` pages SHOP (``page``, ``per_page``), each after ``delay_s``; ``/ingest``
    takes posts. ``fail_page`` answers 503 for that page once. Returns the pages served."""
    served: list[str] = []

    def orders(request: Request) -> Response:
        time.sleep(delay_s)  # a slow API
        page, size = int(request.args["page"]), int(request.args["per_page"])
        if page == fail_page and f"{page}:503" not in served:
            served.append(f"{page}:503")
            return Response("busy", status=503)
        served.append(str(page))
        data = SHOP[(page - 1) * size : page * size]
        return Response(json.dumps({"data": data}), content_type="application/json")

    server.expect_request("/orders").respond_with_handler(orders)
    server.expect_request("/ingest", method="POST").respond_with_json({"ok": True})
    add_connection("shop-api", server.url_for("/"), {"Authorization": "Bearer shop-token-123456"})
    add_connection("crm", server.url_for("/"))
    return served


def posted(server: HTTPServer) -> list[dict[str, Any]]:
    return [r for request, _ in server.log if request.method == "POST" for r in request.get_json()]


@pytest.mark.worker
def test_the_example_flow_runs_api_to_filter_to_post_on_a_worker(
    worker: WorkerProcess, httpserver: HTTPServer
) -> None:
    served = shop_api(httpserver)
    apply_flow_file(json.loads(EXAMPLE.read_text()))
    run = wait_for_run(start_run("api-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    assert served == [str(p) for p in range(1, 32)]  # 30 full pages, then an empty one
    expected = [r for r in SHOP if r["amount"] >= 100]
    assert posted(httpserver) == expected
    nodes = {n.node_key: n for n in run.node_runs.all()}
    assert nodes["orders"].rows_out == 3000 and nodes["big"].rows_out == len(expected)


@pytest.mark.worker
def test_a_retried_source_resumes_after_its_last_saved_page_on_the_engine(
    worker: WorkerProcess, httpserver: HTTPServer
) -> None:
    served = shop_api(httpserver, fail_page=5)
    flow = json.loads(EXAMPLE.read_text())
    source = flow["nodes"][0]
    source["config"].update(max_retries=0, rate_limit_per_s=None)
    source["config"]["pagination"]["size"] = 500  # a batch of 1,000 records: two pages
    source["policy"] = {"max_retries": 1, "retry_backoff_s": 0.05}
    apply_flow_file(flow)
    run = wait_for_run(start_run("api-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    orders = run.node_runs.get(node_key="orders")
    assert orders.attempts == 2 and orders.rows_out == 3000
    # the second attempt replayed pages 1-4 (two saved batches) and read on from page 5
    assert served == ["1", "2", "3", "4", "5:503", "5", "6", "7"]
    assert posted(httpserver) == [r for r in SHOP if r["amount"] >= 100]
