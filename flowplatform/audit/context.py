"""Who is acting, and through which door: set once where a request or command comes in.

The admin and the API get theirs from ``AuditMiddleware`` (the user is read when an entry is
recorded, so a user that DRF authenticates by token inside the view is the one recorded); a
management command from ``AuditedCommand``; schedule firing from the run's trigger. Code deeper
down (services, models) reads it through ``current()`` and never needs the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest


class Source:
    ADMIN = "admin"
    API = "api"
    CLI = "cli"
    SCHEDULE = "schedule"
    SYSTEM = "system"

    CHOICES = [
        (ADMIN, "admin"),
        (API, "API"),
        (CLI, "command line"),
        (SCHEDULE, "schedule"),
        (SYSTEM, "system"),
    ]


@dataclass(frozen=True)
class AuditContext:
    """The door an action comes through, the platform user (if any) and extra details."""

    source: str
    request: HttpRequest | None = None
    user: Any = None
    name: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def actor(self) -> tuple[Any, str]:
        """The acting user (None when there is none) and the name to keep for them."""
        user = self.user
        if user is None and self.request is not None:
            user = getattr(self.request, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return user, user.get_username()
        return None, self.name

    @property
    def remote_addr(self) -> str | None:
        if self.request is None:
            return None
        return self.request.META.get("REMOTE_ADDR") or None


_current: ContextVar[AuditContext | None] = ContextVar("flowplatform_audit", default=None)


def current() -> AuditContext | None:
    return _current.get()


@contextmanager
def audit_context(source: str, **kwargs: Any) -> Iterator[AuditContext]:
    """Within the block, entries are recorded as coming from ``source`` (and kwargs' actor)."""
    context = AuditContext(source, **kwargs)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def actor() -> tuple[Any, str]:
    """The current actor, for code that stamps authorship (flow versions)."""
    context = current()
    return context.actor() if context is not None else (None, "")
