"""The platform's own SQLite database file is readable and writable by its owner only.

SQLite creates the file with the process umask (0644 under the usual 022) when the first
connection opens it; every new connection puts it back to 0600. (Journal files take the
database file's mode.)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created


def private_sqlite_file(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    with contextlib.suppress(OSError):  # another owner's file: not ours to change
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)


connection_created.connect(private_sqlite_file, dispatch_uid="flowplatform.private_sqlite_file")
