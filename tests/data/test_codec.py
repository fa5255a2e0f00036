"""The hand-off encoding gives back exactly the records it was given, types included."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Any

from flows.engine.codec import decode_stream, encode_batch, packer, to_wire

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
