"""The node SDK's preview hook: who may be previewed, and what sinks show instead of acting."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from nodes.builtin.http_post import HttpPostNode
from nodes.builtin.sql_backends import limited_query, sqlite_rows
from nodes.sdk import ConnectionInfo, ExecutionContext, Node
from nodes.sdk.node import AnyBatch, RecordStream


class Source(Node):
    type = "t_source"
    category = "source"
    inputs = ()

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        yield [{"n": 1}]


class Sink(Node):
    type = "t_sink"
    category = "destination"


class QuietSink(Sink):
    """A destination that only summarises: it says it has no side effects."""

    type = "t_quiet"
    side_effects = False


class Writer(Node):
    type = "t_writer"
    side_effects = True

    def preview(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        for batch in inputs["in"]:
            yield [{"would_write": record} for record in batch]


def test_which_nodes_a_preview_may_run() -> None:
    assert Source.can_preview() and not Source.has_side_effects()
    assert Sink.has_side_effects() and not Sink.can_preview()
    assert QuietSink.can_preview() and not QuietSink.has_side_effects()
    assert Writer.has_side_effects() and Writer.can_preview()
    with pytest.raises(NotImplementedError, match="t_sink"):
        Sink({}).preview(ExecutionContext(sample_limit=5), {})
    out = Writer({}).run_preview(ExecutionContext(sample_limit=5), {"in": iter([[{"a": 1}]])})
    assert list(out) == [[{"would_write": {"a": 1}}]]


def test_time_left_follows_the_deadline() -> None:
    assert ExecutionContext().time_left(300) == 300
    assert not ExecutionContext().previewing and ExecutionContext(sample_limit=1).previewing
    soon = ExecutionContext(deadline=time.monotonic() + 2)
    assert 1 < soon.time_left(300) <= 2
    assert soon.time_left(0.5) == 0.5
    assert ExecutionContext(deadline=time.monotonic() - 5).time_left(300) == 0.01


def test_http_post_shows_the_requests_it_would_send_with_secrets_hidden() -> None:
    secret = "tok-9f8e7d6c5b4a"
    connection = ConnectionInfo(
        "crm",
        "https://svc:pa55word-xyz@crm.example.test/api",
        {"Authorization": f"Bearer {secret}", "X-Api-Key": secret},
    )
    node = HttpPostNode(
        {"connection": "crm", "url": "/ingest", "batch_size": 2, "headers": {"X-Tenant": "acme"}}
    )
    context = ExecutionContext(
        run_id="preview", sample_limit=10, connection_lookup=lambda name: connection
    )
    records = [{"id": i} for i in range(3)]
    out = [r for batch in node.run_preview(context, {"in": iter([records])}) for r in batch]
    assert [r["body"] for r in out] == [[{"id": 0}, {"id": 1}], [{"id": 2}]]
    first = out[0]
    assert first["url"] == "https://crm.example.test/api/ingest"
    assert first["headers"]["Authorization"] == "***"
    assert first["headers"]["X-Api-Key"] == "***"
    assert first["headers"]["X-Tenant"] == "acme"
    assert len(first["headers"]["Idempotency-Key"]) == 32
    assert secret not in repr(out) and "pa55word" not in repr(out)


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_limited_query_stops_sqlite_at_the_limit(tmp_path: Path, limit: int, settings: Any) -> None:
    path = tmp_path / "n.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table t (id int, note text)")
        conn.executemany("insert into t values (?, ?)", [(i, "50%") for i in range(10)])
    settings.FLOWPLATFORM_SQLITE_DIRS = [str(tmp_path)]
    for query, params in (
        ("select id from t where note like '%' order by id", None),
        ("select id from t where id >= %(low)s and note like '%%' order by id", {"low": 2}),
    ):
        sql, values = limited_query(query, params, limit)
        assert values["flowplatform_limit"] == limit
        rows = sqlite_rows(
            f"sqlite:///{path}",
            sql,
            values,
            batch_size=100,
            timeout_s=5,
            is_cancelled=lambda: False,
        )
        ids = [r["id"] for batch in rows for r in batch]
        start = (params or {}).get("low", 0)
        assert ids == list(range(start, start + limit))
