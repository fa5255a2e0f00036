"""Wiring of triggers to the engine's run-finished hook (called in ``AppConfig.ready``)."""

from __future__ import annotations

from flows import hooks


def connect() -> None:
    from scheduling.triggers.upstream import run_finished

    hooks.on_run_finished("triggers.after", run_finished)
