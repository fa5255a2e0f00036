"""Extra sections of a flow file owned by other apps (e.g. ``schedules`` by ``scheduling``).

``flows`` must not import the apps that depend on it, so they register here (in their
``AppConfig.ready``) how to validate, apply and export their section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.models import Flow
    from flows.validation import FlowProblem


@dataclass(frozen=True)
class FlowFileSection:
    """How one top-level key of a flow file is validated, applied and exported.

    - ``validate(value) -> problems`` with paths relative to the file (``schedules[0].cron``);
    - ``apply(flow, value)`` runs inside the import transaction (``value`` is None when the
      file omits the key: leave the flow's current items alone);
    - ``export(flow) -> value or None`` (None: omit the key);
    - ``editor``: a static ES module that edits the section on the canvas (its ``mount(host)``;
      see ``flows/static/flows/canvas/sections.js``), with ``canvas_data(flow or None, user)``
      the JSON it needs besides the section's value. Without one the canvas leaves the
      section alone.
    """

    key: str
    validate: Callable[[Any], list[FlowProblem]]
    apply: Callable[[Flow, Any], None]
    export: Callable[[Flow], Any]
    editor: str = ""
    canvas_data: Callable[[Flow | None, Any], Any] | None = None


_sections: dict[str, FlowFileSection] = {}


def register_section(section: FlowFileSection) -> None:
    _sections[section.key] = section


def sections() -> list[FlowFileSection]:
    return list(_sections.values())


#: Extra details of a run owned by other apps (``alerts``: the run's alert deliveries), shown
#: on the run page and in the API's run detail under their key.
_run_details: dict[str, Callable[[Any], Any]] = {}


def register_run_detail(key: str, details: Callable[[Any], Any]) -> None:
    """``details(run) -> JSON value`` appears as ``key`` in the run's detail."""
    _run_details[key] = details


def run_details(run: Any) -> dict[str, Any]:
    return {key: details(run) for key, details in _run_details.items()}
