"""CSV files into PostgreSQL through the engine (``file_read`` -> ``sql_write``, one partition
per file on a real worker): the values arrive exactly, whether a file's cells are written as
``str()`` writes them (sent as read) or in other forms the casts take (converted)."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from flows.engine.handoff import read_output
from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from nodes.sdk.batches import as_records
from tests.conftest import WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, add_connection

COLUMNS = {"id": "integer", "name": "string", "amount": "decimal", "at": "datetime"}


@pytest.fixture
def inbox() -> Iterator[Path]:
    path = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / f"load-{uuid.uuid4().hex[:10]}"
    path.mkdir(parents=True)
    add_connection("load-inbox", f"file://{path}")
    add_connection("load-target", SOURCE_DB_URL)
    yield path


@pytest.fixture
def target() -> Iterator[str]:
    name = f"file_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "create table {} (id bigint primary key, name text, amount numeric(20, 6),"
                " at timestamptz)"
            ).format(sql.Identifier(name))
        )
    yield name
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))


def put(path: Path, lines: list[str]) -> None:
    path.write_bytes(gzip.compress(("id,name,amount,at\n" + "\n".join(lines) + "\n").encode()))


def flow(table: str) -> dict[str, Any]:
    return {
        "slug": "files-into-postgresql",
        "name": "Files into PostgreSQL",
        "nodes": [
            {
                "key": "files",
                "type": "file_read",
                "config": {"connection": "load-inbox", "path": "*.csv.gz", "columns": COLUMNS},
            },
            {
                "key": "load",
                "type": "sql_write",
                "config": {"connection": "load-target", "table": table},
            },
        ],
        "edges": [{"from": "files", "to": "load"}],
    }


@pytest.mark.worker
def test_csv_files_load_exactly_as_read_or_converted(
    worker: WorkerProcess, inbox: Path, target: str
) -> None:
    # a.csv.gz: every cast cell in the form str() writes (sent as read, "T" aside);
    # b.csv.gz: "Z", a leading zero, an exponent, an empty cell (converted from the values).
    put(
        inbox / "a.csv.gz",
        [
            f'{i},"Name {i}, ✓",{i}.{i:06d},2026-01-01T10:00:{i % 60:02d}+05:30'
            for i in range(1, 3001)
        ],
    )
    put(
        inbox / "b.csv.gz",
        ["04001,tab\there,1E+2,2026-01-01T10:00:00Z", "4002,,,2026-01-01 10:00:00.5-00:00"],
    )
    apply_flow_file(flow(target))
    run = wait_for_run(start_run("files-into-postgresql"), timeout=120)
    assert run.status == "succeeded", run.error
    with psycopg.connect(SOURCE_DB_URL) as conn:
        stored = conn.execute(
            sql.SQL("select id, name, amount, at from {} order by id").format(
                sql.Identifier(target)
            )
        ).fetchall()
    plus = timezone(timedelta(hours=5, minutes=30))
    assert len(stored) == 3002
    assert stored[6] == (
        7,
        "Name 7, ✓",
        Decimal("7.000007"),
        datetime(2026, 1, 1, 10, 0, 7, tzinfo=plus),
    )
    assert stored[-2:] == [
        (4001, "tab\there", Decimal("100"), datetime(2026, 1, 1, 10, tzinfo=UTC)),
        (4002, "", None, datetime(2026, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)),
    ]
    # The source's output, as stored, holds the cast values.
    source = run.node_runs.get(node_key="files")
    records = sorted(
        (r for batch in read_output(source.output_ref) for r in as_records(batch)),
        key=lambda r: r["id"],
    )
    assert records[6] == {
        "id": 7,
        "name": "Name 7, ✓",
        "amount": Decimal("7.000007"),
        "at": datetime(2026, 1, 1, 10, 0, 7, tzinfo=plus),
    }


@pytest.mark.worker
def test_a_bad_cell_fails_the_run_naming_file_line_and_column(
    worker: WorkerProcess, inbox: Path, target: str
) -> None:
    put(
        inbox / "a.csv.gz",
        ["1,x,1.50,2026-01-01T10:00:00+00:00", "2,y,1.5O,2026-01-01T10:00:00+00:00"],
    )
    apply_flow_file(flow(target))
    run = wait_for_run(start_run("files-into-postgresql"), timeout=120)
    assert run.status == "failed"
    assert "a.csv.gz line 3, column amount: cannot cast '1.5O' to decimal" in run.error
