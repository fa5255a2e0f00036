"""Inlines of the flow's admin page owned by other apps (e.g. schedules by ``scheduling``).

``flows`` must not import the apps that depend on it (``tests/flows/test_layering.py``), so
they register their inline here from their ``AppConfig.ready``, by dotted path: it is imported
when the flow page is built, after every app is ready, whatever order they load in. Flow-file
sections have their own registry beside this one (``flows.sections``).
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

_inlines: list[str] = []


def register_flow_inline(dotted_path: str) -> None:
    """Show the inline at ``dotted_path`` on the flow page (after nodes and edges, before the
    access grants); registering the same path twice keeps one."""
    if dotted_path not in _inlines:
        _inlines.append(dotted_path)


def flow_inlines() -> list[type[Any]]:
    """The registered inline classes, in registration order."""
    return [import_string(path) for path in _inlines]
