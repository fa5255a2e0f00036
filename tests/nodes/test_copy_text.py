"""The COPY text built a column at a time is byte for byte what psycopg's ``write_row`` sends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg._copy_base import TextFormatter
from psycopg.adapt import Transformer

from nodes.builtin.sql_write.postgres import copy_text

zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(-14 * 3600, 14 * 3600).map(lambda s: timezone(timedelta(seconds=s))),
)
COLUMN_VALUES = [
    st.text(),  # tabs, newlines, backslashes, any character but NUL below
    st.integers(-(2**70), 2**70),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(),  # NaN and infinities: written row by row
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(timezones=zones),
    st.uuids(),  # no column conversion: written row by row
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
]


@st.composite
def batches(draw: Any) -> list[tuple[Any, ...]]:
    kinds = draw(st.lists(st.sampled_from(COLUMN_VALUES), min_size=1, max_size=5))
    mixed = draw(st.booleans())
    cells = [
        st.one_of(st.none(), kind, COLUMN_VALUES[1]) if mixed else st.one_of(st.none(), kind)
        for kind in kinds
    ]
    rows = draw(st.lists(st.tuples(*cells), min_size=1, max_size=12))
    return [tuple(v.replace("\x00", "") if type(v) is str else v for v in r) for r in rows]


def write_row_text(rows: list[tuple[Any, ...]]) -> bytes:
    formatter = TextFormatter(Transformer())
    return b"".join(map(formatter.write_row, rows)) + formatter.end()


@pytest.mark.parametrize("seed", [0, 1])
def test_copy_text_is_what_write_row_sends(seed: int) -> None:
    @settings(max_examples=400, deadline=None, database=None)
    @given(batches())
    def check(rows: list[tuple[Any, ...]]) -> None:
        text = copy_text(rows, len(rows[0]))
        kinds = {type(v) for v in (v for r in rows for v in r) if v is not None}
        if text is None:  # only for what has no column conversion, or mixed columns
            assert any(not isinstance(v, str | int | float | date | Decimal) for v in kinds) or (
                any(len({type(r[i]) for r in rows} - {type(None)}) > 1 for i in range(len(rows[0])))
                or any(type(v) is Decimal and not v.is_finite() for r in rows for v in r)
            )
            return
        assert text.encode() == write_row_text(rows)

    check._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
    check()


def test_copy_text_examples() -> None:
    tz = timezone(timedelta(hours=5, minutes=30, seconds=15))
    rows = [
        (1, "a\tb\\c\nd\re", Decimal("1.50"), datetime(2025, 1, 1, tzinfo=tz), None, True),
        (2, "", Decimal("-1E+3"), datetime(2025, 1, 1, 2, 3, 4, 5), date(2020, 1, 2), False),
    ]
    assert copy_text(rows, 6) == (
        "1\ta\\tb\\\\c\\nd\\re\t1.50\t2025-01-01 00:00:00+05:30:15\t\\N\tt\n"
        "2\t\t-1E+3\t2025-01-01 02:03:04.000005\t2020-01-02\tf\n"
    )
    assert copy_text(rows, 6).encode() == write_row_text(rows)  # type: ignore[union-attr]
    assert copy_text([(UUID(int=1),)], 1) is None
    assert copy_text([(1,), (Decimal(1),)], 1) is None
    assert copy_text([(Decimal("NaN"),)], 1) is None


def test_a_string_that_reads_as_null_is_escaped_beside_real_nulls() -> None:
    rows = [("\\N", None, 1), (None, "a\tb", 2)]
    assert copy_text(rows, 3) == "\\\\N\t\\N\t1\n\\N\ta\\tb\t2\n"
    assert copy_text(rows, 3).encode() == write_row_text(rows)  # type: ignore[union-attr]
