"""The internals of django-celery-beat (and celery) the beat scheduler relies on are still there,
shaped as relied on. An upgrade that removes or changes one fails here, naming it; the
scheduler itself refuses to start on such a version. No services: the installed packages only.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.beat import ScheduleEntry
from django.core.exceptions import ImproperlyConfigured
from django_celery_beat.schedulers import DatabaseScheduler

from flowplatform.celery import app as celery_app
from scheduling import beat_adapter
from scheduling.beat import GuardedScheduler
from scheduling.beat_adapter import (
    RELIED_ON,
    DatabaseSchedulerAdapter,
    Relied,
    incompatibilities,
    instance_incompatibilities,
)


@pytest.mark.parametrize("member", RELIED_ON, ids=lambda member: member.label)
def test_the_installed_member_is_as_relied_on(member: Relied) -> None:
    assert member.problem() is None


def test_celery_heap_events_are_time_priority_entry() -> None:
    assert incompatibilities() == []


def test_a_scheduler_holds_the_state_relied_on_from_its_start() -> None:
    plain = DatabaseScheduler(app=celery_app, lazy=True)
    assert instance_incompatibilities(plain) == []


class _Upgraded:
    """A DatabaseScheduler as a future version might be."""

    _initial_read = "yes"

    def sync(self, force: bool) -> None: ...


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (Relied(_Upgraded, "_heap"), "_Upgraded._heap is gone"),
        (Relied(_Upgraded, "_initial_read", kind=bool), "_Upgraded._initial_read is now str, not bool"),
        (Relied(_Upgraded, "sync", parameters=("self",)), "_Upgraded.sync takes (self, force), not (self)"),
    ],
)  # fmt: skip
def test_a_changed_member_is_named_with_what_changed(member: Relied, message: str) -> None:
    problem = member.problem()
    assert problem is not None and problem.endswith(message)


def test_the_scheduler_refuses_to_start_on_a_changed_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(beat_adapter, "RELIED_ON", (*RELIED_ON, Relied(_Upgraded, "_heap")))
    with pytest.raises(ImproperlyConfigured, match=r"_Upgraded\._heap is gone"):
        GuardedScheduler(app=celery_app, lazy=True)


class _Counting(DatabaseSchedulerAdapter):
    """The adapter over entries set by hand (no database): counts the heaps celery builds."""

    built = 0

    @property
    def schedule(self) -> dict[str, Any]:
        return self.entries or {}

    def populate_heap(self, *args: Any, **kwargs: Any) -> None:
        self.built += 1
        super().populate_heap(*args, **kwargs)

    def sync(self) -> None:
        pass


def _hourly(name: str) -> ScheduleEntry:
    return ScheduleEntry(
        name=name,
        task="scheduling.drain",
        schedule=timedelta(hours=1),
        last_run_at=datetime.now(UTC),
        app=celery_app,
    )


def test_celery_tick_rebuilds_the_heap_only_when_forgotten_or_reloaded() -> None:
    scheduler = _Counting(app=celery_app, lazy=True)
    scheduler.entries = {"a": _hourly("a")}
    assert 0 < scheduler.tick() <= scheduler.max_interval  # nothing due: it sleeps
    assert scheduler.built == 1 and scheduler.heap_built
    scheduler.tick()
    assert scheduler.built == 1  # nothing changed: the heap is reused, not compared entry by entry
    scheduler.forget_heap()
    scheduler.tick()
    assert scheduler.built == 2
    scheduler.entries = {"a": _hourly("a"), "b": _hourly("b")}  # a full read: a new dict
    scheduler.tick()
    assert scheduler.built == 3


def test_run_counters_marked_for_saving_are_taken_once_and_can_be_marked_again() -> None:
    scheduler = _Counting(app=celery_app, lazy=True)
    scheduler.mark_for_save("a")
    scheduler.mark_for_save("b")
    assert scheduler.take_marked() == {"a", "b"}
    assert scheduler.take_marked() == set()
    scheduler.mark_again({"a"})
    assert scheduler.take_marked() == {"a"}


def _own_private_names(cls: type) -> set[str]:
    """The ``_names`` a class defines itself: its methods and what it assigns to ``self``."""
    names = {name for name in vars(cls) if name.startswith("_") and not name.startswith("__")}
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and target.attr.startswith("_")
            ):
                names.add(target.attr)
    return names


def test_the_scheduler_own_private_names_shadow_nothing_of_the_installed_scheduler() -> None:
    relied = {member.name for member in RELIED_ON} | set(beat_adapter.INSTANCE_STATE)
    plain = DatabaseScheduler(app=celery_app, lazy=True)
    ours = _own_private_names(GuardedScheduler) | _own_private_names(DatabaseSchedulerAdapter)
    shadowed = sorted(
        name for name in ours - relied if hasattr(DatabaseScheduler, name) or name in vars(plain)
    )
    assert shadowed == []
    assert "_watermark" in ours and "_heap_source" in ours  # the walk sees both classes
