"""Bookkeeping inside a node's span is not traced (decision 0043): the reset of a database
connection given back to its pool and whatever runs in ``telemetry.untraced()``; what the
node itself sends is. Each case runs in a process of its own (tracing is set up once per
process), against the real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import PG_URL, ROOT

SCRIPT = """
import json, sys
import django
django.setup()
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from flowplatform import telemetry
from nodes.builtin import pg_pool

exporter = InMemorySpanExporter()
telemetry.setup("worker", processor=SimpleSpanProcessor(exporter))
url = sys.argv[1]
with telemetry._tracer.start_as_current_span("node rows"):
    with pg_pool.connection(url, lambda conn: conn.execute("select 'the session set up'")) as conn:
        conn.execute("select 'the node query'")
        with telemetry.untraced():
            conn.execute("select 'a checkpoint'")
        conn.rollback()
    # A connection taken again from the pool: its reset was the previous one's.
    with pg_pool.connection(url, lambda conn: None) as conn:
        conn.rollback()
pg_pool.clear()
telemetry.shutdown()
print(json.dumps([
    {"name": s.name, "statement": s.attributes.get("db.statement", ""),
     "parent": s.parent.span_id if s.parent else None, "id": s.context.span_id}
    for s in exporter.get_finished_spans()
]))
"""


def spans_of_a_node(**env: str) -> list[dict[str, Any]]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    variables.update(env, DJANGO_SETTINGS_MODULE="tests.settings")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"{PG_URL}/postgres"],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_a_nodes_statements_are_spans_and_its_bookkeeping_is_not() -> None:
    spans = spans_of_a_node()
    node = next(s for s in spans if s["name"] == "node rows")
    statements = [s["statement"] for s in spans if s["parent"] == node["id"]]
    assert statements == ["select 'the session set up'", "select 'the node query'"]


def test_with_a_sampler_set_the_bookkeeping_is_traced_as_the_library_does() -> None:
    spans = spans_of_a_node(OTEL_TRACES_SAMPLER="always_on")
    node = next(s for s in spans if s["name"] == "node rows")
    statements = [s["statement"] for s in spans if s["parent"] == node["id"]]
    assert "select 'a checkpoint'" in statements
    assert "DISCARD ALL" in statements
