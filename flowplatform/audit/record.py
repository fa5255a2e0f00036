"""``record(...)``: the one way every layer writes an audit entry."""

from __future__ import annotations

from typing import Any

from django.db import models

from flowplatform.audit.context import Source, current
from flowplatform.audit.models import AuditEntry


def object_type(obj: models.Model) -> str:
    """``app_label.model`` of the concrete model (a proxy counts as what it stands for)."""
    meta = obj._meta.concrete_model._meta  # type: ignore[union-attr]
    return f"{meta.app_label}.{meta.model_name}"


def record(
    action: str,
    obj: models.Model | None = None,
    *,
    type_: str | None = None,
    object_id: Any = None,
    object_repr: str | None = None,
    details: dict[str, Any] | None = None,
    default_source: str = Source.SYSTEM,
) -> AuditEntry:
    """Write one entry for ``action`` on ``obj`` (or the type/id/repr given).

    The actor, the source and the remote address come from the current audit context;
    ``default_source`` applies where there is none (a schedule firing in a worker). Inside a
    transaction the entry is written with it, and rolled back with it. ``details`` must never
    hold a secret: callers record names of changed fields, never their values.
    """
    written = entry(
        action,
        obj,
        type_=type_,
        object_id=object_id,
        object_repr=object_repr,
        details=details,
        default_source=default_source,
    )
    written.save(force_insert=True)
    return written


def entry(
    action: str,
    obj: models.Model | None = None,
    *,
    type_: str | None = None,
    object_id: Any = None,
    object_repr: str | None = None,
    details: dict[str, Any] | None = None,
    default_source: str = Source.SYSTEM,
) -> AuditEntry:
    """The entry :func:`record` writes, not yet saved: for a caller that inserts it in the
    statement that makes the change it records (``flows.services.start_run``)."""
    context = current()
    user, name = context.actor() if context is not None else (None, "")
    extra = dict(context.details) if context is not None else {}
    extra.update(details or {})
    return AuditEntry(
        actor=user,
        actor_name=name[:150],
        source=context.source if context is not None else default_source,
        action=action,
        object_type=type_ or (object_type(obj) if obj is not None else ""),
        object_id=str(object_id if object_id is not None else getattr(obj, "pk", "") or ""),
        object_repr=(object_repr if object_repr is not None else str(obj or ""))[:200],
        details=extra,
        remote_addr=context.remote_addr if context is not None else None,
    )
