"""The run-end channel: a run's end is published on Redis, and whoever waits for it wakes at once.

The one state change that ends a run announces it (``flows.transitions.announce_finished``),
which calls :func:`publish` first: once the change has committed, the run's id goes out on its
own channel of the broker's Redis (``flowplatform:run-ended:<run id>``, one ``PUBLISH``).
A waiter (``wait_for_run``, ``runflow --wait``, a webhook answering ``"response": "wait"``)
opens a :class:`RunEndListener` *before* it reads the run's status, so an end committed
between its subscription and its read is still heard: no lost wake-up. A lost message (Redis
restarted, the ending process killed between its commit and its publish) costs one slow poll,
:data:`FALLBACK_POLL_S`; without a Redis broker (embedded mode) waiters poll every
:data:`POLL_S`.

Channels belong to the Redis server, not to one of its databases: deployments sharing a
server never hear each other's runs, whose ids are UUIDs.

Publishing never raises into the engine: a Redis that is down is logged, and the waiters find
the end by polling. PostgreSQL's LISTEN/NOTIFY is not used: a listener needs a session of its
own, which a pooler in transaction mode does not keep (decision 0032).
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger("flowplatform.engine")

CHANNEL_PREFIX = "flowplatform:run-ended:"
#: How often a waiter looks at the run's status anyway when it is subscribed, seconds.
FALLBACK_POLL_S = 1.0
#: How often a waiter looks when there is no channel (no Redis broker, or Redis unreachable).
POLL_S = 0.2
#: Connect and read timeouts of the channel's Redis client, seconds: a Redis that is down
#: delays a run's end by at most this much, once.
REDIS_TIMEOUT_S = 1.0

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def channel(run_id: str) -> str:
    return f"{CHANNEL_PREFIX}{run_id}"


def _client() -> redis.Redis | None:
    """This process's client of the broker's Redis (``None`` without a Redis broker).

    Its connection pool is safe to share between threads and is reset in a forked child."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(
                url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
            )
    return client


def publish(run_id: str) -> None:
    """Tell the run's waiters that it has ended, once the transaction that ended it commits
    (at once outside a transaction). Never raises: a failure is logged, waiters poll."""
    client = _client()
    if client is not None:
        transaction.on_commit(lambda: _publish(client, run_id))


def _publish(client: redis.Redis, run_id: str) -> None:
    try:
        client.publish(channel(run_id), b"")
    except (redis.RedisError, OSError) as exc:
        logger.warning("run %s: its end was not published (%s); waiters will poll", run_id, exc)


class RunEndListener:
    """Subscribed to one run's channel while open (a context manager).

    Open it before reading the run's status; then :meth:`wait` returns as soon as the run's end
    is published, or after ``timeout`` seconds. Use :attr:`poll_s` as the longest wait between
    two reads of the status: it is long when subscribed (a safety net), short otherwise.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = str(run_id)
        self._pubsub: redis.client.PubSub | None = None

    @property
    def subscribed(self) -> bool:
        return self._pubsub is not None

    @property
    def poll_s(self) -> float:
        return FALLBACK_POLL_S if self.subscribed else POLL_S

    def __enter__(self) -> RunEndListener:
        client = _client()
        if client is None:
            return self
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(channel(self.run_id))
            # The confirmation: from here on, a publish on the channel reaches this listener.
            confirmation = pubsub.get_message(timeout=REDIS_TIMEOUT_S)
        except (redis.RedisError, OSError) as exc:
            logger.warning("run %s: waiting without the run-end channel (%s)", self.run_id, exc)
            _close(pubsub)
            return self
        if confirmation is None or confirmation["type"] != "subscribe":
            _close(pubsub)
            return self
        self._pubsub = pubsub
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pubsub is not None:
            _close(self._pubsub)
            self._pubsub = None

    def wait(self, timeout: float) -> bool:
        """Block until the run's end is published (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while self._pubsub is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                message = self._pubsub.get_message(timeout=left)
            except (redis.RedisError, OSError) as exc:
                logger.warning("run %s: the run-end channel failed (%s); polling", self.run_id, exc)
                _close(self._pubsub)
                self._pubsub = None
                break
            if message is not None and message["type"] == "message":
                return True
        time.sleep(max(deadline - time.monotonic(), 0.0))
        return False


def _close(pubsub: redis.client.PubSub) -> None:
    """Give the listener's connection back (or drop it when it broke)."""
    try:
        pubsub.close()
    except (redis.RedisError, OSError):
        logger.debug("run-end listener: closing its connection failed", exc_info=True)
