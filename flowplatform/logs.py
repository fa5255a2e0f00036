"""Structured logs: the run a log line belongs to, and one JSON object per line.

``RunContextFilter`` (on every handler, beside the redacting filter) adds ``run_id``,
``node_key``, ``flow``, ``trace_id`` and ``span_id`` to each record: the run and node from
``run_context`` (set around each engine task and node execution), the trace from the current
OpenTelemetry span when tracing is on. ``JsonFormatter`` (``FLOWPLATFORM_LOG_FORMAT=json``)
writes them with time, level, logger and message.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

#: The run, node and flow of the work in progress in this thread/task (None outside one).
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "flowplatform_run_context", default=None
)

RUN_FIELDS = ("run_id", "node_key", "flow")
TRACE_FIELDS = ("trace_id", "span_id")


@contextmanager
def run_context(**fields: Any) -> Iterator[None]:
    """Log lines written inside carry these fields (added to those of an outer context)."""
    merged = dict(_context.get() or {})
    merged.update({k: str(v) for k, v in fields.items() if v is not None and v != ""})
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def set_run_context(**fields: Any) -> contextvars.Token[dict[str, str] | None]:
    """For callers that cannot wrap the work in a ``with`` (Celery signals); undo it with
    ``reset_run_context``."""
    return _context.set({k: str(v) for k, v in fields.items() if v is not None and v != ""})


def reset_run_context(token: contextvars.Token[dict[str, str] | None]) -> None:
    try:
        _context.reset(token)
    except ValueError:  # set in another context (a signal fired elsewhere): just clear
        _context.set(None)


def current_run_context() -> dict[str, str]:
    return dict(_context.get() or {})


class RunContextFilter(logging.Filter):
    """Adds the run/node/flow and trace/span ids to a record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if context:
            for key, value in context.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        if not hasattr(record, "trace_id"):
            from flowplatform import telemetry

            ids = telemetry.current_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the run fields present, and
    the exception (redacted beforehand by the redacting filter) as ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in (*RUN_FIELDS, *TRACE_FIELDS):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        process = getattr(record, "processName", None)
        if process and process != "MainProcess":
            entry["process"] = process
        return json.dumps(entry, default=str, ensure_ascii=False)


def install(handler: logging.Handler, json_format: bool) -> None:
    """Give a handler made outside ``LOGGING`` (Celery's) the run filter and, for JSON logs,
    the JSON formatter. (The redacting filter is installed beside it by the caller.)"""
    if not any(isinstance(f, RunContextFilter) for f in handler.filters):
        handler.addFilter(RunContextFilter())
    if json_format:
        handler.setFormatter(JsonFormatter())
