"""Exponential backoff with full jitter: how long to wait before trying again.

One definition for every retry of the platform: a node's retries (its policy) and the requests
a node repeats itself (``http_post``, ``http_request``)."""

from __future__ import annotations

import random

_jitter = random.SystemRandom()


def jittered_backoff(first_s: float, max_s: float, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): uniformly drawn between 0 and
    ``first_s * 2**retry``, capped at ``max_s`` ("full jitter": retries of many clients that
    failed together spread out instead of coming back together)."""
    return _jitter.uniform(0, min(max_s, first_s * 2**retry))
