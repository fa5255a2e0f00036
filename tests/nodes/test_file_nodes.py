"""``file_read`` and ``file_write`` on local directories: formats, casts, errors that name the
file, line and column, the roots policy, atomic and re-run safe writes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from pydantic import ValidationError

from nodes.builtin.file_read import FileReadNode
from nodes.builtin.file_write import FileWriteNode
from nodes.builtin.path_template import RUN_NAMES, PathTemplate
from nodes.filestore import glob_regex
from nodes.models import Connection
from nodes.sdk import ConnectionInfo, ExecutionContext, FieldType, NodeError, RecordSchema
from nodes.urls import ConnectionURLError, validate_url

TYPES = {"id": "integer", "amount": "decimal", "at": "datetime", "day": "date", "ok": "boolean"}
INTERVAL = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def root() -> Iterator[Path]:
    """A fresh directory inside FLOWPLATFORM_FILE_ROOTS (the test settings' file root)."""
    path = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / uuid.uuid4().hex[:10]
    path.mkdir(parents=True)
    yield path


def context(root: Path, **values: Any) -> ExecutionContext:
    url = f"file://{root}"
    return ExecutionContext(
        connection_lookup=lambda name: ConnectionInfo(name, url),
        interval_start=INTERVAL,
        interval_end=INTERVAL + timedelta(days=1),
        **values,
    )


def read(root: Path, **config: Any) -> list[dict[str, Any]]:
    node = FileReadNode({"connection": "files", **config})
    return [record for batch in node.execute(context(root), {}) for record in batch]


def write(root: Path, records: list[dict[str, Any]], **config: Any) -> list[dict[str, Any]]:
    node = FileWriteNode({"connection": "files", **config})
    batches = [records[i : i + 7] for i in range(0, len(records), 7)]
    out = node.execute(context(root, flow="exports-flow"), {"in": iter(batches)})
    return [record for batch in out for record in batch]


def put(path: Path, text: str, compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())


def error_of(call: Any) -> str:
    with pytest.raises(NodeError) as caught:
        call()
    assert caught.value.permanent
    return str(caught.value)


# --- reading --------------------------------------------------------------------------------
def test_csv_gz_files_are_read_in_name_order_with_declared_types_and_file_names(
    root: Path,
) -> None:
    put(root / "inbox/2026-03-01/orders-2.csv.gz", "id,amount,at,day,ok,note\n3,,,,,x\n", True)
    put(
        root / "inbox/2026-03-01/orders-1.csv.gz",
        'id,amount,at,day,ok,note\n1,12.50,2026-03-01T10:00:00+01:00,2026-03-01,yes,"a, ""b"""\n'
        "2,-0.001,2026-03-01T11:00:00Z,2026-03-02,0,\n",
        True,
    )
    put(root / "inbox/2026-03-01/orders-3.json", "[]")  # not matched by the glob
    records = read(
        root, path="inbox/{interval_start:%Y-%m-%d}/orders-*.csv.gz", columns=TYPES,
        with_file_name=True,
    )  # fmt: skip
    assert records == [
        {"id": 1, "amount": Decimal("12.50"), "at": datetime(2026, 3, 1, 9, tzinfo=UTC),
         "day": date(2026, 3, 1), "ok": True, "_file": "inbox/2026-03-01/orders-1.csv.gz"},
        {"id": 2, "amount": Decimal("-0.001"), "at": datetime(2026, 3, 1, 11, tzinfo=UTC),
         "day": date(2026, 3, 2), "ok": False, "_file": "inbox/2026-03-01/orders-1.csv.gz"},
        {"id": 3, "amount": None, "at": None, "day": None, "ok": None,
         "_file": "inbox/2026-03-01/orders-2.csv.gz"},
    ]  # fmt: skip
    assert str(records[0]["amount"]) == "12.50"  # the digits as written


def test_csv_without_columns_gives_every_column_as_text(root: Path) -> None:
    put(root / "a.csv", "a;b\n'x;y';2\n")
    assert read(root, path="a.csv", delimiter=";", quotechar="'") == [{"a": "x;y", "b": "2"}]


def test_csv_without_header_takes_the_declared_names_in_file_order(root: Path) -> None:
    put(root / "a.tsv", "1\tZoë\n")
    records = read(
        root, path="*.tsv", header=False, delimiter="\t", columns={"id": "integer", "n": "string"}
    )
    assert records == [{"id": 1, "n": "Zoë"}]


def test_latin1_csv_is_decoded_with_its_encoding(root: Path) -> None:
    (root / "a.csv").write_bytes("name\nCafé\n".encode("latin-1"))
    assert read(root, path="a.csv", encoding="latin-1") == [{"name": "Café"}]
    assert "not valid utf-8 text" in error_of(lambda: read(root, path="a.csv"))


def test_a_bad_cell_names_the_file_line_and_column(root: Path) -> None:
    lines = ["id,amount,at,day,ok"] + [f"{i},{i}.5,,," for i in range(1, 2500)]
    lines[1234] = "1234,12.3O,,,"  # a letter O for a zero
    put(root / "in/orders.csv.gz", "\n".join(lines) + "\n", compress=True)
    message = error_of(lambda: read(root, path="in/*.csv.gz", columns=TYPES, batch_size=500))
    assert message == (
        "in/orders.csv.gz line 1235, column amount: cannot cast '12.3O' to decimal: not a number"
    )


def test_a_bad_integer_in_a_later_batch_names_its_line(root: Path) -> None:
    put(root / "n.csv", "id\n" + "".join(f"{i}\n" for i in range(1, 100)) + "4.5\n")
    message = error_of(lambda: read(root, path="n.csv", columns={"id": "integer"}, batch_size=7))
    assert message == "n.csv line 101, column id: cannot cast '4.5' to int: not a whole number"


def test_a_short_row_and_a_missing_header_column_are_named(root: Path) -> None:
    put(root / "short.csv", "id,amount\n1,2\n3\n")
    assert error_of(lambda: read(root, path="short.csv")) == (
        "short.csv line 3: expected 2 fields, found 1"
    )
    assert error_of(lambda: read(root, path="short.csv", columns={"total": "decimal"})) == (
        "short.csv line 1, column total: the header has no column 'total'"
    )


def test_no_matching_file_fails_unless_allowed(root: Path) -> None:
    assert error_of(lambda: read(root, path="inbox/*.csv")) == "no file matches 'inbox/*.csv'"
    assert read(root, path="inbox/*.csv", allow_empty=True) == []


def test_jsonl_and_json_arrays_are_read_item_by_item(root: Path) -> None:
    put(root / "a.jsonl", '{"id": 1, "v": "1.10"}\n\n{"id": 2, "v": null}\n')
    assert read(
        root, path="a.jsonl", format="jsonl", columns={"id": "integer", "v": "decimal"}
    ) == [
        {"id": 1, "v": Decimal("1.10")},
        {"id": 2, "v": None},
    ]
    put(root / "bad.jsonl", '{"id": 1}\n{"id": \n')
    assert error_of(lambda: read(root, path="bad.jsonl", format="jsonl")) == (
        "bad.jsonl line 2: not valid JSON"
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_large_json_array_streams_across_chunk_boundaries(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    items = [
        {"id": i, "n": rng.randint(-(10**12), 10**12), "s": "é" * rng.randint(0, 300),
         "nested": {"x": [rng.random(), None, True]}}
        for i in range(3000)
    ]  # fmt: skip
    text = json.dumps(items, indent=rng.choice([None, 1]), ensure_ascii=rng.random() < 0.5)
    put(root / "big.json.gz", text, compress=True)
    assert read(root, path="big.json.gz", format="json", batch_size=999) == items


def test_a_json_file_that_is_not_an_array_is_refused(root: Path) -> None:
    put(root / "o.json", '{"id": 1}')
    assert error_of(lambda: read(root, path="o.json", format="json")) == (
        "o.json item 1: expected a JSON array"
    )
    put(root / "t.json", '[{"id": 1}, {"id": 2} 3]')
    assert "expected ',' or ']'" in error_of(lambda: read(root, path="t.json", format="json"))


def test_read_schema_is_the_declared_columns() -> None:
    node = FileReadNode(
        {"connection": "c", "path": "*.csv", "columns": {"id": "integer"}, "with_file_name": True}
    )
    assert node.output_schema({}) == RecordSchema(
        {"id": FieldType.INTEGER, "_file": FieldType.STRING}
    )
    assert not FileReadNode({"connection": "c", "path": "*.csv"}).output_schema({}).known


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"path": "../etc/*.csv"}, "may not contain '..'"),
        ({"path": "/etc/passwd"}, "must be relative"),
        ({"path": "in/{interval_start.year}/*.csv"}, "unknown name '{interval_start.year}'"),
        ({"path": "in/{env}/*.csv"}, "unknown name '{env}'"),
        ({"path": "in/{run_id!r}.csv"}, "may only carry a format spec"),
        ({"path": "in/{run_id:{run_id}}.csv"}, "may only carry a format spec"),
        ({"path": "in/{.csv"}, "not a valid template"),
        ({"path": "a.csv", "header": False}, "needs columns"),
        ({"path": "a.csv", "encoding": "klingon"}, "unknown encoding"),
        ({"path": "a.csv", "delimiter": ";;"}, "at most 1 character"),
    ],
)
def test_file_read_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FileReadNode({"connection": "files", **config})
    assert message in str(caught.value)


def test_templates_format_only_the_fixed_names() -> None:
    template = PathTemplate.parse("x/{interval_start:%Y/%m/%d}/{run_id}.csv", RUN_NAMES)
    assert template.render({"interval_start": INTERVAL, "run_id": "r1"}) == "x/2026/03/01/r1.csv"
    with pytest.raises(ValueError, match=re.escape("'{interval_start}' has no value in this run")):
        template.render({"run_id": "r1"})
    with pytest.raises(ValueError, match="format '05d' does not fit"):
        PathTemplate.parse("{run_id:05d}", RUN_NAMES).render({"run_id": "abc"})


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("in/*.csv", ["in/a.csv", "in/.csv"], ["in/sub/a.csv", "in/a.csv.gz", "a.csv"]),
        ("in/**/*.csv", ["in/a.csv", "in/x/y/a.csv"], ["out/a.csv"]),
        ("in/2025-??/[ab]-[!c].csv", ["in/2025-01/a-x.csv"], ["in/2025-1/a-x.csv", "in/2025-01/a-c.csv"]),
        ("a+b (1).csv", ["a+b (1).csv"], ["aab (1).csv"]),
    ],
)  # fmt: skip
def test_globs(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = glob_regex(pattern)
    assert all(regex.match(key) for key in matches)
    assert not any(regex.match(key) for key in misses)


# --- the roots policy -----------------------------------------------------------------------
@pytest.mark.django_db
def test_a_directory_outside_the_file_roots_is_refused_when_saved(
    root: Path, tmp_path: Path, settings: Any
) -> None:
    assert validate_url(f"file://{root}") == f"file://{root}"
    for url in (f"file://{tmp_path}", f"file://{root}/../../..", "file:///etc", "file://host/x"):
        with pytest.raises(ConnectionURLError):
            Connection(name="outside").set_url(url)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ConnectionURLError, match="FLOWPLATFORM_FILE_ROOTS"):
        validate_url(f"file://{root}/link")
    settings.FLOWPLATFORM_FILE_ROOTS = [*settings.FLOWPLATFORM_FILE_ROOTS, str(tmp_path)]
    assert validate_url(f"file://{tmp_path}")


def test_a_directory_dropped_from_the_roots_is_refused_when_used(root: Path, settings: Any) -> None:
    put(root / "a.csv", "id\n1\n")
    settings.FLOWPLATFORM_FILE_ROOTS = []
    assert "FLOWPLATFORM_FILE_ROOTS" in error_of(lambda: read(root, path="a.csv"))


def test_a_symlink_leading_out_of_the_roots_is_refused_when_read_or_written(
    root: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    (root / "in").mkdir()
    (root / "in/secret.csv").symlink_to(tmp_path / "secret.csv")
    (root / "out").symlink_to(tmp_path)
    assert error_of(lambda: read(root, path="in/*.csv")) == (
        "'in/secret.csv' leads outside the connection's directory"
    )
    assert "leads outside" in error_of(lambda: write(root, [{"a": 1}], path="out/x.csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]


# --- writing ----------------------------------------------------------------------------------
def orders(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    zones = [UTC, ZoneInfo("Europe/Madrid"), timezone(timedelta(hours=5, minutes=30, seconds=15))]
    zone, scale = rng.choice(zones), rng.choice([2, 4])  # one scale a column, as in SQL
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "id": i,
            "amount": Decimal(rng.randint(-(10**14), 10**14)).scaleb(-scale),
            "at": (start + timedelta(seconds=rng.randint(0, 10**8), microseconds=rng.randint(0, 999_999))).astimezone(zone),
            "day": date(2026, 1, 1) + timedelta(days=rng.randint(0, 500)),
            "name": rng.choice(["Zoë", "東京", 'a "quoted", text', ""]),
            "ok": rng.random() < 0.5,
            "ratio": rng.random(),
        }
        for i in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parquet_round_trips_decimals_and_aware_datetimes_exactly(root: Path, seed: int) -> None:
    records = orders(250, seed)
    files = write(root, records, path="p/part-{part:05d}.{ext}", format="parquet",
                  max_rows_per_file=100, batch_size=30)  # fmt: skip
    assert [(f["path"], f["rows"]) for f in files] == [
        ("p/part-00000.parquet", 100), ("p/part-00001.parquet", 100), ("p/part-00002.parquet", 50)
    ]  # fmt: skip
    assert all(f["bytes"] == (root / f["path"]).stat().st_size for f in files)
    back = read(root, path="p/*.parquet", format="parquet")
    assert back == records
    for got, sent in zip(back, records, strict=True):
        assert str(got["amount"]) == str(sent["amount"])  # same digits, not only equal
        assert got["at"].utcoffset() == sent["at"].utcoffset()
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(root / "p/part-00000.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [30, 30, 30, 10]


def test_parquet_takes_a_declared_type_for_a_column_null_in_a_first_batch(root: Path) -> None:
    records = [{"id": 1, "v": None}, {"id": 2, "v": Decimal("2.5")}]
    message = error_of(
        lambda: write(root, records, path="a.parquet", format="parquet", batch_size=1)
    )
    assert message == (
        "field 'v' is null in every record of the file's first batch: declare its type in columns"
    )
    write(root, records, path="a.parquet", format="parquet", batch_size=1,
          columns={"v": "decimal"})  # fmt: skip
    assert read(root, path="a.parquet", format="parquet") == records


@pytest.mark.parametrize(("fmt", "compression"), [("csv", "gzip"), ("jsonl", "none")])
def test_csv_and_jsonl_files_read_back_as_written(root: Path, fmt: str, compression: str) -> None:
    records = orders(40, 7)
    files = write(root, records, path="out/{flow}/{interval_start:%Y/%m/%d}/x-{part}.{ext}",
                  format=fmt, compression=compression, max_rows_per_file=25)  # fmt: skip
    ext = "csv.gz" if fmt == "csv" else "jsonl"
    assert [f["path"] for f in files] == [
        f"out/exports-flow/2026/03/01/x-0.{ext}", f"out/exports-flow/2026/03/01/x-1.{ext}"
    ]  # fmt: skip
    types = {"id": "integer", "amount": "decimal", "at": "datetime", "day": "date",
             "name": "string", "ok": "boolean", "ratio": "float"}  # fmt: skip
    back = read(root, path=f"out/**/*.{ext}", format=fmt, columns=types)
    assert back == records


def test_csv_writes_nulls_as_empty_cells_and_refuses_records_of_other_fields(root: Path) -> None:
    write(root, [{"a": 1, "b": None}, {"a": None, "b": "x"}], path="a.csv")
    assert (root / "a.csv").read_text() == "a,b\n1,\n,x\n"
    message = error_of(lambda: write(root, [{"a": 1}, {"a": 2, "c": 3}], path="b.csv"))
    assert message == "a record's fields differ from the file's header (c)"
    assert not (root / "b.csv").exists()


def test_a_rerun_overwrites_each_file_whole(root: Path) -> None:
    write(root, orders(30, 1), path="r/part-{part}.{ext}", max_rows_per_file=20)
    first = (root / "r/part-0.csv").read_text()
    write(root, orders(30, 2), path="r/part-{part}.{ext}", max_rows_per_file=20)
    second = (root / "r/part-0.csv").read_text()
    assert second != first
    assert list(csv.reader(io.StringIO(second)))[1][0] == "0"
    assert len(second.splitlines()) == 21
    assert sorted(p.name for p in (root / "r").iterdir()) == ["part-0.csv", "part-1.csv"]


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_temporary(root: Path) -> None:
    write(root, orders(5, 1), path="w/out.csv")
    before = (root / "w/out.csv").read_bytes()

    def failing() -> Iterator[list[dict[str, Any]]]:
        yield orders(5, 2)
        raise NodeError("upstream broke", permanent=True)

    node = FileWriteNode({"connection": "files", "path": "w/out.csv", "batch_size": 2})
    with pytest.raises(NodeError, match="upstream broke"):
        list(node.execute(context(root), {"in": failing()}))
    assert (root / "w/out.csv").read_bytes() == before
    assert [p.name for p in (root / "w").iterdir()] == ["out.csv"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"path": "a-{part}.{ext}", "format": "json"}, "'csv', 'jsonl' or 'parquet'"),
        ({"path": "a.csv", "max_rows_per_file": 10}, "needs {part}"),
        ({"path": "{home}/a.csv"}, "unknown name '{home}'"),
        ({"path": "../a.csv"}, "may not contain '..'"),
    ],
)
def test_file_write_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FileWriteNode({"connection": "files", **config})
    assert message in str(caught.value)


def test_a_path_rendered_outside_the_connection_is_refused(root: Path) -> None:
    node = FileWriteNode({"connection": "files", "path": "{run_id}/a.csv"})
    ctx = context(root, run_id="..")
    message = error_of(lambda: list(node.execute(ctx, {"in": iter([[{"a": 1}]])})))
    assert message == "path: the path may not contain '..'"


@pytest.mark.parametrize(("kind", "text"), [("float", "nan"), ("decimal", "-Infinity")])
def test_csv_refuses_numbers_that_are_not_finite(root: Path, kind: str, text: str) -> None:
    put(root / "n.csv", f"v\n1\n{text}\n")
    message = error_of(lambda: read(root, path="n.csv", columns={"v": kind}))
    assert message.startswith("n.csv line 3, column v: cannot cast")
    assert message.endswith("not a finite number")


def test_csv_dates_and_datetimes_take_every_iso_form_the_casts_take(root: Path) -> None:
    put(
        root / "d.csv",
        "d,t\n2026-03-01T10:00:00,2026-03-01\n 2026-03-02 ,2026-03-01T10:00:00+02:00\n",
    )
    assert read(root, path="d.csv", columns={"d": "date", "t": "datetime"}) == [
        {"d": date(2026, 3, 1), "t": datetime(2026, 3, 1)},
        {"d": date(2026, 3, 2), "t": datetime(2026, 3, 1, 8, tzinfo=UTC)},
    ]


def test_blank_lines_in_a_csv_are_skipped(root: Path) -> None:
    put(root / "b.csv", "a,b\n1,2\n\n3,4\n\n")
    assert read(root, path="b.csv") == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    assert read(root, path="b.csv", columns={"b": "integer"}) == [{"b": 2}, {"b": 4}]


def test_a_run_param_gives_the_interval_as_iso_text(root: Path) -> None:
    put(root / "in/2026-04-05/a.csv", "id\n1\n")
    node = FileReadNode({"connection": "files", "path": "in/{interval_start:%Y-%m-%d}/*.csv"})
    ctx = ExecutionContext(
        connection_lookup=lambda name: ConnectionInfo(name, f"file://{root}"),
        params={"interval_start": "2026-04-05"},
    )
    assert [r for b in node.execute(ctx, {}) for r in b] == [{"id": "1"}]
    ctx.params["interval_start"] = "yesterday"
    assert error_of(lambda: list(node.execute(ctx, {}))) == (
        "path: '{interval_start}': cannot cast 'yesterday' to datetime: not an ISO 8601 date or datetime"
    )


@pytest.mark.django_db
def test_the_example_flow_is_valid(root: Path) -> None:
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection

    for name in ("inbox", "partner-bucket"):  # the example names them; saving checks they exist
        connection = Connection(name=name)
        connection.set_url(root.as_uri())
        connection.save()
    example = Path(settings.BASE_DIR) / "examples" / "files-to-bucket.json"
    flow, created = apply_flow_file(json.loads(example.read_text()))
    assert created
    assert flow.slug == "files-to-bucket"


def test_csv_batches_without_columns_travel_through_the_hand_off_encoding(root: Path) -> None:
    from flows.engine.codec import decode_stream, encode_batch

    put(root / "a.csv", "a,b\nx,1\ny,\n")
    batches = list(
        FileReadNode({"connection": "files", "path": "a.csv"}).execute(context(root), {})
    )
    decoded = list(decode_stream(io.BytesIO(b"".join(map(encode_batch, batches)))))
    assert decoded == [[{"a": "x", "b": "1"}, {"a": "y", "b": ""}]]


@pytest.mark.django_db
def test_a_filter_on_a_field_the_declared_columns_lack_is_refused_when_saved() -> None:
    from flows.flowfile import apply_flow_file
    from flows.validation import FlowValidationError

    flow = {
        "slug": "bad-files", "name": "Bad files",
        "nodes": [
            {"key": "read", "type": "file_read", "config": {
                "connection": "inbox", "path": "*.csv", "columns": {"id": "integer"}}},
            {"key": "keep", "type": "filter", "config": {
                "conditions": [{"field": "status", "op": "eq", "value": "paid"}]}},
            {"key": "write", "type": "file_write", "config": {
                "connection": "out", "path": "x-{part}.{ext}", "max_rows_per_file": 10}},
        ],
        "edges": [{"from": "read", "to": "keep"}, {"from": "keep", "to": "write"}],
    }  # fmt: skip
    with pytest.raises(FlowValidationError) as caught:
        apply_flow_file(flow)
    assert "nodes[1].config.conditions[0].field" in str(caught.value)
    assert "'status' does not exist upstream" in str(caught.value)
    flow["nodes"][0]["config"]["path"] = "{interval_start.__class__}/*.csv"
    flow["nodes"][1]["config"]["conditions"][0]["field"] = "id"
    with pytest.raises(FlowValidationError) as caught:
        apply_flow_file(flow)
    assert "nodes[0].config.path" in str(caught.value)


def traced_peak(call: Any) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("fmt", "name"), [("csv", "o.csv.gz"), ("json", "o.json.gz")])
def test_memory_stays_flat_as_a_file_grows(root: Path, fmt: str, name: str) -> None:
    """Reading six times the rows peaks at about the same memory: one batch at a time."""
    rows = {"id": "integer", "amount": "decimal", "note": "string"}
    peaks = []
    for count in (10_000, 60_000):
        items = [{"id": i, "amount": f"{i / 7:.2f}", "note": "é" * (i % 40)} for i in range(count)]
        if fmt == "csv":
            text = "id,amount,note\n" + "".join(
                f"{r['id']},{r['amount']},{r['note']}\n" for r in items
            )
        else:
            text = json.dumps(items)
        put(root / name, text, compress=True)
        del items, text
        node = FileReadNode({"connection": "files", "path": name, "format": fmt, "columns": rows})
        total = [0]

        def consume(node: FileReadNode = node, total: list[int] = total) -> None:
            for batch in node.execute(context(root), {}):
                total[0] += len(batch)

        peaks.append(traced_peak(consume))
        assert total[0] == count
    assert peaks[1] < peaks[0] + 1_000_000, peaks


def test_a_bad_cell_after_a_record_spanning_lines_is_located_by_record(root: Path) -> None:
    put(root / "m.csv", 'id,note\n1,"two\nlines"\n2,x\nthree,y\n')
    assert error_of(
        lambda: read(root, path="m.csv", columns={"id": "integer", "note": "string"})
    ) == ("m.csv record 3 after line 1, column id: cannot cast 'three' to int: not a number")


def test_a_cancelled_write_commits_no_partial_file(root: Path) -> None:
    cancelled = [False]

    def batches() -> Iterator[list[dict[str, Any]]]:
        yield orders(5, 1)
        cancelled[0] = True
        yield orders(5, 2)

    node = FileWriteNode({"connection": "files", "path": "c/out.csv", "batch_size": 5})
    ctx = context(root, is_cancelled=lambda: cancelled[0])
    assert list(node.execute(ctx, {"in": batches()})) == []
    assert list((root / "c").iterdir()) == []


def test_a_truncated_gzip_file_is_named_and_permanent(root: Path) -> None:
    whole = gzip.compress(b"id\n" + b"".join(b"%d\n" % i for i in range(20_000)))
    (root / "t.csv.gz").write_bytes(whole[: len(whole) // 2])
    message = error_of(lambda: read(root, path="t.csv.gz"))
    assert message.startswith("t.csv.gz: not a valid gzip file")
    (root / "n.csv.gz").write_bytes(b"id\n1\n")  # named .gz, not gzip
    assert error_of(lambda: read(root, path="n.csv.gz")).startswith("n.csv.gz: not a valid gzip")
    assert read(root, path="n.csv.gz", compression="none") == [{"id": "1"}]


def test_files_are_planned_one_slice_each_by_default(root: Path, monkeypatch: Any) -> None:
    for name in ("b.csv", "a.csv", "c.csv"):
        put(root / name, f"id\n{ord(name[0])}\n")
    config = {"connection": "files", "path": "*.csv", "columns": {"id": "integer"}}
    assert FileReadNode.partitions_by_default(config)
    node = FileReadNode(config)
    slices = list(node.plan_slices(context(root), 1) or [])
    assert slices == [{"file": "a.csv"}, {"file": "b.csv"}, {"file": "c.csv"}]
    assert [r for s in slices for b in node.execute_slice(context(root), s) for r in b] == [
        {"id": 97},
        {"id": 98},
        {"id": 99},
    ]
    # partition_rows (a cut by rows) or partition_per_file false: no slices
    for other in ({"partition_rows": 10}, {"partition_per_file": False}):
        assert not FileReadNode.partitions_by_default({**config, **other})
        assert FileReadNode({**config, **other}).plan_slices(context(root), 1) is None
    # more files than partitions allowed: consecutive files grouped, every file once, in order
    monkeypatch.setattr("nodes.builtin.file_read.MAX_FILE_SLICES", 2)
    grouped = list(node.plan_slices(context(root), 1) or [])
    assert grouped == [{"files": ["a.csv", "b.csv"]}, {"files": ["c.csv"]}]
    assert [r["id"] for b in node.execute_slice(context(root), grouped[0]) for r in b] == [97, 98]


# --- the files a run names (a file trigger's) -----------------------------------------------
def run_files(root: Path, **values: Any) -> list[dict[str, Any]]:
    node = FileReadNode({"connection": "files", "path": "in/*.csv", "run_files": True})
    return [r for batch in node.execute(context(root, **values), {}) for r in batch]


def test_run_files_reads_the_file_or_files_the_run_names_and_no_other(root: Path) -> None:
    for name in ("a", "b", "c"):
        put(root / f"in/{name}.csv", f"id\n{name}\n")

    one = run_files(root, params={"file_name": "in/b.csv"})
    two = run_files(root, params={"file_names": ["in/c.csv", "in/a.csv"]})

    assert one == [{"id": "b"}]
    assert two == [{"id": "c"}, {"id": "a"}]


def test_run_files_refuses_a_run_naming_no_file_or_one_outside_path(root: Path) -> None:
    put(root / "in/a.csv", "id\n1\n")
    put(root / "other.csv", "id\n1\n")

    assert "this run names no files" in error_of(lambda: run_files(root))
    assert "'other.csv' does not match path 'in/*.csv'" in error_of(
        lambda: run_files(root, params={"file_name": "other.csv"})
    )
    assert "may not contain '..'" in error_of(
        lambda: run_files(root, params={"file_names": ["in/../other.csv"]})
    )
    preview = FileReadNode({"connection": "files", "path": "in/*.csv", "run_files": True})
    sampled = preview.execute(context(root, sample_limit=5), {})
    assert [r for batch in sampled for r in batch] == [{"id": "1"}]  # a preview reads path
