"""``AuditedCommand``: a management command whose changes are recorded as the command line's.

Every such command takes ``--as USER`` to name the platform user it acts for; without it the
entries carry the operating-system user's name (and no platform user). With it the command
also acts with that user's rights (``acting_user``); without it, as the operator.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flowplatform.audit.context import Source, audit_context


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        return ""


class AuditedCommand(BaseCommand):
    #: The platform user named by ``--as``, or ``None`` for the operator.
    acting_user: Any = None

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument(
            "--as",
            dest="as_user",
            metavar="USER",
            help="act as this platform user: with their rights, recorded in the audit trail "
            "(default: the operator, recorded by OS user name)",
        )
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        name = options.get("as_user")
        user = _platform_user(name) if name else None
        self.acting_user = user
        who = os_user()
        with audit_context(
            Source.CLI, user=user, name=who, details={"os_user": who} if who else {}
        ):
            return super().execute(*args, **options)


def _platform_user(username: str) -> Any:
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"--as: user '{username}' does not exist")
    if not user.is_active:
        raise CommandError(f"--as: user '{username}' is inactive")
    return user
