"""HTTP requests for the HTTP nodes (``http_post``, ``http_request``): endpoint, redirects,
retries, backoff, rate limit.

Retries cover 429, 5xx and network errors, with exponential backoff and full jitter (or the
server's ``Retry-After``), both capped. Other 4xx answers fail at once: retrying cannot help.
Redirects (301/302/307/308) are followed by hand, re-sending the same request, for at most five
hops; every hop goes through the :class:`~nodes.netguard.GuardedSession` checks, and
credentials are dropped when a hop leaves the original origin. A 303 means the server took a
POST (``http_post``), or, for a read, that the answer is a GET away.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import requests
from django.conf import settings
from pydantic import Field
from requests import Response

from nodes.backoff import jittered_backoff
from nodes.netguard import GuardedSession
from nodes.redaction import Redactor, basic_auth_secrets, header_secrets
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 307, 308})
NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
# Headers that carry credentials even when set in a node's config.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: How much of a peer's answer an error quotes (after redaction).
QUOTED_CHARS = 200

# The config fields both HTTP nodes have (default, bounds and description), defined once.
TargetUrl = Annotated[
    str,
    Field(
        "",
        description="Absolute http(s) URL; with a connection, a path below its base URL "
        "(empty: the base URL itself).",
    ),
]
HttpConnection = Annotated[
    str | None,
    Field(None, description="Name of an HTTP connection: base URL, auth headers, basic auth."),
]
ExtraHeaders = Annotated[
    dict[str, str], Field(default_factory=dict, description="Extra request headers.")
]
TimeoutS = Annotated[
    float, Field(30, gt=0, description="Connect and read timeout per request, seconds.")
]
MaxRetries = Annotated[
    int, Field(5, ge=0, le=20, description="Retries on 429, 5xx and network errors.")
]
RetryBackoffS = Annotated[
    float,
    Field(1.0, ge=0, description="Base of the exponential backoff: up to base * 2**retry seconds."),
]
RetryBackoffMaxS = Annotated[
    float, Field(60, ge=0, description="Cap of one wait, Retry-After included, in seconds.")
]


def _sleep(delay: float, stop: threading.Event | None = None) -> None:
    """Wait ``delay`` seconds, or less once ``stop`` is set (module-level: tests observe it)."""
    if stop is None:
        time.sleep(delay)
    else:
        stop.wait(delay)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before trying again."""

    max_retries: int
    backoff_s: float
    backoff_max_s: float

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        return jittered_backoff(self.backoff_s, self.backoff_max_s, retry)


@dataclass
class Delivery:
    """Sends requests to one endpoint (``url``) through one session.

    ``credentials`` (connection headers) and ``auth`` are sent to the URL's origin only.
    A peer may echo what it was sent: the answers quoted in errors go through ``redactor``,
    which must know the connection (``ExecutionContext.redactor`` does); the credentials set
    here are added to it when the first answer is quoted.
    """

    session: requests.Session
    url: str
    policy: RetryPolicy
    timeout_s: float
    headers: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    is_cancelled: Callable[[], bool] = lambda: False
    #: Set when the sender must give up: ends a backoff wait at once.
    stop: threading.Event | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))
    redactor: Redactor = field(default_factory=Redactor)
    #: Least time between the starts of two requests (retries and redirect hops included).
    min_interval_s: float = 0.0
    _last_sent: float = field(default=-math.inf, init=False, repr=False)

    def quote(self, response: requests.Response) -> str:
        """The start of the peer's answer, for an error: redacted first, then cut."""
        credentials = [v for k, v in self.headers.items() if k.lower() in CREDENTIAL_HEADERS]
        self.redactor.add(header_secrets([*self.credentials.values(), *credentials]))
        self.redactor.add(basic_auth_secrets(*self.auth) if self.auth else ())
        return self.redactor.cut(response.text, QUOTED_CHARS)

    def post(self, body: bytes, extra_headers: dict[str, str]) -> tuple[int, int]:
        """Deliver ``body``; returns (final status, attempts). Raises :class:`NodeError`."""
        request = Request("POST", self.url, body=body, headers=extra_headers)
        response, attempts = self.send(request, see_other_is_done=True)
        response.close()
        return response.status_code, attempts

    def send(self, request: Request, see_other_is_done: bool = False) -> tuple[Response, int]:
        """Send ``request`` until it succeeds; returns (the 2xx answer, attempts).

        ``see_other_is_done``: a 303 is the answer (the server took a POST); otherwise it is
        followed with a GET. Raises :class:`NodeError`.
        """
        problem, retry_after = "", None
        for attempt in range(self.policy.max_retries + 1):
            if attempt:
                delay = self.policy.delay(attempt - 1, retry_after)
                self.logger.warning(
                    "attempt %d failed (%s); retrying in %.2f s", attempt, problem, delay
                )
                _sleep(delay, self.stop)
                if self.is_cancelled():
                    raise NodeError("cancelled", permanent=True)
            retry_after = None
            try:
                response = self._following_redirects(request, see_other_is_done)
            except NETWORK_ERRORS as exc:
                problem = _network_problem(exc)
                continue
            except requests.RequestException as exc:
                raise NodeError(f"request failed: {type(exc).__name__}", permanent=True) from None
            status = response.status_code
            if 200 <= status < 300 or (status == 303 and see_other_is_done):
                return response, attempt + 1
            if status == 429 or status >= 500:
                problem, retry_after = (
                    _answer(status, self.quote(response)),
                    _retry_after(response),
                )
                continue
            raise NodeError(_answer(status, self.quote(response)), permanent=True)
        raise NodeError(
            f"gave up after {self.policy.max_retries + 1} attempts, last: {problem}",
            permanent=False,
        )

    def _following_redirects(self, request: Request, see_other_is_done: bool) -> Response:
        origin = _origin(self.url)
        method, url, body, params = request.method, request.url, request.body, request.params
        for _ in range(MAX_REDIRECTS + 1):
            trusted = _origin(url) == origin
            self._throttle()
            response = self.session.request(
                method,
                url,
                params=params,
                data=body,
                headers=self._headers(trusted) | request.headers,
                auth=self.auth if trusted else None,
                timeout=self.timeout_s,
                allow_redirects=False,
            )
            location = response.headers.get("Location")
            see_other = response.status_code == 303 and not see_other_is_done
            if (response.status_code not in REDIRECTS and not see_other) or not location:
                return response
            response.close()
            url, params = urljoin(response.url, location), None  # the location has its query
            if see_other:
                method, body = "GET", None
        raise NodeError(f"more than {MAX_REDIRECTS} redirects", permanent=True)

    def _throttle(self) -> None:
        if self.min_interval_s > 0:
            wait = self._last_sent + self.min_interval_s - time.monotonic()
            if wait > 0:
                _sleep(wait, self.stop)
            self._last_sent = time.monotonic()

    def _headers(self, trusted: bool) -> dict[str, str]:
        if trusted:
            return self.credentials | self.headers
        return {k: v for k, v in self.headers.items() if k.lower() not in CREDENTIAL_HEADERS}


@dataclass(frozen=True)
class Request:
    """One request to send: ``params`` are added to the URL's query, ``headers`` to the
    delivery's own."""

    method: str
    url: str
    body: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def endpoint(
    delivery: Delivery, context: ExecutionContext, connection: str | None, url: str
) -> None:
    """Point ``delivery`` at ``url``: absolute, or, with a ``connection``, a path below the
    connection's base URL, whose headers and user info become the credentials."""
    delivery.url, delivery.credentials, delivery.auth = target(context, connection, url)


def target(
    context: ExecutionContext, connection: str | None, url: str
) -> tuple[str, dict[str, str], tuple[str, str] | None]:
    """The URL a node reaches (``url``, or a path below ``connection``'s base URL), the
    connection's headers and its basic auth (from the URL's user info), if any."""
    if not connection:
        return url, {}, None
    info = context.connection(connection)
    parts = urlsplit(info.url)
    base = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    full = f"{base.rstrip('/')}/{url.lstrip('/')}" if url else base
    auth = None
    if parts.username or parts.password:
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    return full, dict(info.headers), auth


def guarded_session() -> GuardedSession:
    """A session under the address policy (private addresses per
    ``FLOWPLATFORM_HTTP_ALLOW_PRIVATE``)."""
    allow_private = settings.configured and getattr(
        settings, "FLOWPLATFORM_HTTP_ALLOW_PRIVATE", False
    )
    return GuardedSession(allow_private=bool(allow_private))


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Config headers: single-line, and no credentials (flow configs are exported and
    versioned in clear: secrets live in connections). Raises ``ValueError``."""
    for name, value in headers.items():
        if not name or any(c in f"{name}{value}" for c in "\r\n\0"):
            raise ValueError(f"header '{name.strip()}' is empty or contains a line break")
        if name.lower() in CREDENTIAL_HEADERS:
            raise ValueError(f"header '{name}' carries credentials: put it in a connection")
    return headers


def check_url_fits(url: str, connection: str | None) -> None:
    """A config's ``url``: absolute http(s) without a connection, a path with one, never with
    credentials in it. Raises ``ValueError``."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ValueError("url: credentials belong in a connection, not in the url")
    if connection is None and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ValueError("url must be an absolute http(s) URL when no connection is set")
    if connection is not None and (parts.scheme or parts.netloc):
        raise ValueError("url must be a path below the connection's base URL")


def _answer(status: int, quoted: str) -> str:
    return f"HTTP {status}: {quoted}" if quoted.strip() else f"HTTP {status}"


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _retry_after(response: requests.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if usable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _network_problem(exc: BaseException) -> str:
    """A short description of a network error, without the URL that requests puts in it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return f"network error: {cause.strerror}"
        cause = cause.__cause__ or cause.__context__
    return f"network error: {type(exc).__name__}"
