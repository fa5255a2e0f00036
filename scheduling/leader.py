"""A Redis lease that lets exactly one beat process send: the others wait to take over.

The holder renews the lease every third of its TTL; a beat that dies stops renewing and another
takes the lease once it expires. The lease only keeps the standby beats quiet: duplicate runs are
prevented by the database (one ScheduledRun per schedule and interval), not by this lock.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import redis

logger = logging.getLogger("flowplatform.scheduling")

# Renew or release only the lease we hold (compare-and-set on the token).
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class LeaderLease:
    """``hold()`` is True while this process holds the lease; it acquires or renews as needed."""

    def __init__(self, url: str, key: str, ttl_s: float) -> None:
        self.key = key
        self.ttl_s = ttl_s
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = redis.Redis.from_url(url, socket_timeout=max(ttl_s / 3, 1))
        # Constant Lua scripts, run atomically by Redis (EVALSHA); no user text is involved.
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._held = False
        self._renew_at = 0.0
        self._valid_until = 0.0

    @property
    def retry_interval(self) -> float:
        """How long a standby waits before trying again."""
        return max(self.ttl_s / 3, 0.2)

    def renew_in(self) -> float:
        return max(self._renew_at - time.monotonic(), 0.0) if self._held else self.retry_interval

    def hold(self) -> bool:
        now = time.monotonic()
        if self._held and now < self._renew_at:
            return True
        ttl_ms = int(self.ttl_s * 1000)
        try:
            if self._held:
                ok = bool(self._renew(keys=[self.key], args=[self.token, ttl_ms]))
            else:
                ok = bool(self.client.set(self.key, self.token, nx=True, px=ttl_ms))
        except redis.RedisError as exc:
            # Unreachable Redis: keep sending only while the lease we had is surely still ours.
            logger.warning("beat lease: Redis error (%s)", exc)
            self._held = self._held and now < self._valid_until
            return self._held
        if ok:
            self._held = True
            self._valid_until = now + self.ttl_s
            self._renew_at = now + self.ttl_s / 3
        else:
            self._held = False
        return self._held

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as exc:
            logger.warning("beat lease: could not release (%s); it expires by itself", exc)
