"""Actors of the alert tests: a local SMTP server, a webhook peer, a scheduled flow."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings


class Inbox:
    """What the SMTP server received: one parsed message per recipient and delivery."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Inbox]:
    """An aiosmtpd server on the port the test settings give the platform (EMAIL_PORT)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname=settings.EMAIL_HOST, port=settings.EMAIL_PORT)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def inbox(smtp_server: Inbox) -> Inbox:
    with smtp_server.lock:
        smtp_server.messages.clear()
    return smtp_server
