"""Delivering a JSON body over HTTP for ``http_post``: redirects, retries, backoff.

Retries cover 429, 5xx and network errors, with exponential backoff and full jitter (or the
server's ``Retry-After``), both capped. Other 4xx answers fail at once: retrying cannot help.
Redirects (301/302/307/308) are followed by hand, re-sending the POST, for at most five hops;
every hop goes through the :class:`~nodes.netguard.GuardedSession` checks, and credentials
are dropped when a hop leaves the original origin. A 303 means the server took the POST.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import requests

from nodes.redaction import Redactor, basic_auth_secrets, header_secrets
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

_jitter = random.SystemRandom()


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
        return _jitter.uniform(0, min(self.backoff_max_s, self.backoff_s * 2**retry))


@dataclass
class Delivery:
    """POSTs bodies to one URL through one session.

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

    def _quote(self, response: requests.Response) -> str:
        """The start of the peer's answer, for an error: redacted first, then cut."""
        credentials = [v for k, v in self.headers.items() if k.lower() in CREDENTIAL_HEADERS]
        self.redactor.add(header_secrets([*self.credentials.values(), *credentials]))
        self.redactor.add(basic_auth_secrets(*self.auth) if self.auth else ())
        return self.redactor.cut(response.text, QUOTED_CHARS)

    def post(self, body: bytes, extra_headers: dict[str, str]) -> tuple[int, int]:
        """Deliver ``body``; returns (final status, attempts). Raises :class:`NodeError`."""
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
                response = self._post_following_redirects(body, extra_headers)
            except NETWORK_ERRORS as exc:
                problem = _network_problem(exc)
                continue
            except requests.RequestException as exc:
                raise NodeError(f"request failed: {type(exc).__name__}", permanent=True) from None
            status = response.status_code
            if 200 <= status < 300 or status == 303:
                return status, attempt + 1
            if status == 429 or status >= 500:
                problem, retry_after = (
                    _answer(status, self._quote(response)),
                    _retry_after(response),
                )
                continue
            raise NodeError(_answer(status, self._quote(response)), permanent=True)
        raise NodeError(
            f"gave up after {self.policy.max_retries + 1} attempts, last: {problem}",
            permanent=False,
        )

    def _post_following_redirects(
        self, body: bytes, extra_headers: dict[str, str]
    ) -> requests.Response:
        url, origin = self.url, _origin(self.url)
        for _ in range(MAX_REDIRECTS + 1):
            trusted = _origin(url) == origin
            response = self.session.post(
                url,
                data=body,
                headers=self._headers(trusted) | extra_headers,
                auth=self.auth if trusted else None,
                timeout=self.timeout_s,
                allow_redirects=False,
            )
            location = response.headers.get("Location")
            if response.status_code not in REDIRECTS or not location:
                return response
            response.close()
            url = urljoin(url, location)
        raise NodeError(f"more than {MAX_REDIRECTS} redirects", permanent=True)

    def _headers(self, trusted: bool) -> dict[str, str]:
        if trusted:
            return self.credentials | self.headers
        return {k: v for k, v in self.headers.items() if k.lower() not in CREDENTIAL_HEADERS}


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
