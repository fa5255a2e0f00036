"""Test a connection: can the platform reach it with the credentials it holds?

Databases run ``select 1`` through the same driver code as ``sql_query``; HTTP endpoints get a
HEAD (or GET when HEAD is refused) on the base URL through the outbound-HTTP guard; file
connections list their directory or one key of their bucket prefix. The outcome never
contains the URL's secret parts or header values: every message, the peer's reason phrase
included, passes through the connection's redactor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from django.conf import settings

from nodes.builtin.sql_query import BACKENDS
from nodes.filestore import FILE_SCHEMES, open_store
from nodes.models import Connection
from nodes.netguard import GuardedSession
from nodes.redaction import Redactor
from nodes.sdk.errors import NodeError

TIMEOUT_S = 5.0
#: The longest message shown (characters, after redaction).
MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str


def probe(connection: Connection) -> ProbeResult:
    """Try the connection once, with a short timeout."""
    info = connection.info()
    redactor = Redactor()
    redactor.add_connection(info)
    started = time.monotonic()
    try:
        if info.scheme in BACKENDS:
            detail = _probe_database(info.scheme, info.url)
        elif info.scheme in FILE_SCHEMES:
            detail = True, open_store(info.url).probe()
        else:
            detail = _probe_http(info.url, dict(info.headers))
    except NodeError as exc:
        return _result(False, str(exc).replace(info.url, "***"), redactor)
    except requests.RequestException as exc:
        text = f"{type(exc).__name__}: {_first_line(exc)}".replace(info.url, "***")
        return _result(False, text, redactor)
    took_ms = (time.monotonic() - started) * 1000
    return _result(detail[0], f"{detail[1]} in {took_ms:.0f} ms", redactor)


def _result(ok: bool, text: str, redactor: Redactor) -> ProbeResult:
    # Every message is redacted, then cut: a peer's reason phrase may echo what it was sent.
    return ProbeResult(ok, redactor.cut(text, MESSAGE_LIMIT))


def _probe_database(scheme: str, url: str) -> tuple[bool, str]:
    rows = BACKENDS[scheme](
        url,
        "select 1 as ok",
        None,
        batch_size=1,
        timeout_s=TIMEOUT_S,
        is_cancelled=lambda: False,
    )
    for _batch in rows:
        pass
    return True, "connected, select 1 answered"


def _probe_http(url: str, headers: dict[str, str]) -> tuple[bool, str]:
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))
    auth = (
        (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else None
    )
    allow_private = bool(getattr(settings, "FLOWPLATFORM_HTTP_ALLOW_PRIVATE", False))
    with GuardedSession(allow_private=allow_private) as session:
        # No redirects: connection headers must never follow one to another host.
        response = session.head(
            base or url, headers=headers, auth=auth, timeout=TIMEOUT_S, allow_redirects=False
        )
        if response.status_code in (405, 501):
            response = session.get(
                base,
                headers=headers,
                auth=auth,
                timeout=TIMEOUT_S,
                stream=True,
                allow_redirects=False,
            )
            response.close()
    ok = response.status_code < 400
    return ok, f"HTTP {response.status_code} {response.reason or ''}".rstrip()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
