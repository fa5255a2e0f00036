"""Claim-check hand-off: node outputs live in flow-data storage, messages carry only names.

Writes go to a local spooled temporary file first and are saved to the storage in one piece
(multipart for S3), so memory stays bounded by the batch size, and a re-run of the same node
overwrites the same name: redelivery writes the same output.

A partitioned output is several objects, ``<node>.p00000.msgpack``, ``<node>.p00001.msgpack``...,
listed in order by a small manifest, ``<node>.partitions.json``; the manifest's name is the
node's output reference; :func:`read_output` reads any reference. Inside a partitioned stretch,
a pure node's output may instead be *derived*: its manifest names the node and its input, and
reading it runs the node over that input again (decision 0008). A source that can read its
slices again exactly (``Rereadable``: ``file_read`` per file) stores per partition only its slice
and the pins of what it read, ``<node>.p00000.slice.json``; its manifest names the source, and
reading it reads the slices again, failing when the data changed since (decision 0044).

A node whose output is kept per port (``branch``: one port per route) writes one object per
port, ``<node>.port-<port>.msgpack``, listed with its row count by a ports manifest,
``<node>.ports.json``: the node's output reference. An edge reads the object of the port it
leaves by (:func:`port_ref`); reading the reference itself reads every port, in port order.

A small whole output (at most ``INLINE_MAX_BYTES`` encoded: a few records) is not stored at
all: its reference *is* its data, ``inline:`` and the encoded batches in base64, recorded in
the node run's row by the statement that finishes it (decision 0040). Every reader of a
reference reads it the same way; ``inline:-`` (``INLINE_PURGED``) is an inline output whose
data was purged, ``inline:`` alone an empty one.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, cast

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from flows.engine.codec import decode_stream, encode_batch, packer
from nodes.sdk import NodeError, PortBatch
from nodes.sdk.node import AnyBatch, Output

SPOOL_MAX_BYTES = 8 * 1024 * 1024
MANIFEST_SUFFIX = ".partitions.json"
SLICE_SUFFIX = ".slice.json"
PORTS_SUFFIX = ".ports.json"
#: Keeps a fan-out canvas (one task per partition) to a sane size.
MAX_PARTITIONS = 1000
#: The prefix of an output kept in its reference (:func:`write_output`).
INLINE_PREFIX = "inline:"
#: An inline output whose data was purged (``-`` is no base64 character).
INLINE_PURGED = INLINE_PREFIX + "-"
#: The largest encoded output kept inline (its reference: 4/3 of it in base64, plus the prefix).
INLINE_MAX_BYTES = 3 * 1024


def too_many_partitions(rows_per_partition: int) -> NodeError:
    """The (permanent) error of an output cut into more than ``MAX_PARTITIONS`` partitions."""
    return NodeError(
        f"the output has more than {MAX_PARTITIONS} partitions of {rows_per_partition} rows: "
        "raise partition_rows",
        permanent=True,
    )


def flow_data_storage() -> Storage:
    """The storage configured as ``STORAGES['flowdata']`` (local directory or S3)."""
    return storages["flowdata"]


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


def output_name(run_id: str, node_key: str, partition: int | None = None) -> str:
    suffix = f".p{partition:05d}" if partition is not None else ""
    return f"{run_prefix(run_id)}/{node_key}{suffix}.msgpack"


def manifest_name(run_id: str, node_key: str) -> str:
    return f"{run_prefix(run_id)}/{node_key}{MANIFEST_SUFFIX}"


def slice_name(run_id: str, node_key: str, partition: int) -> str:
    """Where a rereadable source's slice of one partition and its pins are kept."""
    return f"{run_prefix(run_id)}/{node_key}.p{partition:05d}{SLICE_SUFFIX}"


def partial_name(run_id: str, node_key: str, partition: int) -> str:
    """Where a combinable node's partial state of one partition is kept (decision 0037)."""
    return f"{run_prefix(run_id)}/{node_key}.partial-{partition:05d}.msgpack"


def write_bytes(name: str, data: bytes, storage: Storage | None = None) -> None:
    """Store ``data`` under ``name``, replacing what a previous delivery stored there."""
    storage = storage or flow_data_storage()
    _clear(storage, name)
    storage.save(name, ContentFile(data, name=name))


def read_bytes(name: str, storage: Storage | None = None) -> bytes:
    storage = storage or flow_data_storage()
    with storage.open(name, "rb") as handle:
        return bytes(handle.read())


class BatchWriter:
    """Encodes batches into a spool as they come, then saves the spool to ``name`` on close."""

    def __init__(
        self, name: str, storage: Storage | None = None, spool_bytes: int = SPOOL_MAX_BYTES
    ) -> None:
        self.name = name
        self.storage = storage or flow_data_storage()
        self.rows = 0
        #: Whether :meth:`save` has stored it.
        self.saved = False
        self._pack = packer()
        self._spool = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115

    def write(self, batch: AnyBatch) -> None:
        if batch:
            self._spool.write(encode_batch(batch, self._pack))
            self.rows += len(batch)

    def inline(self, max_bytes: int = INLINE_MAX_BYTES) -> str | None:
        """What was written as an inline reference (closing the writer), when it is at most
        ``max_bytes`` encoded; ``None`` (and nothing changed) otherwise."""
        if self._spool.tell() > max_bytes:
            return None
        self._spool.seek(0)
        data = self._spool.read()
        self.close()
        return INLINE_PREFIX + base64.b64encode(data).decode("ascii")

    def save(self) -> int:
        """Store what was written (replacing any earlier object); returns the row count."""
        self._spool.seek(0)
        _clear(self.storage, self.name)
        self.storage.save(self.name, File(self._spool, name=self.name))
        self.saved = True
        self.close()
        return self.rows

    def close(self) -> None:
        self._spool.close()


class SliceWriter:
    """In place of a :class:`BatchWriter` for a rereadable source's partition: counts the rows
    and, on save, stores the slice and the pins its reading filled in (``pins``), not the
    records."""

    def __init__(self, name: str, slice_: Any, storage: Storage | None = None) -> None:
        self.name = name
        self.slice = slice_
        self.storage = storage or flow_data_storage()
        self.pins: dict[str, str] = {}
        self.rows = 0
        self.saved = False

    def write(self, batch: AnyBatch) -> None:
        self.rows += len(batch)

    def save(self) -> int:
        body = json.dumps({"slice": self.slice, "pins": self.pins}).encode()
        write_bytes(self.name, body, self.storage)
        self.saved = True
        return self.rows

    def close(self) -> None:
        pass


def _clear(storage: Storage, name: str) -> None:
    """Make room for ``name`` unless the storage overwrites on save (ours are set to)."""
    if getattr(storage, "allow_overwrite", False) or getattr(storage, "file_overwrite", False):
        return
    if storage.exists(name):
        storage.delete(name)


def write_batches(name: str, batches: Iterable[AnyBatch], storage: Storage | None = None) -> int:
    """Encode ``batches`` to ``name``, replacing any earlier output; returns the row count."""
    writer = BatchWriter(name, storage)
    try:
        for batch in batches:
            writer.write(batch)
        return writer.save()
    finally:
        writer.close()


def write_output(
    name: str, batches: Iterable[AnyBatch], storage: Storage | None = None
) -> tuple[str, int]:
    """Encode a node's whole output: kept inline when it is small (its reference carries it,
    nothing is stored), else stored at ``name`` as :func:`write_batches` does. Returns the
    output reference and the row count.

    A small output never replaces an object an earlier delivery stored at ``name``: nothing
    reads that object once the node run's reference is inline."""
    writer = BatchWriter(name, storage)
    try:
        for batch in batches:
            writer.write(batch)
        ref = writer.inline()
        if ref is not None:
            return ref, writer.rows
        return name, writer.save()
    finally:
        writer.close()


def is_inline(ref: str) -> bool:
    """Whether an output reference carries its output (:func:`write_output`)."""
    return ref.startswith(INLINE_PREFIX)


def _read_inline(ref: str) -> Iterator[AnyBatch]:
    if ref == INLINE_PURGED:
        raise FileNotFoundError("the output was purged with the run's data")
    yield from decode_stream(io.BytesIO(base64.b64decode(ref[len(INLINE_PREFIX) :])))


def read_batches(name: str, storage: Storage | None = None) -> Iterator[AnyBatch]:
    """Stream the batches stored at ``name`` (or carried by an inline reference)."""
    if is_inline(name):
        yield from _read_inline(name)
        return
    storage = storage or flow_data_storage()
    with storage.open(name, "rb") as stream:
        yield from decode_stream(stream)


@dataclass(frozen=True)
class Part:
    """One partition of a node's output: where it is and the rows that made it."""

    name: str
    rows_in: int = 0
    rows_out: int = 0


def write_manifest(
    name: str,
    parts: list[Part],
    storage: Storage | None = None,
    derived_from: dict[str, Any] | None = None,
    reread: dict[str, Any] | None = None,
) -> str:
    """Store the ordered list of a partitioned output's objects; returns ``name``.

    ``derived_from`` (a :func:`~flows.engine.partitions.derivation`): the output was not
    stored but is recomputed when read, by running that pure node over that input again.
    ``reread`` (``{"key", "type", "config"}`` of a rereadable source): each part is a slice
    with its pins (:class:`SliceWriter`), read again by that source when the output is read.
    """
    storage = storage or flow_data_storage()
    manifest: dict[str, Any] = {"partitions": [asdict(part) for part in parts]}
    if derived_from is not None:
        manifest["derived_from"] = derived_from
    if reread is not None:
        manifest["reread"] = reread
    body = json.dumps(manifest).encode()
    _clear(storage, name)
    storage.save(name, ContentFile(body, name=name))
    return name


def read_manifest(name: str, storage: Storage | None = None) -> list[Part]:
    return [Part(**part) for part in _manifest(name, storage)["partitions"]]


def _manifest(name: str, storage: Storage | None = None) -> dict[str, Any]:
    storage = storage or flow_data_storage()
    with storage.open(name, "rb") as stream:
        return json.load(stream)  # type: ignore[no-any-return]


def write_partitions(
    run_id: str,
    node_key: str,
    batches: Iterable[AnyBatch],
    rows_per_partition: int,
    on_partition: Callable[[int, Part], None] | None = None,
    storage: Storage | None = None,
) -> list[Part]:
    """Cut a stream into objects of ``rows_per_partition`` rows (at least one, maybe empty).

    ``on_partition(index, part)`` is called as soon as each partition is stored, so work on it
    can start while the stream goes on.
    """
    storage = storage or flow_data_storage()
    parts: list[Part] = []
    writer: BatchWriter | None = None

    def close(current: BatchWriter) -> None:
        part = Part(current.name, rows_out=current.save())
        parts.append(part)
        if on_partition is not None:
            on_partition(len(parts) - 1, part)

    try:
        for batch in batches:
            start = 0
            while start < len(batch):
                if writer is None:
                    if len(parts) >= MAX_PARTITIONS:
                        raise too_many_partitions(rows_per_partition)
                    writer = BatchWriter(output_name(run_id, node_key, len(parts)), storage)
                take = min(rows_per_partition - writer.rows, len(batch) - start)
                writer.write(batch if take == len(batch) else batch[start : start + take])
                start += take
                if writer.rows >= rows_per_partition:
                    close(writer)
                    writer = None
        if writer is not None or not parts:
            close(writer or BatchWriter(output_name(run_id, node_key, 0), storage))
            writer = None
    finally:
        if writer is not None:
            writer.close()
    return parts


# --- outputs per port ------------------------------------------------------------------------
def port_output_name(run_id: str, node_key: str, port: str, partition: int | None = None) -> str:
    """A port's object (of one partition, for a node run partition by partition)."""
    suffix = f".p{partition:05d}" if partition is not None else ""
    return f"{run_prefix(run_id)}/{node_key}.port-{port}{suffix}.msgpack"


def port_manifest_name(run_id: str, node_key: str, port: str) -> str:
    """The partitions manifest of one port of a node run partition by partition."""
    return f"{run_prefix(run_id)}/{node_key}.port-{port}{MANIFEST_SUFFIX}"


def ports_manifest_name(run_id: str, node_key: str) -> str:
    return f"{run_prefix(run_id)}/{node_key}{PORTS_SUFFIX}"


def write_ports(
    run_id: str,
    node_key: str,
    ports: list[str],
    items: Iterable[Output],
    storage: Storage | None = None,
) -> tuple[str, dict[str, int]]:
    """Store a node's output port by port: each :class:`PortBatch` to its port's object (a port
    that got no batch is stored empty: the nodes it feeds run on zero records). Returns the
    ports manifest's name (the output reference) and the rows of each port."""
    storage = storage or flow_data_storage()
    # The ports share one spool's worth of memory (at least 1 MiB each) before disk.
    spool = max(SPOOL_MAX_BYTES // max(len(ports), 1), 1024 * 1024)
    writers = {
        port: BatchWriter(port_output_name(run_id, node_key, port), storage, spool)
        for port in ports
    }
    try:
        for item in items:
            if not isinstance(item, PortBatch) or item.port not in writers:
                raise not_a_port(item, ports)
            writers[item.port].write(item.batch)
        rows = {port: writer.save() for port, writer in writers.items()}
    finally:
        for writer in writers.values():
            writer.close()
    refs = {port: (writers[port].name, rows[port]) for port in ports}
    return write_ports_manifest(run_id, node_key, refs, storage), rows


def write_ports_manifest(
    run_id: str, node_key: str, ports: dict[str, tuple[str, int]], storage: Storage | None = None
) -> str:
    """The ports manifest of a node's output (``{port: (reference, rows)}``, in port order);
    returns its name, the node's output reference. A port's reference may be a partitions
    manifest (a node run partition by partition)."""
    storage = storage or flow_data_storage()
    manifest = {"ports": {port: {"ref": ref, "rows": rows} for port, (ref, rows) in ports.items()}}
    name = ports_manifest_name(run_id, node_key)
    _clear(storage, name)
    storage.save(name, ContentFile(json.dumps(manifest).encode(), name=name))
    return name


def not_a_port(item: Any, ports: Iterable[str]) -> NodeError:
    """The error of a node that sent a batch to no port, or to one it does not have."""
    where = item.port if isinstance(item, PortBatch) else "no port"
    return NodeError(
        f"the node sent a batch to {where!r}, not one of its ports ({', '.join(ports)})",
        permanent=True,
    )


def port_ref(ref: str, port: str, storage: Storage | None = None) -> str:
    """The output of port ``port`` of the node whose output reference is ``ref``: ``ref``
    itself for a node with one output, else that port's object in the ports manifest."""
    if not ref.endswith(PORTS_SUFFIX):
        return ref
    entry = _manifest(ref, storage)["ports"].get(port)
    if entry is None:
        raise NodeError(f"the upstream output has no port '{port}'", permanent=True)
    return str(entry["ref"])


def read_output(ref: str, storage: Storage | None = None) -> Iterator[AnyBatch]:
    """Stream every batch of an output reference, partition after partition (a derived output
    is recomputed from its input; an output kept per port is read port after port)."""
    storage = storage or flow_data_storage()
    if ref.endswith(PORTS_SUFFIX):
        for entry in _manifest(ref, storage)["ports"].values():
            yield from read_output(entry["ref"], storage)
        return
    if ref.endswith(MANIFEST_SUFFIX):
        manifest = _manifest(ref, storage)
        if (recipe := manifest.get("derived_from")) is not None:
            yield from _recompute(recipe, storage)
            return
        names = [part["name"] for part in manifest["partitions"]]
        if (source := manifest.get("reread")) is not None:
            yield from _reread(source, names, storage)
            return
    else:
        names = [ref]
    for name in names:
        yield from read_batches(name, storage)


def first_records(ref: str, limit: int, storage: Storage | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` records of an output reference, reading no further than needed.
    Raises ``FileNotFoundError`` (or the storage's own error) once the run's data is purged."""
    from nodes.sdk.node import as_records

    records: list[dict[str, Any]] = []
    batches = read_output(ref, storage)
    try:
        for batch in batches:
            records.extend(as_records(batch)[: limit - len(records)])
            if len(records) >= limit:
                break
    finally:
        batches.close()
    return records


def _recompute(recipe: dict[str, Any], storage: Storage) -> Iterator[AnyBatch]:
    from nodes.registry import registry
    from nodes.sdk import ExecutionContext

    node = registry.require(recipe["type"])(recipe["config"])
    context = ExecutionContext(node_key=recipe["key"], storage=storage)
    yield from node.run(context, {recipe["port"]: read_output(recipe["input"], storage)})


def _reread(source: dict[str, Any], names: list[str], storage: Storage) -> Iterator[AnyBatch]:
    """A rereadable source's output: each stored slice read again, only in the versions its
    pins name (a permanent NodeError when the data changed since)."""
    from nodes.models import lookup_connection
    from nodes.registry import registry
    from nodes.sdk import ExecutionContext, capabilities

    cls = registry.require(source["type"])
    if not capabilities.is_rereadable(cls):
        raise NodeError(
            f"node type '{source['type']}' cannot read its slices again", permanent=True
        )
    node = cast(capabilities.Rereadable, cls(source["config"]))
    context = ExecutionContext(
        node_key=source["key"], storage=storage, connection_lookup=lookup_connection
    )
    for name in names:
        piece = json.loads(read_bytes(name, storage))
        yield from node.read_pinned(context, piece["slice"], piece["pins"])


def delete_run_data(run_id: str, storage: Storage | None = None) -> int:
    """Remove every object a run wrote; returns how many were removed."""
    storage = storage or flow_data_storage()
    prefix = run_prefix(run_id)
    try:
        _dirs, files = storage.listdir(prefix)
    except FileNotFoundError:
        return 0
    for filename in files:
        storage.delete(f"{prefix}/{filename}")
    _remove_empty_directory(storage, prefix)
    return len(files)


def _remove_empty_directory(storage: Storage, prefix: str) -> None:
    # Object stores have no directories; a local storage keeps an empty one behind.
    try:
        path = storage.path(prefix)
    except NotImplementedError:
        return
    with contextlib.suppress(OSError):  # already gone, or not empty: the run writes again
        os.rmdir(path)
