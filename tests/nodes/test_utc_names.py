"""One list of the zone names that mean UTC (``nodes.timezones.UTC_NAMES``), and both places that
treat them as UTC — the SQL source reading a server in that zone, the hand-off encoding a column
in it — follow it for every name."""

from __future__ import annotations

import datetime as dt
import io
import os
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from flows.engine.codec import decode_stream, encode_batch, packer, to_wire
from nodes.builtin.sql_backends import postgres_rows
from nodes.timezones import UTC_NAMES

PG_URL = os.environ.get("FLOWPLATFORM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.parametrize("name", sorted(UTC_NAMES))
def test_every_name_is_utc_all_year(name: str) -> None:
    zone = ZoneInfo(name)
    for month in range(1, 13):
        moment = dt.datetime(2026, month, 15, 12, tzinfo=zone)
        assert moment.utcoffset() == dt.timedelta(0)
        assert moment.dst() in (None, dt.timedelta(0))


@pytest.mark.parametrize("name", sorted(UTC_NAMES))
def test_a_column_in_any_utc_name_travels_as_utc_timestamps(name: str) -> None:
    zone = ZoneInfo(name)
    batch = [{"at": dt.datetime(2026, 1, 1, tzinfo=zone) + dt.timedelta(hours=i)} for i in range(3)]
    assert to_wire(batch)["t"][0] == f"timestamp:{name}"
    (back,) = list(decode_stream(io.BytesIO(encode_batch(batch, packer()))))
    assert back == batch
    assert {record["at"].tzinfo for record in back} == {zone}


@pytest.mark.parametrize("name", sorted(UTC_NAMES))
def test_a_postgresql_server_in_any_utc_name_is_read_as_utc(name: str) -> None:
    url = f"{PG_URL}?options={quote(f'-c TimeZone={name}', safe='')}"
    query = "select timestamptz '2026-01-01 00:00:00+00' as at, current_setting('TimeZone') as z"
    (batch,) = postgres_rows(url, query, None, batch_size=10, timeout_s=10, is_cancelled=bool)
    (record,) = batch
    assert record["at"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert record["at"].tzinfo is dt.UTC
    assert record["z"] == "UTC"  # read under the name UTC itself
