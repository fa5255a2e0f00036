"""Signals other apps listen to (``flows`` never imports them).

``run_finished(run_id, status)`` is sent once a run has reached a final status, by the one
state change that moved it there (``flows.transitions``), inside or after its transaction:
a receiver that acts outside the database defers to ``transaction.on_commit``. Receivers
must not fail the run: errors they raise are logged and dropped. ``concerns``: what the
questions registered with ``flows.hooks.concern`` answered for the run, or ``None`` when they
were not asked (read with ``flows.hooks.concerned``).
"""

from django.dispatch import Signal

run_finished = Signal()
