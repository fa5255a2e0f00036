"""Typed environment helpers: read once at start-up, fail loudly on bad values.

Every variable ``NAME`` may instead be given as ``NAME_FILE``, a path to a file holding the
value (for Docker and Kubernetes secrets).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Exit status of a process that refuses to start for its configuration. gunicorn takes it as
#: "the application failed to load" and stops, instead of booting new workers forever.
CONFIG_EXIT_STATUS = 4


class SettingsError(Exception):
    """An environment variable holds a value the platform cannot use."""


@contextmanager
def refuse_to_start_on_settings_error() -> Iterator[None]:
    """Stop the process with one line on stderr when the settings cannot be used.

    Wraps what first loads the settings in every entry point (``manage.py``, the Celery app,
    the WSGI application), so each refuses to start the same way: no traceback, exit status
    ``CONFIG_EXIT_STATUS``.
    """
    try:
        yield
    except SettingsError as exc:
        sys.stderr.write(f"flowplatform: configuration error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(CONFIG_EXIT_STATUS) from None


def env_str(name: str, default: str = "") -> str:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = env_str(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = env_str(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]
