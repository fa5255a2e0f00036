"""CSV files read by Arrow (``nodes.builtin.csv_arrow``) give what Python's ``csv`` reader gives:
the same batches, values, text columns and errors, on generated files of every option; the
text it sends to ``COPY`` stores what the values store."""

from __future__ import annotations

import csv
import gzip
import io
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from nodes.builtin import csv_arrow
from nodes.builtin.file_formats import FileFormatError, read_csv, read_csv_python
from nodes.builtin.file_read import FileReadNode
from nodes.builtin.sql_write.dialect import dialect_for
from nodes.builtin.sql_write.node import SqlWriteNode
from nodes.builtin.sql_write.postgres import copy_text
from nodes.builtin.sql_write.run import Loader
from nodes.sdk import FieldType
from nodes.sdk.batches import RowBatch, rebatch
from tests.nodes.test_file_nodes import context, put, root  # noqa: F401 - a fixture
from tests.nodes.test_sql_write import (  # noqa: F401 - a fixture
    context_for,
    query,
    rows_of,
    schema,
    write,
)

F = FieldType
#: The CSV options most cases read with: a header, commas, double quotes.
COMMA_HEADED: dict[str, Any] = {"header": True, "delimiter": ",", "quotechar": '"'}


def integer(rng: random.Random) -> str:
    if rng.random() < 0.9:
        return str(rng.randint(-(10**20), 10**20) if rng.random() < 0.2 else rng.randint(-999, 999))
    return rng.choice(["0", "-0", "007", "+5", " 5", "1_000", "1.0", "", "1.5", "x", "1e3"])


def decimal(rng: random.Random) -> str:
    if rng.random() < 0.9:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
    return rng.choice(
        ["1.", ".5", "-0.0", "1e3", "0.0000001", "0.000001", "-0", "00.5", "", "NaN", "abc"]
    )


def moment(rng: random.Random) -> datetime:
    return datetime(1, 1, 1) + timedelta(seconds=rng.randint(0, 315_000_000_000))


def a_datetime(rng: random.Random) -> str:
    if rng.random() < 0.9:
        value = moment(rng).replace(microsecond=rng.choice([0, rng.randint(0, 999_999)]))
        zone = rng.choice([None, UTC, timezone(timedelta(minutes=rng.randint(-1439, 1439)))])
        return value.replace(tzinfo=zone).isoformat(rng.choice("T "))
    return rng.choice(
        [
            "2024-02-30T00:00:00",
            "2024-02-29 23:59:59.000000",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00+05",
            "2026-01-01T10:00:00-00:00",
            "2026-01-01T24:00:00",
            "2026-01-01T10:00:00+24:00",
            "2026-01-01T10:00:60",
            "0000-01-01T00:00:00",
            "2026-01-01",
            "20260101T100000",
            "",
        ]
    )


def a_date(rng: random.Random) -> str:
    if rng.random() < 0.9:
        return moment(rng).date().isoformat()
    return rng.choice(["2023-02-29", "20260101", "0000-01-01", "2026-13-01", " 2026-01-01", ""])


def text(rng: random.Random, odd: bool) -> str:
    alphabet = "abc XYZ é✓" + (",;\"\\\t\n\r'" if odd else "")
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


CELLS = {F.INTEGER: integer, F.DECIMAL: decimal, F.DATETIME: a_datetime, F.DATE: a_date}


def a_file(rng: random.Random) -> tuple[bytes, dict[str, Any]]:
    """A CSV file and the options to read it with: mostly plain (the fast path), now and then
    with quotes, blank lines, a wrong row width, ``\\r\\n``, a byte order mark, bad cells."""
    kinds = [rng.choice([F.STRING, F.INTEGER, F.DECIMAL, F.DATETIME, F.DATE]) for _ in range(5)]
    width = rng.randint(1, 5)
    kinds = kinds[:width]
    head = [f"col{i}" for i in range(width)]
    odd = rng.random() < 0.2
    clean = rng.random() < 0.5  # every cell in the form str() writes
    rows = []
    for _ in range(rng.randint(0, 300)):
        row = []
        for kind in kinds:
            if kind is F.STRING:
                row.append(text(rng, odd))
            else:
                cell = CELLS[kind](rng)
                while clean and not _usual(cell, kind):
                    cell = CELLS[kind](rng)
                row.append(cell)
        rows.append(row)
    delimiter = rng.choice([",", ",", ";", "\t", "|"])
    header = rng.random() < 0.8
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=rng.choice(["\n", "\r\n"]))
    if header:
        writer.writerow(head)
    writer.writerows(rows)
    content = buffer.getvalue()
    if rng.random() < 0.1 and content.count("\n") > 3:  # a row one field wider, or a blank line
        lines = content.split("\n")
        at = rng.randrange(1, len(lines) - 1)
        lines[at] = rng.choice([lines[at] + delimiter + "1", ""])
        content = "\n".join(lines)
    data = content.encode()
    if rng.random() < 0.03:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.03 and len(data) > 10:
        at = rng.randrange(len(data))
        data = data[:at] + b"\xff" + data[at:]
    if rng.random() < 0.3:
        data = data.rstrip(b"\n")  # no line end at the end
    columns: dict[str, FieldType] | None = dict(zip(head, kinds, strict=True))
    if header and rng.random() < 0.4:
        picked = rng.sample(head, rng.randint(1, width))  # some, in another order
        columns = {name: F(kinds[head.index(name)]) for name in picked}
    elif header and rng.random() < 0.2:
        columns = None
    options = {
        "columns": columns,
        "header": header,
        "delimiter": delimiter,
        "quotechar": '"',
        "batch_size": rng.choice([1, 3, 7, 50, 1000]),
    }
    return data, options


def _usual(cell: str, kind: FieldType) -> bool:
    if not cell:
        return True
    try:
        value = {
            F.INTEGER: int,
            F.DECIMAL: Decimal,
            F.DATETIME: datetime.fromisoformat,
            F.DATE: date.fromisoformat,
        }[kind](cell)
    except (ValueError, ArithmeticError):
        return False
    return str(value) == cell.replace("T", " ") and (kind is not F.DECIMAL or value.is_finite())


def outcome(batches_of: Any) -> Any:
    """Every batch's names, rows and text columns (by repr: types and digits), or the error."""
    try:
        batches = list(batches_of())
    except FileFormatError as exc:
        # (a line "near" a byte that is not UTF-8: Python's decoder runs a chunk ahead)
        where = "near" if exc.where.startswith("near") else exc.where
        return ("error", str(exc), where, exc.column)
    return [(b.names, repr(b.rows), repr(b.text_columns)) for b in batches]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_arrow_reads_what_python_reads(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated files, each read by both readers in blocks of a few hundred bytes (so a file
    switches to Python part way through): the same batches, values and errors."""
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", 256)
    rng = random.Random(seed)
    lazy = python_only = errors = 0
    for _ in range(120):
        data, options = a_file(rng)
        arrow_batches: list[RowBatch] = []

        def by_arrow(
            data: bytes = data,
            options: dict[str, Any] = options,
            seen: list[RowBatch] = arrow_batches,
        ) -> Any:
            for batch in csv_arrow.read_csv(io.BytesIO(data), **options):
                seen.append(batch)
                yield batch

        def by_python(data: bytes = data, options: dict[str, Any] = options) -> Any:
            return read_csv_python(io.BytesIO(data), encoding="utf-8", **options)

        expected = outcome(by_python)
        got = outcome(by_arrow)
        if "utf-8" in str(expected[:2]) + str(got[:2]):
            # A file with a byte that is not UTF-8 fails either way; when it has a bad cell
            # too, which is reported depends on how far ahead Python's decoder ran.
            assert expected[0] == got[0] == "error", (data[:300], options)
        else:
            assert got == expected, (data[:300], options)
        if expected and expected[0] == "error":
            errors += 1
        for batch in arrow_batches:
            if batch.source is None:
                python_only += 1
                continue
            lazy += 1
            width = len(batch.names)
            text = batch.source.copy_text(range(width))
            if text is not None:
                assert text.decode() == copy_text(batch.rows, width)
    assert lazy > 100 and python_only > 10 and errors > 3, (lazy, python_only, errors)


def test_the_usual_file_takes_the_fast_path_and_builds_rows_when_asked() -> None:
    content = "id,name,amount,at\n" + "".join(
        f"{i},n{i},{i}.50,2026-01-01T10:00:00+01:00\n" for i in range(25)
    )
    options: dict[str, Any] = {
        "columns": {"id": F.INTEGER, "name": F.STRING, "amount": F.DECIMAL, "at": F.DATETIME},
        **COMMA_HEADED,
        "encoding": "utf-8",
        "batch_size": 10,
    }
    batches = list(read_csv(io.BytesIO(content.encode()), **options))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert all(b.source is not None and b._rows is None for b in batches)
    (joined,) = rebatch(batches, 30)  # slices and joins keep the source
    assert joined.source is not None and joined._rows is None and len(joined) == 25
    assert joined[3:5].source is not None
    assert joined.rows[1] == (
        1,
        "n1",
        Decimal("1.50"),
        datetime(2026, 1, 1, 10, tzinfo=timezone(timedelta(hours=1))),
    )
    python = list(read_csv_python(io.BytesIO(content.encode()), **options))
    assert joined == [record for batch in python for record in batch]
    assert joined.rows == [row for batch in python for row in batch.rows]


@pytest.mark.parametrize(
    ("options", "prefix"),
    [
        ({"encoding": "latin-1"}, b""),  # another encoding
        ({"quotechar": "'"}, b""),  # fine: a quote character that is not in the file
        ({}, b"\xef\xbb\xbf"),  # a byte order mark: Python keeps it in the first name
        ({"columns": {"id": F.INTEGER, "ratio": F.FLOAT}}, b""),  # floats: cast by Python
    ],
)
def test_options_arrow_cannot_match_are_read_by_python(
    options: dict[str, Any], prefix: bytes
) -> None:
    data = prefix + b"id,ratio\n1,0.5\n2,1e3\n"
    settings: dict[str, Any] = {
        "columns": {"id": F.INTEGER, "ratio": F.STRING},
        **COMMA_HEADED,
        "encoding": "utf-8",
        "batch_size": 10,
        **options,
    }
    if prefix:
        with pytest.raises(FileFormatError, match="the header has no column 'id'"):
            list(read_csv(io.BytesIO(data), **settings))
        return
    batches = list(read_csv(io.BytesIO(data), **settings))
    arrow = options == {"quotechar": "'"}
    assert [b.source is not None for b in batches] == [arrow]
    assert batches == list(read_csv_python(io.BytesIO(data), **settings))


def test_a_quoted_field_later_in_the_file_switches_to_python_at_its_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", 64)
    content = "id,note\n" + "".join(f"{i},n{i}\n" for i in range(40)) + '40,"a, ""b""\nc"\n41,x\n'
    options: dict[str, Any] = {
        "columns": {"id": F.INTEGER, "note": F.STRING},
        **COMMA_HEADED,
        "batch_size": 4,
    }
    batches = list(csv_arrow.read_csv(io.BytesIO(content.encode()), **options))
    assert batches[0].source is not None and batches[-1].source is None
    assert batches == list(
        read_csv_python(io.BytesIO(content.encode()), encoding="utf-8", **options)
    )
    assert batches[-1].rows[-2:] == [(40, 'a, "b"\nc'), (41, "x")]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("12x", "line 2502, column amount: cannot cast '12x' to decimal: not a number"),
        ("2", "line 2502: expected 2 fields, found 3"),
    ],
)
def test_a_bad_cell_deep_in_a_file_names_its_line_and_column(
    root: Path,  # noqa: F811
    cell: str,
    message: str,
) -> None:
    lines = [f"{i},{i}.25" for i in range(3000)]
    lines[2500] = f"2500,{cell}" + (",3" if cell == "2" else "")
    put(root / "bad.csv.gz", "id,amount\n" + "\n".join(lines) + "\n", compress=True)
    node = FileReadNode(
        {
            "connection": "files",
            "path": "bad.csv.gz",
            "columns": {"id": "integer", "amount": "decimal"},
        }
    )
    seen = 0
    with pytest.raises(Exception, match=message.replace("(", r"\(")) as failure:
        for batch in node.execute(context(root), {}):
            seen += len(batch)
    assert str(failure.value) == f"bad.csv.gz {message}"
    assert seen == 2000  # the batches before the one that holds it


def test_invalid_utf8_fails_as_python_reports_it() -> None:
    data = b"id,name\n1,a\n2,\xff\n"
    options: dict[str, Any] = {
        "columns": None,
        **COMMA_HEADED,
        "batch_size": 10,
    }
    with pytest.raises(FileFormatError, match="not valid utf-8 text") as failure:
        list(csv_arrow.read_csv(io.BytesIO(data), **options))
    assert failure.value.where == "near line 3"  # the line of the byte


def test_sql_write_stores_from_arrow_text_what_it_stores_from_values(
    schema: str,  # noqa: F811
    root: Path,  # noqa: F811
) -> None:
    """Nulls, strings COPY escapes, datetimes with "T", file names: the text from Arrow (or the
    fallback when a value needs escapes) stores what the built values store."""
    query(
        sql.SQL(
            "create table {}.{} (id bigint, note text, amount numeric, at timestamptz,"
            " at_text text, day date, _file text)"
        ).format(sql.Identifier(schema), sql.Identifier("t"))
    )
    query(sql.SQL("create table {0}.u (like {0}.t)").format(sql.Identifier(schema)))
    rows = []
    for i in range(60):
        note = ["plain", "back\\slash", "tab\there", ""][i % 4] if i >= 30 else f"n{i}"
        rows.append(
            f"{i},{note},{'' if i % 7 == 0 else f'{i}.5'},2026-01-01T10:00:0{i % 10}+02:00,"
            f"2026-01-01T10:00:00,{'' if i % 5 == 0 else '2026-03-01'}"
        )
    put(
        root / "in.csv.gz",
        "id,note,amount,at,at_text,day\n" + "\n".join(rows) + "\n",
        compress=True,
    )
    node = FileReadNode(
        {
            "connection": "files",
            "path": "in.csv.gz",
            "with_file_name": True,
            "batch_size": 10,
            "columns": {
                "id": "integer",
                "note": "string",
                "amount": "decimal",
                "at": "datetime",
                "at_text": "datetime",
                "day": "date",
            },
        }
    )
    batches = list(node.execute(context(root), {}))
    assert all(type(b) is RowBatch and b.source is not None for b in batches)
    plain = [RowBatch(b.names, list(b.rows)) for b in node.execute(context(root), {})]
    write({"table": f"{schema}.t", "batch_size": 20}, batches)
    write({"table": f"{schema}.u", "batch_size": 20}, plain)
    # re-cut into batches of 20 without building the values
    assert all(b._rows is None for b in batches)
    stored = rows_of(f"{schema}.t")
    assert stored == rows_of(f"{schema}.u") and len(stored) == 60
    assert stored[0][2] is None and stored[0][4] == "2026-01-01 10:00:00"
    assert stored[0][6] == "in.csv.gz" and stored[33][1] == "back\\slash"


def test_a_gzipped_file_in_many_blocks_streams_in_batches(
    root: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", 4096)
    content = "id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(20_000))
    (root / "big.csv.gz").write_bytes(gzip.compress(content.encode()))
    node = FileReadNode(
        {
            "connection": "files",
            "path": "big.csv.gz",
            "columns": {"id": "integer", "amount": "decimal"},
        }
    )
    sizes = [len(batch) for batch in node.execute(context(root), {})]
    assert sizes == [1000] * 20


@pytest.mark.parametrize("seed", [0, 1])
def test_a_block_ends_after_the_line_wanted(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        lengths = [rng.choice([0, 1, 5, rng.randint(0, 300)]) for _ in range(rng.randint(1, 400))]
        data = b"\n".join(b"x" * n for n in lengths) + b"\nrest"
        end = data.rfind(b"\n") + 1
        count = data.count(b"\n")
        wanted = rng.randint(1, count)
        expected = 0
        for _ in range(wanted):
            expected = data.index(b"\n", expected) + 1
        assert csv_arrow._after_line(data, end, count, wanted) == expected


class _CountedReads(io.BytesIO):
    """A file that counts the reads asked of it."""

    reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        return super().read(size)


def test_a_batch_longer_than_a_block_is_read_in_a_few_growing_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch of about 64 blocks: the buffer doubles until it holds one (a few reads, each
    pass searching only the new bytes), rather than growing by a block per pass, each pass
    copying and searching the whole buffer again (work growing with the square of a batch)."""
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", 1024)
    content = "id,amount\n" + "".join(f"{i},{i}.25\n" for i in range(30_000))
    options: dict[str, Any] = {
        "columns": {"id": F.INTEGER, "amount": F.DECIMAL},
        **COMMA_HEADED,
        "batch_size": 4_000,  # about 64 KB of lines
    }
    stream = _CountedReads(content.encode())
    batches = list(csv_arrow.read_csv(stream, **options))
    assert all(batch.source is not None for batch in batches)
    python = list(read_csv_python(io.BytesIO(content.encode()), encoding="utf-8", **options))
    assert [len(b) for b in batches] == [len(b) for b in python] == [4_000] * 7 + [2_000]
    assert [b.rows for b in batches] == [b.rows for b in python]
    assert [b.text_columns for b in batches] == [b.text_columns for b in python]
    # 8 batches, each found in about log2(64) + 2 reads (a block at a time: about 400)
    assert stream.reads <= 80, stream.reads


@pytest.mark.parametrize("at", ["after_header", "later_block", "mid_line", "no_header"])
def test_a_byte_order_mark_inside_the_file_stays_in_its_cell(
    at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrow drops a byte order mark at the start of what it parses; Python's ``csv`` keeps it
    in the cell, wherever it is after the file's start: such a block is read by Python."""
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", 64)
    bom = "\ufeff"
    lines = [f"{i},n{i}" for i in range(40)]
    if at == "after_header":
        lines[0] = f"{bom}id,name"
    elif at == "later_block":  # at the start of every batch from line 20 (some start a block)
        lines[20::4] = [f"{bom}{line}" for line in lines[20::4]]
    else:
        lines[25] = f"25,{bom}n25"
    content = ("" if at == "no_header" else "id,name\n") + "\n".join(lines) + "\n"
    options: dict[str, Any] = {
        "columns": {"id": F.STRING, "name": F.STRING} if at != "after_header" else None,
        **COMMA_HEADED,
        "header": at != "no_header",
        "batch_size": 4,
    }
    batches = list(csv_arrow.read_csv(io.BytesIO(content.encode()), **options))
    arrow = batches[0].source is not None
    python = list(read_csv_python(io.BytesIO(content.encode()), encoding="utf-8", **options))
    assert [b.rows for b in batches] == [b.rows for b in python]
    assert [b.names for b in batches] == [b.names for b in python]
    held = [row for b in batches for row in b.rows]
    assert sum(bom in str(value) for row in held for value in row) == sum(
        bom in line for line in lines
    )
    if at != "after_header":
        assert arrow  # the blocks before it: by Arrow


def test_a_byte_order_mark_after_the_header_is_a_cell_of_the_first_row() -> None:
    data = b"id,name\n\xef\xbb\xbfid,name\n1,x\n"
    options: dict[str, Any] = {
        "columns": None,
        **COMMA_HEADED,
        "batch_size": 10,
    }
    (batch,) = csv_arrow.read_csv(io.BytesIO(data), **options)
    assert batch.rows == [["\ufeffid", "name"], ["1", "x"]]


def test_rows_built_and_changed_in_place_are_what_copy_writes(
    schema: str,  # noqa: F811
) -> None:
    """Once a batch's rows are built its Arrow source is dropped: a node that changes them in
    place and passes the batch on has its values written, not the text read."""
    query(
        sql.SQL("create table {}.{} (id text, name text)").format(
            sql.Identifier(schema), sql.Identifier("t")
        )
    )
    data = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(6))
    options: dict[str, Any] = {
        "columns": None,
        **COMMA_HEADED,
        "batch_size": 3,
    }
    batches = list(csv_arrow.read_csv(io.BytesIO(data), **options))
    assert all(b.source is not None for b in batches)
    batches[0].rows[1][1] = "changed"  # built, then changed in place
    node = SqlWriteNode({"connection": "target", "table": f"{schema}.t"})
    run_context = context_for()
    target = run_context.connection("target")
    opened = dialect_for(target.scheme).open(
        target.url, run_context.redactor, statement_timeout_s=node.config.statement_timeout_s
    )
    with opened as session:
        # the batches as they come (the node's re-cut would copy the built one)
        list(Loader(node.config, session, run_context).write(batches))
    assert [name for _, name in rows_of(f"{schema}.t")] == ["n0", "changed", "n2", "n3", "n4", "n5"]
    # (the Arrow block is no longer held beside the rows; the other batches kept theirs)
    assert batches[0].source is None and batches[1].source is not None


def test_a_batch_read_by_arrow_sliced_with_a_step_builds_its_rows() -> None:
    data = b"id,amount\n" + b"".join(b"%d,%d.5\n" % (i, i) for i in range(9))
    options: dict[str, Any] = {
        "columns": {"id": F.INTEGER, "amount": F.DECIMAL},
        **COMMA_HEADED,
        "batch_size": 10,
    }
    (batch,) = csv_arrow.read_csv(io.BytesIO(data), **options)
    (python,) = read_csv_python(io.BytesIO(data), encoding="utf-8", **options)
    assert batch.source is not None
    assert batch[::2].rows == python[::2].rows == [(i, Decimal(f"{i}.5")) for i in range(0, 9, 2)]
    assert batch[::-3].text_columns == python[::-3].text_columns
    assert batch[1:3].rows == python[1:3].rows


@pytest.mark.parametrize("spelling", ["UTF8", "utf_8", "U8"])
def test_invalid_utf8_is_reported_in_the_encoding_as_spelled(spelling: str) -> None:
    data = b"id,name\n1,a\n2,\xff\n"
    options: dict[str, Any] = {
        "columns": None,
        **COMMA_HEADED,
        "batch_size": 10,
        "encoding": spelling,
    }
    with pytest.raises(FileFormatError) as failure:
        list(read_csv(io.BytesIO(data), **options))
    with pytest.raises(FileFormatError) as by_python:
        list(read_csv_python(io.BytesIO(data), **options))
    assert str(failure.value) == str(by_python.value)
    assert str(failure.value).startswith(f"not valid {spelling} text")
