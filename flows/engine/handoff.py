"""Claim-check hand-off: node outputs live in flow-data storage, messages carry only names.

Writes go to a local spooled temporary file first and are saved to the storage in one piece
(multipart for S3), so memory stays bounded by the batch size, and a re-run of the same node
overwrites the same name: redelivery writes the same output.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.files import File
from django.core.files.storage import Storage, storages

from flows.engine.codec import decode_stream, packer

SPOOL_MAX_BYTES = 8 * 1024 * 1024


def flow_data_storage() -> Storage:
    """The storage configured as ``STORAGES['flowdata']`` (local directory or S3)."""
    return storages["flowdata"]


def output_name(run_id: str, node_key: str, partition: int | None = None) -> str:
    suffix = f".p{partition:05d}" if partition is not None else ""
    return f"runs/{run_id}/{node_key}{suffix}.msgpack"


def write_batches(
    name: str, batches: Iterable[list[dict[str, Any]]], storage: Storage | None = None
) -> int:
    """Encode ``batches`` to ``name``, replacing any earlier output; returns the row count."""
    storage = storage or flow_data_storage()
    pack = packer()
    rows = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
        for batch in batches:
            if batch:
                spool.write(pack.pack(batch))
                rows += len(batch)
        spool.seek(0)
        if storage.exists(name):
            storage.delete(name)
        storage.save(name, File(spool, name=name))
    return rows


def read_batches(name: str, storage: Storage | None = None) -> Iterator[list[dict[str, Any]]]:
    """Stream the batches stored at ``name``."""
    storage = storage or flow_data_storage()
    with storage.open(name, "rb") as stream:
        yield from decode_stream(stream)


def delete_run_data(run_id: str, storage: Storage | None = None) -> int:
    """Remove every object a run wrote; returns how many were removed."""
    storage = storage or flow_data_storage()
    prefix = f"runs/{run_id}"
    try:
        _dirs, files = storage.listdir(prefix)
    except FileNotFoundError:
        return 0
    for filename in files:
        storage.delete(f"{prefix}/{filename}")
    return len(files)
