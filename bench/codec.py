"""Hand-off encodings compared: encode + decode throughput and size on realistic records.

    .venv/bin/python bench/codec.py [--rows 100000] [--batch 1000]

Every candidate must give back the records it was given with their types (``Decimal``,
``datetime`` and nested objects included); the round trip is checked before timing. JSON and
orjson need a tagging scheme for that (``{"$d": "12.50"}``), which costs a Python pass on
decode. Arrow IPC is measured when ``pyarrow`` is installed (it is not a dependency).
The last line gives each encoding's speed relative to the one the platform uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.engine import codec

Batch = list[dict[str, Any]]
Codec = tuple[Callable[[list[Batch]], bytes], Callable[[bytes], list[Batch]]]


def records(count: int) -> list[dict[str, Any]]:
    start = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    return [
        {
            "id": i,
            "customer": f"Client {i} ✓ Ünïcödé",
            "email": f"c{i}@example.test",
            "status": ("paid", "pending", "refunded")[i % 3],
            "amount": Decimal(i % 5000) / 100,
            "created_at": start + dt.timedelta(minutes=i),
            "address": {"city": "Zürich", "zip": f"{8000 + i % 100}"},
        }
        for i in range(count)
    ]


# --- tagged JSON (stdlib and orjson) ---------------------------------------------------------
def _tag(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, dt.datetime):
        return {"$t": value.isoformat()}
    raise TypeError(type(value).__name__)


def _untag_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$d" in obj:
            return Decimal(obj["$d"])
        if "$t" in obj:
            return dt.datetime.fromisoformat(obj["$t"])
    return obj


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and ("$d" in value or "$t" in value):
            return _untag_hook(value)
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def json_lines(batches: list[Batch]) -> bytes:
    return b"".join(json.dumps(b, default=_tag).encode() + b"\n" for b in batches)


def json_read(data: bytes) -> list[Batch]:
    return [json.loads(line, object_hook=_untag_hook) for line in data.splitlines()]


def orjson_lines(batches: list[Batch]) -> bytes:
    return b"".join(
        orjson.dumps(
            b, default=_tag, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME
        )
        for b in batches
    )


def orjson_read(data: bytes) -> list[Batch]:
    return [_untag(orjson.loads(line)) for line in data.splitlines()]


# --- msgpack, record by record (extension types) and by column (the platform's) ---------------
def msgpack_rows(batches: list[Batch]) -> bytes:
    pack = codec.packer()
    return b"".join(pack.pack(b) for b in batches)


def msgpack_rows_read(data: bytes) -> list[Batch]:
    return list(msgpack.Unpacker(io.BytesIO(data), ext_hook=codec._ext_hook, raw=False))


def msgpack_columns(batches: list[Batch]) -> bytes:
    pack = codec.packer()
    return b"".join(codec.encode_batch(b, pack) for b in batches)


def msgpack_columns_read(data: bytes) -> list[Batch]:
    return list(codec.decode_stream(io.BytesIO(data)))


CODECS: dict[str, Codec] = {
    "json (stdlib, tagged)": (json_lines, json_read),
    "orjson (tagged)": (orjson_lines, orjson_read),
    "msgpack by record (ext types)": (msgpack_rows, msgpack_rows_read),
    "msgpack by column (platform)": (msgpack_columns, msgpack_columns_read),
}

try:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    def arrow_write(batches: list[Batch]) -> bytes:
        # One IPC stream per batch: the schema is inferred per batch, since a generic
        # hand-off cannot know the types (a decimal's precision, say) before it has the data.
        out = io.BytesIO()
        for b in batches:
            sink = io.BytesIO()
            table = pa.RecordBatch.from_pylist(b)
            with ipc.new_stream(sink, table.schema) as writer:
                writer.write_batch(table)
            data = sink.getvalue()
            out.write(len(data).to_bytes(8, "little") + data)
        return out.getvalue()

    def arrow_read(data: bytes) -> list[Batch]:
        view, batches, at = memoryview(data), [], 0
        while at < len(view):
            size = int.from_bytes(view[at : at + 8], "little")
            reader = ipc.open_stream(pa.py_buffer(view[at + 8 : at + 8 + size]))
            batches.extend(b.to_pylist() for b in reader)
            at += 8 + size
        return batches

    CODECS["Arrow IPC (pyarrow)"] = (arrow_write, arrow_read)
except ImportError:
    pass


def measure(name: str, impl: Codec, batches: list[Batch], rounds: int) -> dict[str, float]:
    write, read = impl
    blob = write(batches)
    if read(blob) != batches:
        raise SystemExit(f"{name}: the round trip changed the records")
    enc, dec = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        blob = write(batches)
        t1 = time.perf_counter()
        read(blob)
        enc.append(t1 - t0)
        dec.append(time.perf_counter() - t1)
    return {"encode": statistics.median(enc), "decode": statistics.median(dec), "bytes": len(blob)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = records(args.rows)
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    results = {name: measure(name, impl, batches, args.rounds) for name, impl in CODECS.items()}
    print(f"{args.rows:,} records in batches of {args.batch} (median of {args.rounds} rounds)")
    print(f"{'encoding':<32} {'encode':>9} {'decode':>9} {'total':>9} {'krec/s':>8} {'MB':>7}")
    for name, r in results.items():
        total = r["encode"] + r["decode"]
        print(
            f"{name:<32} {r['encode']:>8.3f}s {r['decode']:>8.3f}s {total:>8.3f}s "
            f"{args.rows / total / 1000:>8.0f} {r['bytes'] / 1e6:>7.1f}"
        )
    base = results["msgpack by column (platform)"]
    base_total = base["encode"] + base["decode"]
    ratios = ", ".join(
        f"{name}: {(r['encode'] + r['decode']) / base_total:.2f}x time"
        for name, r in results.items()
        if r is not base
    )
    print(f"ratios vs msgpack by column: {ratios}")


if __name__ == "__main__":
    main()
