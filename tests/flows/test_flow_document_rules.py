"""One set of rules for a flow document, wherever it arrives: the admin's import page,
``importflow`` and the API refuse the same bad documents for the same reason — never a 500 or
a traceback — and change nothing. The admin's import also stops reading an oversized upload."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, FakePayload, encode_multipart
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.models import Flow

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

IMPORT = "admin:flows_flow_import"


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def document(flow: dict[str, Any], case: str) -> bytes:
    """The minimal flow file, spoilt as ``case`` says."""
    bad = copy.deepcopy(flow)
    if case == "brackets":
        return b"[" * 100_000 + b"]" * 100_000
    if case == "nul-in-name":
        bad["name"] = "Paid\x00orders"
    elif case == "nul-in-value":
        bad["nodes"][1]["config"]["conditions"][0]["value"] = "pa\x00id"
    elif case == "nul-in-key":
        bad["nodes"][2]["config"]["mapping"]["order\x00id"] = "id"
    elif case == "deep-value":
        bad["nodes"][1]["config"]["conditions"][0]["value"] = nested(70)
    elif case == "huge-integer":
        bad["nodes"][3]["config"]["batch_size"] = 2**70
    return json.dumps(bad).encode()


# (case, the reason every surface gives)
CASES = [
    ("brackets", "JSON nested deeper than 64 levels"),
    ("nul-in-name", "name: must not contain NUL characters"),
    ("nul-in-value", "nodes[1].config.conditions[0].value: must not contain NUL characters"),
    ("nul-in-key", "nodes[2].config.mapping.order\x00id: keys must not contain NUL characters"),
    ("deep-value", "nodes[1].config.conditions[0].value[0][0][0]"),
    ("huge-integer", "nodes[3].config.batch_size: integer out of range (must fit in 64 bits)"),
]
IDS = [case for case, _ in CASES]


@pytest.mark.parametrize(("case", "reason"), CASES, ids=IDS)
def test_admin_import_refuses_with_the_reason(
    admin_client: Client, minimal_flow: dict[str, Any], case: str, reason: str
) -> None:
    admin_client.raise_request_exception = False
    body = io.BytesIO(document(minimal_flow, case))
    body.name = "flow.json"
    response = admin_client.post(reverse(IMPORT), {"file": body})
    assert response.status_code == 200
    errors = response.context["form"].errors["file"]
    assert errors[0].startswith(reason), errors
    assert Flow.objects.count() == 0


@pytest.mark.parametrize(("case", "reason"), CASES, ids=IDS)
def test_importflow_refuses_in_one_line(
    tmp_path: Path, minimal_flow: dict[str, Any], case: str, reason: str
) -> None:
    path = tmp_path / "flow.json"
    path.write_bytes(document(minimal_flow, case))
    with pytest.raises(CommandError) as caught:
        call_command("importflow", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    message = str(caught.value)
    assert message.startswith(f"{path}: {reason}"), message
    assert "\n" not in message
    assert Flow.objects.count() == 0


@pytest.mark.parametrize(("case", "reason"), CASES, ids=IDS)
def test_api_refuses_with_the_same_reason(
    admin_user: User, minimal_flow: dict[str, Any], case: str, reason: str
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    body = document(minimal_flow, case)
    response = client.generic("POST", "/api/v1/flows/", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    line = f"{error['path']}: {error['message']}" if error["path"] else error["message"]
    assert line.startswith(reason), line
    assert Flow.objects.count() == 0


def test_importflow_refuses_a_path_with_a_nul_character() -> None:
    with pytest.raises(CommandError, match="cannot read file"):
        call_command("importflow", "flow\x00.json", stdout=io.StringIO(), stderr=io.StringIO())


# --- size: checked while reading -------------------------------------------------------------


class CountingPayload(FakePayload):
    """The request body as the server hands it over, counting what the platform reads."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:
        line = super().readline(size)
        self.bytes_read += len(line)
        return line


def post_upload(client: Client, content: bytes, **fields: str) -> tuple[Any, CountingPayload]:
    upload = io.BytesIO(content)
    upload.name = "flow.json"
    body = encode_multipart(BOUNDARY, {**fields, "file": upload})
    payload = CountingPayload(body)
    response = client.generic(
        "POST",
        reverse(IMPORT),
        b"",  # the body comes from wsgi.input, as a server hands it over
        CONTENT_TYPE=MULTIPART_CONTENT,
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": payload},
    )
    return response, payload


def test_an_oversized_upload_is_refused_after_reading_about_the_limit(
    admin_client: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    twenty_mb = b" " * (20 * 1024 * 1024)
    response, payload = post_upload(admin_client, b"{}" + twenty_mb)
    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [
        "the file is larger than the limit of 100000 bytes"
    ]
    # The limit plus a chunk or two of the multipart stream, not the 20 MB.
    assert payload.bytes_read < 400_000, payload.bytes_read
    assert Flow.objects.count() == 0


def test_a_file_within_the_limit_imports(
    admin_client: Client, settings: Any, minimal_flow: dict[str, Any]
) -> None:
    content = json.dumps(minimal_flow).encode()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(content)
    response, _ = post_upload(admin_client, content)
    assert response.status_code == 302
    assert Flow.objects.filter(slug=minimal_flow["slug"]).exists()


def test_importflow_refuses_a_file_over_the_limit(
    tmp_path: Path, settings: Any, minimal_flow: dict[str, Any]
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(minimal_flow) + " " * 5000)
    with pytest.raises(CommandError, match=r"flow\.json: larger than the limit of 1000 bytes$"):
        call_command("importflow", str(path), stdout=io.StringIO(), stderr=io.StringIO())


def test_import_page_still_checks_csrf(admin_user: User, minimal_flow: dict[str, Any]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    refused, _ = post_upload(client, json.dumps(minimal_flow).encode())
    assert refused.status_code == 403
    page = client.get(reverse(IMPORT))
    token = page.context["csrf_token"]
    client.cookies["csrftoken"] = page.cookies["csrftoken"].value
    accepted, _ = post_upload(client, json.dumps(minimal_flow).encode(), csrfmiddlewaretoken=token)
    assert accepted.status_code == 302
    assert Flow.objects.count() == 1
