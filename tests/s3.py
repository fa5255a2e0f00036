"""Moto's S3 server in server mode on loopback (a real HTTP endpoint, reachable from the test
process and from the worker processes alike), a client of it and a fresh bucket per test.

Loaded for every test by ``tests/conftest.py``: ask for ``s3_endpoint``, ``s3`` or ``bucket``.
Moto accepts any credentials; connection URLs in the tests use ``testing:testing``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The server's URL (one server for the session; each test has buckets of its own)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A boto3 S3 client of the server."""
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **CREDENTIALS)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A new, empty bucket's name."""
    name = f"bucket-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name
