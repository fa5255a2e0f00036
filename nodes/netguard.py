"""Outbound HTTP guard: which addresses a node may reach.

Two layers, both needed:

- :func:`check_url` before a request (and before every redirect hop): http(s) only, and every
  address the host resolves to must be allowed. Gives clear errors early.
- :class:`GuardedSession` also checks the address each socket *actually* connected to, which
  defeats DNS rebinding (a name that resolves differently the second time). It ignores proxy
  and ``.netrc`` settings from the environment, since a proxy would hide the real peer.

Link-local and cloud metadata addresses are always refused. Private, loopback, reserved,
multicast and other non-global addresses are refused unless ``allow_private`` is set (the
``FLOWPLATFORM_HTTP_ALLOW_PRIVATE`` setting; dev and tests allow them).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from nodes.sdk.errors import NodeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata endpoints outside the link-local ranges (AWS IPv6, Alibaba Cloud).
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)


def refusal(address: str, allow_private: bool) -> str | None:
    """Why ``address`` may not be reached, or ``None`` when it may."""
    ip: IPAddress = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip in METADATA_ADDRESSES:
        return "a link-local or metadata address"
    if not allow_private and (not ip.is_global or ip.is_multicast):
        return "a private, loopback or reserved address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (a seam for tests)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def check_url(url: str, allow_private: bool) -> None:
    """Raise a permanent :class:`NodeError` unless ``url`` is http(s) to an allowed host.

    A host that does not resolve raises a non-permanent error (DNS may recover).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise NodeError(
            f"only http and https URLs are allowed, not '{parts.scheme}'", permanent=True
        )
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise NodeError("the URL has an invalid port", permanent=True) from None
    if not host:
        raise NodeError("the URL has no host", permanent=True)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError):
        raise NodeError(f"cannot resolve host '{host}'", permanent=False) from None
    for address in addresses:
        if reason := refusal(address, allow_private):
            raise NodeError(f"host '{host}' resolves to {address}, {reason}", permanent=True)


def _check_peer(sock: socket.socket, host: str, allow_private: bool) -> None:
    address = sock.getpeername()[0]
    if reason := refusal(address, allow_private):
        sock.close()
        raise NodeError(f"host '{host}' connected to {address}, {reason}", permanent=True)


class _GuardedHTTPConnection(HTTPConnection):
    allow_private = False

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host, self.allow_private)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    allow_private = False

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host, self.allow_private)
        return sock


@cache
def _pool_classes(allow_private: bool) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose connections check their peer with the given policy."""
    flag = {"allow_private": allow_private}
    http = type("GuardedHTTPConnection", (_GuardedHTTPConnection,), flag)
    https = type("GuardedHTTPSConnection", (_GuardedHTTPSConnection,), flag)
    return {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, allow_private: bool, **kwargs: Any) -> None:
        self.allow_private = allow_private
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.allow_private)


class GuardedSession(requests.Session):
    """A session that checks every request URL (redirect hops included) and every peer."""

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private
        self.trust_env = False  # no environment proxies or .netrc: the checked peer is the peer
        self.max_redirects = 5
        for prefix in ("http://", "https://"):
            self.mount(prefix, _GuardedAdapter(allow_private))

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        check_url(request.url or "", self.allow_private)
        return super().send(request, **kwargs)
