"""Path templates: ``exports/{flow}/{interval_start:%Y/%m/%d}/part-{part:05d}.{ext}``.

Only a fixed set of names may appear, each a plain name (no ``.attribute``, no ``[index]``,
no ``!conversion``, no nested field in a format spec): the template is parsed once and each
field formatted with ``format(value, spec)`` — ``strftime`` for dates, the format
mini-language for numbers and text. ``str.format`` is never called on user text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any

from nodes.builtin.casts import to_datetime

#: Names every template may use: the run's values.
RUN_NAMES = frozenset({"interval_start", "interval_end", "logical_date", "run_id"})
#: Run values that are datetimes; given as run params (``--param interval_start=2026-03-01``)
#: they arrive as ISO 8601 text and are parsed.
DATETIME_NAMES = ("interval_start", "interval_end", "logical_date")


def run_path_values(run_values: Mapping[str, Any]) -> dict[str, Any]:
    """The run values a path template formats, datetimes parsed; ValueError for bad text."""
    values = dict(run_values)
    for name in DATETIME_NAMES:
        if isinstance(values.get(name), str):
            try:
                values[name] = to_datetime(values[name])
            except ValueError as exc:
                raise ValueError(f"'{{{name}}}': {exc}") from None
    return values


@dataclass(frozen=True)
class PathTemplate:
    """A parsed template: literal text and ``(name, spec)`` fields, in order."""

    pieces: tuple[str | tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str, names: frozenset[str]) -> PathTemplate:
        """Parse ``text``; ValueError naming the first field that is not allowed."""
        pieces: list[str | tuple[str, str]] = []
        try:
            parsed = list(Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(
                f"not a valid template: {exc} (write a literal brace as {{{{ or }}}})"
            ) from None
        for literal, name, spec, conversion in parsed:
            if literal:
                pieces.append(literal)
            if name is None:
                continue
            if name not in names:
                allowed = ", ".join(sorted(names))
                raise ValueError(f"unknown name '{{{name[:40]}}}' (use one of: {allowed})")
            if conversion or "{" in (spec or ""):
                raise ValueError(f"'{{{name}}}' may only carry a format spec (':...')")
            pieces.append((name, spec or ""))
        return cls(tuple(pieces))

    @property
    def names(self) -> set[str]:
        return {piece[0] for piece in self.pieces if isinstance(piece, tuple)}

    def render(
        self, values: Mapping[str, Any], escape: Callable[[str], str] = lambda text: text
    ) -> str:
        """The text with every field formatted; ValueError when a value is missing or its
        format spec does not fit it. ``escape`` is applied to each formatted value."""
        out = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            name, spec = piece
            value = values.get(name)
            if value is None:
                raise ValueError(f"'{{{name}}}' has no value in this run")
            try:
                out.append(escape(format(value, spec)))
            except (ValueError, TypeError):
                raise ValueError(
                    f"format '{spec}' does not fit '{{{name}}}' ({type(value).__name__})"
                ) from None
        return "".join(out)


def glob_escape(text: str) -> str:
    """``text`` with glob characters matched literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
