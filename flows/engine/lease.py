"""Who executes a node run: a lease written on the node run's row, with a fencing token.

A process that takes a node (``flows.transitions.take``) writes itself as ``lease_owner``,
sets ``lease_expires_at`` to now + ``FLOWPLATFORM_LEASE_TTL_S`` and raises ``fence``. Its
heartbeats move the expiry on; every later change it makes to the node run names the fence it
got, so once another delivery has taken the node over (a higher fence), the first can change
nothing any more, whatever it was doing meanwhile (paused, cut off, slow). Nothing lives in a
database session: the lease passes through a transaction-mode connection pooler.

A delivery that finds the node leased waits for nobody: when the owner is a process of this
same machine that no longer exists (a pool process killed), it takes the node over at once;
otherwise it leaves it to the owner, and the reaper re-dispatches the run once the lease has
expired (decision 0027).

This module only knows owners: who this process is, and whether an owner is provably gone.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

#: The owner of the nodes a fan-out runs partition by partition (no process: never "gone").
FAN_OUT = "fan-out"


def _machine() -> str:
    """This host as pids are seen from it: its name and its pid namespace (two containers of
    one name, each with its own pids, are two machines)."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


_MACHINE = _machine()
_owner: tuple[int, str] | None = None


def owner() -> str:
    """This process's name as a lease owner: ``host/pid-namespace:pid:token``.

    The token tells this process from an earlier one that had the same pid. (Computed per pid:
    a forked pool process is an owner of its own.)"""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:
        _owner = (pid, f"{_MACHINE}:{pid}:{secrets.token_hex(4)}")
    return _owner[1]


def gone(lease_owner: str) -> bool:
    """Whether ``lease_owner`` is a process of this machine that no longer exists.

    False whenever it cannot be known (another machine, the fan-out, a pid now used by another
    process): the lease then runs out by itself."""
    parts = lease_owner.split(":")
    if len(parts) != 3 or parts[0] != _MACHINE or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return lease_owner != owner()  # an earlier process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists (another user's)
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether the process has ended but was not reaped yet by its parent (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def expiry(now: datetime | None = None, ttl_s: float | None = None) -> datetime:
    """When a lease taken or renewed ``now`` runs out."""
    ttl = settings.FLOWPLATFORM_LEASE_TTL_S if ttl_s is None else ttl_s
    return (now or timezone.now()) + timedelta(seconds=ttl)
