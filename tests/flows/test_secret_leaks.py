"""Connection secrets never leak, even through a peer that echoes what it was sent.

Peers on loopback answer with the request headers (``Authorization`` included) in a 4xx body,
or in a 5xx body until every retry is spent. The flows run on a real worker; afterwards no
8-character slice of any secret may appear anywhere the platform writes text: the API, the
admin run pages, the worker log, every text column of the platform database, and every key
and value (message bodies decoded) of the Redis databases used as broker and result backend.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from psycopg import sql
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from tests.api.conftest import make_user, token_client
from tests.conftest import WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = pytest.mark.worker

#: Where an ``Authorization`` echo starts in the 4xx answer: the 200-character cut of an
#: error quote falls inside the token.
ECHO_AT = 180


def _headers(request: Request) -> str:
    """The request headers, ``Authorization`` first (an error quotes only the start)."""
    ordered = sorted(request.headers.items(), key=lambda item: item[0] != "Authorization")
    return "\n".join(f"{name}: {value}" for name, value in ordered)


def echo_after_padding(request: Request) -> Response:
    """A 401 that repeats the Authorization header so that it straddles character 200."""
    body = "." * ECHO_AT + request.headers.get("Authorization", "") + "\n" + _headers(request)
    return Response(body, status=401)


def echo_headers(status: int) -> Any:
    return lambda request: Response(f"you sent:\n{_headers(request)}", status=status)


class Secrets:
    """The secrets of the test's connections, and every 8-character slice of each."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(36)
        self.user = "etl-reader"
        self.password = secrets.token_urlsafe(18) + "/+:@%"
        self.basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def slices(self) -> set[str]:
        return {
            secret[i : i + 8]
            for secret in (self.token, self.password, self.basic)
            for i in range(len(secret) - 7)
        }

    def leaks(self, text: str) -> list[str]:
        return [piece for piece in sorted(self.slices()) if piece in text]


@pytest.fixture
def secret() -> Secrets:
    return Secrets()


@pytest.fixture
def echo_peer(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/bearer/ingest").respond_with_handler(echo_after_padding)
    httpserver.expect_request("/basic/ingest").respond_with_handler(echo_headers(403))
    httpserver.expect_request("/flaky/ingest").respond_with_handler(echo_headers(503))
    return httpserver


def flow(
    slug: str, connection: str, path: str, retries: int = 0, partitioned: bool = False
) -> dict[str, Any]:
    """``orders -> push`` (and a sibling ``paid``); ``partitioned``: no sibling, and the
    source's output is cut into partitions, each pushed by a partition task."""
    push: dict[str, Any] = {
        "key": "push",
        "type": "http_post",
        "config": {
            "connection": connection,
            "url": path,
            "max_retries": 1,
            "retry_backoff_s": 0.01,
            "retry_backoff_max_s": 0.05,
        },
    }
    if retries:
        push["policy"] = {
            "max_retries": retries,
            "retry_backoff_s": 0.1,
            "retry_backoff_max_s": 0.2,
        }
    source = {
        "key": "orders",
        "type": "sql_query",
        "config": {"connection": "warehouse", "query": "select 1 as id, 'paid' as status"},
    }
    # A sibling makes the canvas a group, whose task results (failures included) are stored
    # in the result backend.
    sibling = {
        "key": "paid",
        "type": "filter",
        "config": {"conditions": [{"field": "status", "op": "eq", "value": "paid"}]},
    }
    if partitioned:
        source["config"]["partition_rows"] = 1
        return {
            "slug": slug,
            "name": slug,
            "nodes": [source, push],
            "edges": [{"from": "orders", "to": "push"}],
        }
    return {
        "slug": slug,
        "name": slug,
        "nodes": [source, push, sibling],
        "edges": [{"from": "orders", "to": "push"}, {"from": "orders", "to": "paid"}],
    }


def platform_texts() -> Iterator[tuple[str, str]]:
    """Every text-like column of every table of the platform database, as (where, text)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'public'"
            " and data_type in ('text', 'character varying', 'character', 'json', 'jsonb')"
        )
        columns = cursor.fetchall()
        for table, column in columns:
            query = sql.SQL("select {}::text from {} where {} is not null").format(
                sql.Identifier(column), sql.Identifier(table), sql.Identifier(column)
            )
            cursor.execute(query.as_string(cursor.connection))
            yield f"{table}.{column}", "\n".join(row[0] for row in cursor.fetchall())


def _decoded(value: bytes) -> list[str]:
    """A Redis value as text, and the body of a Celery message inside it, decoded."""
    text = value.decode("utf-8", "replace")
    found = [text]
    try:
        message = json.loads(text)
    except ValueError:
        return found
    if isinstance(message, dict) and isinstance(message.get("body"), str):
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode("utf-8", "replace")
        found.append(body)
    return found


def redis_texts() -> Iterator[tuple[str, str]]:
    """Every key and value of the broker's and the result backend's Redis databases."""
    urls = {settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND}
    for url in sorted(u for u in urls if u and u.startswith("redis")):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            values: list[bytes] = []
            if kind == "string":
                values = [client.get(key) or b""]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind == "hash":
                values = [b"%s=%s" % pair for pair in client.hgetall(key).items()]
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = client.zrange(key, 0, -1)
            for value in [key, *values]:
                for text in _decoded(value):
                    yield f"redis {url} {key.decode(errors='replace')}", text


def test_a_peer_echoing_credentials_leaks_them_nowhere(
    worker: WorkerProcess, echo_peer: HTTPServer, secret: Secrets, admin_client: Client
) -> None:
    base = echo_peer.url_for("/")
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("crm-bearer", base, {"Authorization": f"Bearer {secret.token}"})
    netloc = f"{quote(secret.user)}:{quote(secret.password, safe='')}@"
    add_connection("crm-basic", base.replace("://", f"://{netloc}"))
    flows = [
        flow("echo-bearer", "crm-bearer", "bearer/ingest"),
        flow("echo-basic", "crm-basic", "basic/ingest"),
        flow("echo-retried", "crm-bearer", "flaky/ingest", retries=1),
        flow("echo-partitioned", "crm-basic", "basic/ingest", partitioned=True),
    ]
    for definition in flows:
        apply_flow_file(definition)
    started = [start_run(definition["slug"]) for definition in flows]
    runs = [wait_for_run(run, timeout=90) for run in started]

    assert [run.status for run in runs] == ["failed"] * len(flows), [run.error for run in runs]

    texts: list[tuple[str, str]] = []
    api = token_client(make_user("auditor", superuser=True))
    texts.append(("api runs", api.get("/api/v1/runs/").content.decode()))
    for run in runs:
        texts.append((f"api run {run.pk}", api.get(f"/api/v1/runs/{run.pk}/").content.decode()))
        page = admin_client.get(reverse("admin:flows_flowrun_change", args=[run.pk]))
        assert page.status_code == 200
        texts.append((f"admin run {run.pk}", page.content.decode()))
    texts.append(("worker log", worker.log()))
    texts += platform_texts()
    texts += redis_texts()
    # The search reached the failures stored in the result backend.
    assert any("celery-task-meta" in where and "NodeFailed" in text for where, text in texts)

    leaks = {where: found for where, text in texts if (found := secret.leaks(text))}
    assert leaks == {}, "leaked into: " + ", ".join(sorted(leaks))

    pushes = {run.flow.slug: run.node_runs.get(node_key="push") for run in runs}
    # The errors still say what the peer answered, with the secrets masked.
    assert pushes["echo-bearer"].error.startswith("HTTP 401: ....")
    assert pushes["echo-basic"].error.startswith("HTTP 403: you sent:")
    assert "Authorization: Basic ***" in pushes["echo-basic"].error
    assert "last: HTTP 503: you sent:" in pushes["echo-retried"].error
    assert pushes["echo-retried"].attempts == 2  # the engine retried it once
    assert pushes["echo-partitioned"].error.startswith("partition 0: HTTP 403: you sent:")
