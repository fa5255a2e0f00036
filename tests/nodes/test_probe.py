"""Test connection against real peers on loopback: the outcome never shows a secret."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from nodes.probe import probe
from tests.flows.helpers import add_connection

pytestmark = pytest.mark.django_db

TOKEN = "s3cr3t-probe-token-0123456789abcdef"


def echo_authorization(request: Request) -> Response:
    # The reason phrase carries what the client sent.
    return Response(status=f"403 echo {request.headers.get('Authorization', '')}")


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_a_reason_phrase_echoing_the_authorization_header_is_redacted(
    httpserver: HTTPServer, method: str
) -> None:
    if method == "GET":  # HEAD refused: the probe falls back to GET
        httpserver.expect_request("/", method="HEAD").respond_with_data("", status=405)
    httpserver.expect_request("/", method=method).respond_with_handler(echo_authorization)
    connection = add_connection(
        "echo", httpserver.url_for("/"), {"Authorization": f"Bearer {TOKEN}"}
    )
    result = probe(connection)
    assert not result.ok
    assert result.message.startswith("HTTP 403 echo ")
    assert "***" in result.message
    for i in range(len(TOKEN) - 8 + 1):
        assert TOKEN[i : i + 8] not in result.message


def test_a_basic_token_in_the_reason_phrase_is_redacted(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/", method="HEAD").respond_with_handler(echo_authorization)
    url = httpserver.url_for("/").replace("://", f"://reader:{TOKEN}@")
    result = probe(add_connection("basic", url))
    basic = result.message.removeprefix("HTTP 403 echo ")
    assert basic.startswith("Basic ***") or basic == "***", result.message
    assert TOKEN[:8] not in result.message


def test_a_long_reason_phrase_is_cut(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/", method="HEAD").respond_with_response(
        Response(status="403 " + "x" * 1000)
    )
    result = probe(add_connection("long", httpserver.url_for("/")))
    assert len(result.message) == 200 and not result.ok
