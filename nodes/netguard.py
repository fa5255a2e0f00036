"""Outbound HTTP guard: which addresses a node may reach.

Two layers, both needed:

- :func:`check_url` before a request (and before every redirect hop): http(s) only, and every
  address the host resolves to must be allowed. Gives clear errors early.
- :class:`GuardedSession` also checks the address each socket *actually* connected to, which
  defeats DNS rebinding (a name that resolves differently the second time). It ignores proxy
  and ``.netrc`` settings from the environment, since a proxy would hide the real peer.

Link-local and cloud metadata addresses are always refused. Private, loopback, reserved,
multicast and other non-global addresses are refused unless ``allow_private`` is set (the
``FLOWPLATFORM_HTTP_ALLOW_PRIVATE`` setting; dev and tests allow them). An IPv6 address that
carries an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
IPv4-translated ``::ffff:0:a.b.c.d``, NAT64
``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo) is judged by that IPv4
address as well: a NAT64 gateway or 6to4 relay would deliver it there. The same policy guards
database hosts (:mod:`nodes.dbguard`).
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


#: Well-known NAT64 prefix (RFC 6052): the IPv4 address is the last 32 bits.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Local-use NAT64 prefix (RFC 8215): a network's own translator, never global.
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
#: IPv4-compatible addresses (deprecated, RFC 4291): ``::a.b.c.d``.
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
#: IPv4-translated addresses (SIIT, RFC 2765): ``::ffff:0:a.b.c.d``.
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and would reach through a translator)."""
    value = int(ip)
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip in NAT64 or ip in IPV4_TRANSLATED or (ip in IPV4_COMPATIBLE and value > 1):
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip in NAT64_LOCAL:
        # RFC 6052 /48 layout (bits 48-63 and 72-87, around the reserved octet) or the last 32.
        split = ((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF
        return [ipaddress.IPv4Address(split), ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)  # the relay server and the client
    return []


def refusal(address: str, allow_private: bool) -> str | None:
    """Why ``address`` may not be reached, or ``None`` when it may."""
    ip: IPAddress = ipaddress.ip_address(address)
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = embedded_ipv4(ip)
        # A mapped address is its IPv4 address; other forms are judged as both.
        candidates = [*embedded] if ip.ipv4_mapped else [ip, *embedded]
    if any(c.is_link_local or c in METADATA_ADDRESSES for c in candidates):
        return "a link-local or metadata address"
    if not allow_private and (
        any(not c.is_global or c.is_multicast or _site_local(c) for c in candidates)
        or ip in NAT64_LOCAL
    ):
        return "a private, loopback or reserved address"
    return None


def _site_local(ip: IPAddress) -> bool:
    # fec0::/10, deprecated (RFC 3879) but still routed inside some networks: private.
    return isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (in the resolver's order, without repeats)."""
    return list(dict.fromkeys(_resolve(host, port)))


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


def check_peer(sock: socket.socket, host: str, allow_private: bool) -> None:
    """Close ``sock`` and raise a permanent NodeError when the address it reached is refused."""
    address = sock.getpeername()[0]
    if reason := refusal(address, allow_private):
        sock.close()
        raise NodeError(f"host '{host}' connected to {address}, {reason}", permanent=True)


class _GuardedHTTPConnection(HTTPConnection):
    allow_private = False

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        check_peer(sock, self.host, self.allow_private)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    allow_private = False

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        check_peer(sock, self.host, self.allow_private)
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
