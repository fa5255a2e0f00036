"""A CSV batch carries the text of its cast values (``RowBatch.text_columns``) only when that text is
``str()`` of each value, and ``sql_write`` then writes exactly what it writes from the values."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from nodes.builtin.file_formats import FileFormatError, read_csv
from nodes.builtin.file_read import FileReadNode
from nodes.builtin.sql_write.postgres import copy_text, copy_text_of_columns
from nodes.sdk import FieldType
from nodes.sdk.batches import RowBatch, rebatch
from tests.nodes.test_file_nodes import context, put, root  # noqa: F401 - a fixture
from tests.nodes.test_sql_write import query, rows_of, schema, write  # noqa: F401 - a fixture

zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))),
    st.integers(-14 * 3600, 14 * 3600).map(lambda s: timezone(timedelta(seconds=s))),
)
decimals = st.decimals(allow_nan=False, allow_infinity=False)

#: How a datetime cell is spelled: its separator, how many fraction digits (0: none) and its
#: offset ("" none, "Z", "+HH", "+HHMM", "+HH:MM", with "-00:00" and "+00:00" among them).
Shape = tuple[str, int, str]
OFFSETS = ["", "Z", "+HH", "-HH", "+HHMM", "-HHMM", "+HH:MM", "-HH:MM", "-00:00"]
shapes = st.tuples(st.sampled_from("T "), st.integers(0, 8), st.sampled_from(OFFSETS))


def spelled(moment: datetime, shape: Shape, hours: int, minutes: int) -> str:
    separator, digits, offset = shape
    fraction = f".{moment.microsecond:06d}98"[: digits + 1] if digits else ""
    zone = offset.replace("HH", f"{hours:02d}").replace("MM", f"{minutes:02d}")
    return moment.replace(microsecond=0).isoformat(separator) + fraction + zone


@st.composite
def shaped(draw: Any, shape: Shape) -> str:
    """A datetime cell spelled in ``shape``: as often in the form ``str()`` writes as not."""
    hours, minutes = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    return spelled(draw(st.datetimes()), shape, hours, minutes)


#: Per declared type: cells in the forms ``str()`` writes, and in other forms the cast takes.
CELLS: dict[FieldType, tuple[st.SearchStrategy[str], st.SearchStrategy[str]]] = {
    FieldType.INTEGER: (
        st.integers(-(2**70), 2**70).map(str),
        st.one_of(
            st.integers(0, 99).map(lambda i: f"0{i}"),
            st.integers(0, 99).map(lambda i: f"-0{i}"),
            st.sampled_from(["-0", "+5", " 5", "5 ", "1_000", "\u0663", "1.0", ""]),
        ),
    ),
    FieldType.DECIMAL: (
        decimals.map(lambda d: f"{d:f}"),  # no exponent (more than 5 zeros after "0.": 1E-7)
        st.one_of(
            decimals.map(str),  # exponents
            st.sampled_from(["1.", ".5", "-.5", "00.5", "-00", "+1.5", " 1", "1e3", "1_0", ""]),
            st.sampled_from(["0.0000001", "-0.00000001", "0.0000000", "0.000000"]),
        ),
    ),
    FieldType.DATETIME: (
        st.tuples(st.datetimes(timezones=zones), st.sampled_from("T ")).map(
            lambda d: d[0].isoformat(d[1])
        ),
        st.one_of(
            st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds")),
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
            st.datetimes().map(lambda d: d.isoformat() + "-00:00"),
            st.datetimes().map(lambda d: d.strftime("%Y%m%dT%H%M%S")),
            st.datetimes().map(lambda d: d.isoformat("x")),
            st.datetimes().map(lambda d: d.replace(microsecond=0).isoformat() + ".000000"),
            st.dates().map(date.isoformat),
            st.sampled_from(["2026-01-01T10:00:00+05", "2026-W01-1T10:00:00", ""]),
        ),
    ),
    FieldType.DATE: (
        st.dates().map(date.isoformat),
        st.one_of(
            st.dates().map(lambda d: d.strftime("%Y%m%d")),
            st.dates().map(lambda d: f" {d.isoformat()}"),
            st.sampled_from(["2026-W01-1", "2026-001", "2026-03-01T10:00:00", ""]),
        ),
    ),
}


@st.composite
def columns(draw: Any) -> tuple[dict[str, FieldType], list[list[str]]]:
    """Declared columns and rows of cells: each column in ``str()`` forms only, or mixed."""
    kinds = draw(st.lists(st.sampled_from(sorted(CELLS)), min_size=1, max_size=4))
    size = draw(st.integers(1, 8))
    cells = []
    for kind in kinds:
        usual, other = CELLS[kind]
        cell = usual if draw(st.booleans()) else st.one_of(usual, other)
        if kind is FieldType.DATETIME and draw(st.booleans()):
            # One or two spellings throughout: often of one width, as the checks need.
            spellings = draw(st.lists(shapes, min_size=1, max_size=2))
            cell = st.one_of(*(shaped(shape) for shape in spellings))
        cells.append(draw(st.lists(cell, min_size=size, max_size=size)))
    declared = {f"c{i}": kind for i, kind in enumerate(kinds)}
    return declared, [list(row) for row in zip(*cells, strict=True)]


def read(declared: dict[str, Any], rows: list[list[str]], **options: Any) -> list[RowBatch]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(options.get("header", declared))
    writer.writerows(rows)
    stream = io.BytesIO(buffer.getvalue().encode())
    return list(
        read_csv(
            stream,
            columns=declared,
            header=True,
            delimiter=",",
            quotechar='"',
            encoding="utf-8",
            batch_size=options.get("batch_size", 1000),
        )
    )


def rows_of_texts(batch: RowBatch) -> list[tuple[str, ...]]:
    assert batch.text_columns is not None
    return list(zip(*batch.text_columns, strict=True))


def text_of(batch: RowBatch) -> list[tuple[str, ...]]:
    return [tuple(map(str, row)) for row in batch.rows]


@pytest.mark.parametrize("seed", [0, 1])
def test_texts_are_str_of_every_value_or_absent(seed: int) -> None:
    carried = []

    @settings(max_examples=500, deadline=None, database=None)
    @given(columns())
    def check(case: tuple[dict[str, FieldType], list[list[str]]]) -> None:
        declared, rows = case
        try:
            batches = read(declared, rows)
        except FileFormatError:  # a cell the cast refuses: nothing to compare
            return
        for batch in batches:
            if batch.text_columns is not None:
                carried.append(len(batch))
                assert rows_of_texts(batch) == text_of(batch)
                assert copy_text_of_columns(batch.text_columns) == copy_text(
                    batch.rows, len(declared)
                )

    check()
    assert len(carried) > 50  # the usual forms did carry their text


def test_every_datetime_spelling_carries_str_of_its_values_or_nothing() -> None:
    """Each spelling (separator, 0 to 8 fraction digits, each offset form) throughout a column,
    alone and beside the ``str()`` form of its width."""
    moments = [datetime(2026, 1, 1, 10, 0, 0, micro) for micro in (0, 1, 100000, 123456)]
    carried = set()
    for shape in itertools.product("T ", range(9), OFFSETS):
        for moment, (hours, minutes) in itertools.product(moments, [(0, 0), (5, 30), (23, 59)]):
            cell = spelled(moment, shape, hours, minutes)
            width = [text for text in USUAL_DATETIMES if len(text) == len(cell)]
            for rows in ([[cell], [cell]], [[cell], *([text] for text in width)]):
                try:
                    (batch,) = read({"v": FieldType.DATETIME}, rows)
                except FileFormatError:
                    continue
                if batch.text_columns is not None:
                    carried.add(shape)
                    assert rows_of_texts(batch) == text_of(batch), rows
    assert len(carried) == 2 * 2 * 3  # "T" or " ", 0 or 6 digits, no offset or +HH:MM, -HH:MM


def test_usual_forms_carry_their_text_and_datetimes_lose_their_t() -> None:
    declared = {
        "id": FieldType.INTEGER,
        "name": FieldType.STRING,
        "amount": FieldType.DECIMAL,
        "at": FieldType.DATETIME,
        "day": FieldType.DATE,
    }
    rows = [
        ["0", "Ann\ttab", "-0.50", "2026-01-01T10:00:00+00:00", "2026-01-01"],
        ["-12", "", "12345678901234567890.000001", "2026-01-01T10:00:00-05:30", "0001-12-31"],
    ]
    (batch,) = read(declared, rows)
    assert batch.text_columns is not None
    assert rows_of_texts(batch) == text_of(batch)
    assert batch.text_columns[3][1] == "2026-01-01 10:00:00-05:30"
    assert copy_text_of_columns(batch.text_columns) == copy_text(batch.rows, 5)  # the tab too
    assert batch.rows[1][2] == Decimal("12345678901234567890.000001")
    # Only some declared columns, in another order: texts of those.
    picks = {"day": FieldType.DATE, "id": FieldType.INTEGER}
    (picked,) = read(picks, [["1", "x", "2026-01-02"]], header=["id", "name", "day"])
    assert picked.text_columns is not None and rows_of_texts(picked) == text_of(picked)


@pytest.mark.parametrize(
    ("kind", "cell"),
    [
        ("integer", "007"),
        ("integer", "-0"),
        ("decimal", "1."),
        ("decimal", "1E+3"),
        ("decimal", "0.0000001"),
        ("datetime", "2026-01-01T10:00:00Z"),
        ("datetime", "2026-01-01T10:00:00.500"),
        ("datetime", "2026-01-01T10:00:00.12345Z"),
        ("datetime", "2026-01-01T10:00:00.1+0530"),
        ("datetime", "2026-01-01T10:00:00.123-05"),
        ("datetime", "2026-01-01T10:00:00.1234+05"),
        ("datetime", "2026-01-01T10:00:00.123456+0530"),
        ("datetime", "2026-01-01T10:00:00.12345+05:30"),
        ("datetime", "2026-01-01T10:00:00.1234567+0530"),
        ("datetime", "2026-01-01T10:00:00.12345678901Z"),
        ("datetime", "2026-01-01T10:00:00,123456"),
        ("datetime", "2026-01-01T10:00:00.1"),
        ("datetime", "2026-01-01T10:00:00.12"),
        ("datetime", "2026-01-01T10:00:00.1234"),
        ("datetime", "2026-01-01T10:00:00.12345"),
        ("datetime", "2026-01-01T10:00:00+0530"),
        ("datetime", "2026-01-01T10:00:00-00:00"),
        ("datetime", "2026-01-01T10:00:00.123456-00:00"),
        ("datetime", "2026-01-01T10:00:00+05"),
        ("datetime", "2026-01-01T10:00:00.000000"),
        ("date", "20260101"),
        ("float", "1.5"),
        ("boolean", "true"),
        ("integer", ""),
    ],
)
def test_other_forms_leave_the_batch_without_texts(kind: str, cell: str) -> None:
    """Alone and beside a value in the usual form (of the same width, for a datetime)."""
    usual = {"date": "2026-01-01", "boolean": "false"}.get(kind, "1")
    if kind == "datetime":
        usual = min(USUAL_DATETIMES, key=lambda text: abs(len(text) - len(cell)))
    for rows in ([[cell]], [[usual], [cell]], [[cell], [usual]]):
        (batch,) = read({"v": FieldType(kind)}, rows)
        assert batch.text_columns is None


USUAL_DATETIMES = (
    "2026-01-01T10:00:00",
    "2026-01-01T10:00:00+05:30",
    "2026-01-01T10:00:00.123456",
    "2026-01-01T10:00:00.123456+05:30",
)


@pytest.mark.parametrize(
    "cell",
    [
        *USUAL_DATETIMES,
        "2026-01-01 10:00:00.000001-05:30",
        "2026-01-01T10:00:00+00:00",
        "2026-01-01T10:00:00.100000-00:30",
    ],
)
def test_datetimes_of_each_width_in_the_str_form_carry_it(cell: str) -> None:
    (batch,) = read({"v": FieldType.DATETIME}, [[cell], [cell]])
    assert batch.text_columns is not None
    assert rows_of_texts(batch) == text_of(batch) == [(cell.replace("T", " "),)] * 2


def test_slices_and_re_cut_batches_keep_texts_a_mixed_cut_drops_them() -> None:
    declared = {"id": FieldType.INTEGER, "amount": FieldType.DECIMAL}
    batches = read(declared, [[str(i), f"{i}.25"] for i in range(10)], batch_size=3)
    assert all(batch.text_columns is not None for batch in batches)
    cut = list(rebatch(batches, 4))
    assert [len(batch) for batch in cut] == [4, 4, 2]
    for batch in cut:
        assert type(batch) is RowBatch and batch.text_columns is not None
        assert rows_of_texts(batch) == text_of(batch)
    plain = RowBatch(["id", "amount"], [(10, Decimal("10.25"))])
    (joined,) = rebatch([batches[0][:2], plain], 3)
    assert type(joined) is RowBatch and joined.text_columns is None


def test_sql_write_stores_the_same_with_and_without_texts(schema: str) -> None:  # noqa: F811
    """Into numeric, timestamptz, timestamp, date, bigint columns and a text column holding
    datetimes: the text sent as read stores what converting the values stores."""
    query(
        sql.SQL(
            "create table {}.{} (id bigint, amount numeric(30, 6), at timestamptz,"
            " naive timestamp, day date, at_text text, amount_text text)"
        ).format(sql.Identifier(schema), sql.Identifier("t"))
    )
    query(sql.SQL("create table {0}.u (like {0}.t)").format(sql.Identifier(schema)))
    declared = {
        "id": FieldType.INTEGER,
        "amount": FieldType.DECIMAL,
        "at": FieldType.DATETIME,
        "naive": FieldType.DATETIME,
        "day": FieldType.DATE,
        "at_text": FieldType.DATETIME,
        "amount_text": FieldType.DECIMAL,
    }
    rows = [
        [
            str(i),
            f"{i}.{i:06d}",
            f"2026-0{1 + i % 9}-01T10:00:0{i % 10}+0{i % 10}:30",
            f"2026-01-01T23:59:0{i % 10}.12345{i % 10}",
            f"2026-12-{1 + i % 28:02d}",
            f"2026-01-01T10:00:00-0{i % 10}:15",
            f"-{i}.50",
        ]
        for i in range(1, 40)
    ]
    batches = read(declared, rows, batch_size=7)
    assert all(batch.text_columns is not None for batch in batches)
    plain = [RowBatch(batch.names, batch.rows) for batch in batches]
    write({"table": f"{schema}.t", "batch_size": 10}, batches)
    write({"table": f"{schema}.u", "batch_size": 10}, plain)
    stored = rows_of(f"{schema}.t")
    assert stored == rows_of(f"{schema}.u")
    assert len(stored) == 39
    assert stored[0][1:3] == (
        Decimal("1.000001"),
        datetime(2026, 2, 1, 10, 0, 1, tzinfo=timezone(timedelta(hours=1, minutes=30))),
    )
    assert stored[0][5] == "2026-01-01 10:00:00-01:15"  # the text str() writes, not as read


def test_file_names_join_the_texts(root: Path) -> None:  # noqa: F811
    put(root / "a.csv", "id,amount\n1,2.50\n2,-3.75\n")
    node = FileReadNode(
        {
            "connection": "files",
            "path": "*.csv",
            "columns": {"id": "integer", "amount": "decimal"},
            "with_file_name": True,
        }
    )
    (batch,) = node.execute(context(root), {})
    assert type(batch) is RowBatch and batch.text_columns is not None
    assert (
        rows_of_texts(batch) == text_of(batch) == [("1", "2.50", "a.csv"), ("2", "-3.75", "a.csv")]
    )
