"""``manage.py createapitoken USERNAME``: issue a new API token; it is the last line printed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from flowplatform.audit.command import AuditedCommand


class Command(AuditedCommand):
    help = (
        "Create a new REST API token for a user (replacing the user's previous token) and print "
        "it as the last line. Send it as `Authorization: Token <key>`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"user '{username}' does not exist") from None
        if not user.is_active:
            raise CommandError(f"user '{username}' is inactive")
        with transaction.atomic():
            replaced = Token.objects.filter(user=user).delete()[0] > 0
            token = Token.objects.create(user=user)
        if replaced:
            self.stderr.write(f"the previous token of '{username}' no longer works")
        self.stdout.write(token.key)
