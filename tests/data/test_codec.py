"""The hand-off encoding gives back exactly the records it was given, types included."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flows.engine.codec import decode_stream, encode_batch, packer, to_wire
from nodes.sdk.node import RowBatch

AT = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def round_trip(*batches: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    pack = packer()
    data = b"".join(encode_batch(batch, pack) for batch in batches)
    return list(decode_stream(io.BytesIO(data)))


def test_uniform_records_travel_by_column_with_their_types() -> None:
    batch = [
        {
            "id": i,
            "name": f"Zoë {i} ☕",
            "amount": Decimal("12.50") * i,
            "at": AT + dt.timedelta(days=i),
            "day": dt.date(2024, 2, 29),
            "slot": dt.time(9, 30),
            "ref": uuid.UUID(int=i),
            "ok": i % 2 == 0,
            "ratio": i / 3,
            "blob": bytes([i]),
            "address": {"city": "Zürich", "lines": ["a", "b"], "since": dt.date(2020, 1, 1)},
        }
        for i in range(50)
    ]
    assert isinstance(to_wire(batch), dict)
    (back,) = round_trip(batch)
    assert back == batch
    assert [type(v) for v in back[7].values()] == [type(v) for v in batch[7].values()]
    assert back[3]["at"].utcoffset() == dt.timedelta(hours=2)
    assert list(back[0]) == list(batch[0])  # key order kept


def test_nulls_and_mixed_types_in_a_column_come_back_as_given() -> None:
    batch = [
        {"amount": Decimal("1.5"), "at": None, "mixed": 1},
        {"amount": None, "at": AT, "mixed": "one"},
        {"amount": Decimal("-0.001"), "at": AT, "mixed": Decimal("1")},
    ]
    assert round_trip(batch) == [batch]


def test_records_with_different_keys_travel_record_by_record() -> None:
    batch = [{"a": 1, "b": Decimal("2")}, {"b": AT, "a": 1}, {"c": (1, 2)}]
    assert not isinstance(to_wire(batch), dict)
    assert round_trip(batch) == [[batch[0], batch[1], {"c": [1, 2]}]]


def test_batches_stream_one_at_a_time_in_order() -> None:
    batches = [[{"n": i, "v": Decimal(i)}] * (i + 1) for i in range(5)]
    assert round_trip(*batches) == batches


def test_empty_records_keep_their_count() -> None:
    assert round_trip([{}, {}, {}]) == [[{}, {}, {}]]


def test_datetimes_in_utc_travel_as_timestamps_and_keep_their_zone() -> None:
    utc = ZoneInfo("Etc/UTC")  # what psycopg gives for timestamptz on a UTC server
    for zone in (utc, dt.UTC):
        batch = [
            {"at": None if i % 5 == 0 else dt.datetime(1970, 1, 1, tzinfo=zone) + i * STEP}
            for i in range(200)
        ]
        assert to_wire(batch)["t"][0].startswith("timestamp:")
        (back,) = round_trip(batch)
        assert back == batch
        assert [r["at"] and r["at"].isoformat() for r in back] == [
            r["at"] and r["at"].isoformat() for r in batch
        ]
        assert back[1]["at"].tzinfo == zone


def test_other_zones_naive_and_mixed_datetimes_travel_as_text_exactly() -> None:
    madrid = ZoneInfo("Europe/Madrid")
    east, half = dt.timezone(dt.timedelta(hours=5)), dt.timezone(dt.timedelta(seconds=3661.5))
    columns = [
        [dt.datetime(2026, 3, 29, 1, 30, tzinfo=madrid), AT],
        [dt.datetime(1, 1, 1, tzinfo=east), dt.datetime(9999, 12, 31, 23, tzinfo=east)],
        [dt.datetime(2026, 1, 1, tzinfo=half), None],
        [dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, tzinfo=dt.UTC), None],
    ]
    for values in columns:
        batch = [{"at": value} for value in values]
        assert not to_wire(batch)["t"][0].startswith("timestamp:")
        (back,) = round_trip(batch)
        assert [r["at"] and r["at"].isoformat() for r in back] == [
            v and v.isoformat() for v in values
        ]


STEP = dt.timedelta(days=3217, microseconds=999_999)  # spans centuries, microseconds kept


def test_rows_without_columns_keep_their_count() -> None:
    assert round_trip(RowBatch([], [(), (), ()])) == [[{}, {}, {}]]


def test_a_row_batch_reads_as_its_records_and_travels_as_rows() -> None:
    batch = RowBatch(["id", "amount"], [(1, Decimal("1.50")), (2, None)])
    assert batch == [{"id": 1, "amount": Decimal("1.50")}, {"id": 2, "amount": None}]
    assert batch[1] == {"id": 2, "amount": None}
    assert batch[1:] == [{"id": 2, "amount": None}]
    batch[0]["id"] = 10  # each read builds a new dict: the batch itself never changes
    assert batch[0]["id"] == 1
    (back,) = round_trip(batch)
    assert type(back) is RowBatch
    assert back.names == ["id", "amount"]
    assert back.rows == [(1, Decimal("1.50")), (2, None)]


def test_a_repeated_column_name_keeps_its_last_value_as_a_dict_would() -> None:
    batch = RowBatch(["id", "id"], [(1, 2)])
    assert batch == [{"id": 2}]
    assert round_trip(batch) == [[{"id": 2}]]


def test_integers_past_64_bits_travel_exactly() -> None:
    # An exact sum of large integers (aggregate) is an int msgpack cannot write in 64 bits.
    big = [2**63, -(2**63) - 1, 10**40, -(10**30)]
    by_column = [{"total": value, "n": i} for i, value in enumerate(big)]
    mixed = [{"total": big[0]}, {"other": big[2], "nested": [big[3], {"x": big[1]}]}]
    [columns], [records] = round_trip(by_column), round_trip(mixed)
    assert list(columns) == by_column and [type(r["total"]) for r in columns] == [int] * 4
    assert list(records) == mixed
