"""The outbound HTTP guard: address rules, URL checks, and the connect-time peer check."""

from __future__ import annotations

import re

import pytest
import requests
from pytest_httpserver import HTTPServer

from nodes import netguard
from nodes.netguard import GuardedSession, check_url, refusal
from nodes.sdk import NodeError

ALWAYS_REFUSED = [
    "169.254.169.254",
    "169.254.0.1",
    "fe80::1",
    "fd00:ec2::254",
    "::ffff:169.254.169.254",
    "100.100.100.200",
    # IPv6 forms that carry an IPv4 address are judged by it too.
    "::169.254.169.254",  # IPv4-compatible
    "::ffff:0:169.254.169.254",  # IPv4-translated (SIIT)
    "::ffff:0:a9fe:a9fe",
    "64:ff9b::169.254.169.254",  # NAT64, well-known prefix
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1:a9fe:a9:fe00::",  # NAT64, local-use prefix (RFC 6052 /48 layout)
    "2002:a9fe:a9fe::1",  # 6to4
    "2002:a9fe:a9fe:1234:5678::1",
    "64:ff9b::100.100.100.200",
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 (obfuscated)
]
PRIVATE = [
    "127.0.0.1",
    "::1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "0.0.0.0",
    "100.64.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "fc00::1",
    "::ffff:10.0.0.1",
    "::10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::10.0.0.1",
    "64:ff9b::127.0.0.1",
    "64:ff9b::192.168.1.1",
    "64:ff9b:1::8.8.8.8",  # local-use NAT64: a network's own translator
    "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
    "2002:7f00:0001::1",  # 6to4 of 127.0.0.1
    "::ffff:0:10.0.0.1",  # IPv4-translated
    "::ffff:0:127.0.0.1",
    "fec0::1",  # site-local (deprecated, still routed inside some networks)
    "feff:ffff::1",
]


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_link_local_and_metadata_addresses_are_always_refused(address: str) -> None:
    assert refusal(address, allow_private=True) == "a link-local or metadata address"
    assert refusal(address, allow_private=False) == "a link-local or metadata address"


@pytest.mark.parametrize("address", PRIVATE)
def test_private_addresses_are_refused_unless_allowed(address: str) -> None:
    assert refusal(address, allow_private=False) == "a private, loopback or reserved address"
    assert refusal(address, allow_private=True) is None


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "2606:2800:220:1::1",
        "8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:0808:0808::1",
        "::8.8.8.8",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(address, allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https URLs are allowed, not 'file'"),
        ("gopher://host/", "only http and https URLs are allowed, not 'gopher'"),
        ("http:///path", "the URL has no host"),
        ("http://host:99999/", "the URL has an invalid port"),
        ("http://169.254.169.254/latest/", "resolves to 169.254.169.254, a link-local"),
        ("http://[fd00:ec2::254]/", "a link-local or metadata address"),
        ("https://localhost/", "resolves to"),
        ("http://10.1.2.3:8080/", "a private, loopback or reserved address"),
    ],
)
def test_check_url_refuses_permanently(url: str, message: str) -> None:
    with pytest.raises(NodeError, match=message.replace("[", r"\[")) as caught:
        check_url(url, allow_private=False)
    assert caught.value.permanent


def test_check_url_refuses_a_host_if_any_of_its_addresses_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netguard, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(NodeError, match=re.escape("host 'crm.example' resolves to 10.0.0.7")):
        check_url("https://crm.example/ingest", allow_private=False)


def test_check_url_allows_public_and_allowed_private_hosts() -> None:
    check_url("https://93.184.216.34/ingest", allow_private=False)
    check_url("http://127.0.0.1:8000/ingest", allow_private=True)


def test_an_unresolvable_host_may_be_retried() -> None:
    with pytest.raises(
        NodeError, match=re.escape("cannot resolve host 'no-such-host.invalid'")
    ) as caught:
        check_url("http://no-such-host.invalid/", allow_private=False)
    assert not caught.value.permanent


def test_the_session_checks_each_redirect_hop(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/go").respond_with_data(
        "", 302, {"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    with GuardedSession(allow_private=True) as session, pytest.raises(NodeError, match=r"169\.254"):
        session.get(httpserver.url_for("/go"), timeout=5)
    assert len(httpserver.log) == 1


def test_the_session_checks_the_address_it_actually_connected_to(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the name looks public when checked, then connects to loopback.
    httpserver.expect_request("/").respond_with_data("ok")
    monkeypatch.setattr(netguard, "_resolve", lambda host, port: ["93.184.216.34"])
    url = httpserver.url_for("/").replace("localhost", "127.0.0.1")
    with (
        GuardedSession(allow_private=False) as session,
        pytest.raises(NodeError, match=r"connected to 127\.0\.0\.1") as caught,
    ):
        session.get(url, timeout=5)
    assert caught.value.permanent
    assert httpserver.log == []


def test_the_session_ignores_proxies_from_the_environment(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/").respond_with_data("direct")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with GuardedSession(allow_private=True) as session:
        assert session.get(httpserver.url_for("/"), timeout=5).text == "direct"
    assert requests.Session().trust_env  # only the guarded session opts out
