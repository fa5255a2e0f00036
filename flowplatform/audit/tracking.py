"""Create, change and delete of the audited models, recorded where every door passes: the model.

Flows, connections, schedules, API tokens and flow grants are written by admin forms and inlines, API serializers,
flow files and commands; a receiver on the model is the one place all of them reach, and the
audit context tells it who acts. An entry names the fields that changed, never their values.
Secret columns are compared decrypted (their ciphertext changes on every save) and reported by
their public name (``url``, ``headers``) only. The groups a connection is limited to (a
many-to-many relation, which saves do not see) are recorded by an ``m2m_changed`` receiver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from flowplatform.audit.models import Action
from flowplatform.audit.record import record


@dataclass(frozen=True)
class Tracked:
    """How one model is audited."""

    #: Fields whose changes are bookkeeping, not an edit.
    ignore: frozenset[str] = frozenset({"id", "created_at", "updated_at"})
    #: Secret columns: name reported, and how to read the comparable value.
    secret: dict[str, tuple[str, Callable[[Any], Any]]] = field(default_factory=dict)
    #: Object id and repr of an instance (default: pk and str()).
    identify: Callable[[Any], tuple[Any, str]] = lambda obj: (obj.pk, str(obj))
    #: Whether a change (not only create/delete) is recorded.
    changes: bool = True


#: Models whose per-row entries are left to the caller (it records one entry for the batch).
_untracked: ContextVar[frozenset[type[models.Model]]] = ContextVar(
    "audit_untracked", default=frozenset()
)


@contextmanager
def untracked(model: type[models.Model]) -> Iterator[None]:
    """Within the block, saves and deletes of ``model`` write no entry of their own: the
    caller records one entry for the whole change (e.g. a flow's grants replaced at once)."""
    token = _untracked.set(_untracked.get() | {model})
    try:
        yield
    finally:
        _untracked.reset(token)


def _skipped(instance: models.Model) -> bool:
    return type(instance) in _untracked.get()


def _state(obj: models.Model, spec: Tracked) -> dict[str, Any]:
    """The comparable values of ``obj``'s edited fields; secrets as their reported names."""
    values: dict[str, Any] = {}
    for model_field in obj._meta.concrete_fields:
        name = model_field.name
        if name in spec.ignore:
            continue
        if name in spec.secret:
            public, read = spec.secret[name]
            values[public] = read(obj)
        else:
            values[name] = model_field.value_from_object(obj)
    return values


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(name for name, value in after.items() if before.get(name) != value)


def _set(after: dict[str, Any]) -> list[str]:
    return sorted(name for name, value in after.items() if value not in (None, "", {}, []))


def _pre_save(spec: Tracked) -> Callable[..., None]:
    def receiver(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
        if kwargs.get("raw") or instance._state.adding or instance.pk is None:
            return
        stored = sender._base_manager.filter(pk=instance.pk).first()
        instance._audit_before = _state(stored, spec) if stored is not None else None  # type: ignore[attr-defined]

    return receiver


def _post_save(spec: Tracked) -> Callable[..., None]:
    def receiver(instance: models.Model, created: bool, **kwargs: Any) -> None:
        if kwargs.get("raw") or _skipped(instance):
            return
        before = getattr(instance, "_audit_before", None)
        instance.__dict__.pop("_audit_before", None)
        after = _state(instance, spec)
        object_id, text = spec.identify(instance)
        if created or before is None:
            record(Action.CREATE, instance, object_id=object_id, object_repr=text,
                   details={"fields": _set(after)})  # fmt: skip
            return
        changed = _changed(before, after)
        if changed and spec.changes:
            record(Action.CHANGE, instance, object_id=object_id, object_repr=text,
                   details={"fields": changed})  # fmt: skip

    return receiver


def _post_delete(spec: Tracked) -> Callable[..., None]:
    def receiver(instance: models.Model, **kwargs: Any) -> None:
        if _skipped(instance):
            return
        object_id, text = spec.identify(instance)
        record(Action.DELETE, instance, object_id=object_id, object_repr=text)

    return receiver


def _token_identity(token: Any) -> tuple[Any, str]:
    # The token's primary key is its secret key: an entry names the token by its user.
    return token.user_id, f"API token of {token.user.get_username()}"


def _grant_identity(grant: Any) -> tuple[Any, str]:
    # Grants are audited per flow: object id = the flow's, whichever door changed them.
    return grant.flow_id, f"{grant.flow.slug}: {grant}"


def tracked_models() -> dict[type[models.Model], Tracked]:
    from rest_framework.authtoken.models import Token, TokenProxy

    from flows.models import Flow, FlowAccess
    from nodes.models import Connection
    from scheduling.models import FlowSchedule, FlowTrigger

    token = Tracked(identify=_token_identity, changes=False)
    return {
        Flow: Tracked(),
        Connection: Tracked(
            ignore=frozenset({"id", "created_at", "updated_at", "scheme", "display_url"}),
            secret={
                "encrypted_url": ("url", lambda c: c.secret_url() if c.encrypted_url else ""),
                "encrypted_headers": ("headers", lambda c: c.secret_headers()),
            },
        ),
        FlowSchedule: Tracked(
            ignore=frozenset(
                {
                    "id",
                    "created_at",
                    "updated_at",
                    "periodic_task",
                    "timing_changed_at",
                    "last_fired_at",
                    "position",
                }
            )
        ),
        FlowAccess: Tracked(identify=_grant_identity),
        FlowTrigger: Tracked(
            ignore=frozenset({"id", "created_at", "updated_at", "position", "polled_at"}),
            secret={"encrypted_secret": ("secret", lambda t: t.secret())},
        ),
        Token: token,
        TokenProxy: token,
    }


def _group_names(connection: Any) -> list[str]:
    return sorted(connection.allowed_groups.values_list("name", flat=True))


def _connection_groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None, **kwargs: Any
) -> None:
    """``Connection.allowed_groups`` changed (from either side): one entry per connection and
    operation, with the groups it is limited to now and those added or removed (names only)."""
    from django.contrib.auth.models import Group

    from nodes.models import Connection

    if action in ("pre_clear", "pre_remove", "pre_add"):
        if action == "pre_clear":  # post_clear does not say what was there
            through = sender.objects.filter(**{"group" if reverse else "connection": instance})
            instance._audit_cleared = set(
                through.values_list("connection_id" if reverse else "group_id", flat=True)
            )
        return
    if action == "post_clear":
        pk_set = instance.__dict__.pop("_audit_cleared", set())
    if not pk_set:
        return
    verb = "added" if action == "post_add" else "removed"
    if reverse:  # group.usable_connections.add(...): instance is the group
        changes = [(c, [instance.name]) for c in Connection.objects.filter(pk__in=pk_set)]
    else:
        names = sorted(Group.objects.filter(pk__in=pk_set).values_list("name", flat=True))
        changes = [(instance, names)]
    for connection, names in changes:
        details = {"fields": ["allowed_groups"], "allowed_groups": _group_names(connection)}
        details[verb] = names
        record(Action.CHANGE, connection, details=details)


def connect() -> None:
    for model, spec in tracked_models().items():
        uid = f"audit-{model._meta.label_lower}"
        pre_save.connect(_pre_save(spec), sender=model, weak=False, dispatch_uid=uid)
        post_save.connect(_post_save(spec), sender=model, weak=False, dispatch_uid=uid)
        post_delete.connect(_post_delete(spec), sender=model, weak=False, dispatch_uid=uid)
    from nodes.models import Connection

    m2m_changed.connect(
        _connection_groups_changed,
        sender=Connection.allowed_groups.through,
        dispatch_uid="audit-nodes.connection.allowed_groups",
    )
