"""Sending one delivery: a webhook POST through the address policy, or an e-mail over SMTP.

Both raise :class:`SendError` saying whether a retry can help; its message never carries a
secret of the webhook's connection (its URL, path included, and its headers are redacted).
"""

from __future__ import annotations

import json
import smtplib
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage

from nodes.models import lookup_connection
from nodes.netguard import GuardedSession
from nodes.redaction import Redactor
from nodes.sdk import NodeError

#: Answers a later attempt may turn into a success.
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class SendError(Exception):
    """A delivery attempt failed; ``permanent``: retrying cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def send(target: str, body: dict[str, Any], idempotency_key: str) -> None:
    kind, _, name = target.partition(":")
    if kind == "webhook":
        post_webhook(name, body, idempotency_key)
    elif kind == "email":
        send_email(name, body)
    else:
        raise SendError(f"unknown alert target '{target}'", permanent=True)


def post_webhook(connection_name: str, body: dict[str, Any], idempotency_key: str) -> None:
    """POST ``body`` to the connection's URL with its headers."""
    try:
        connection = lookup_connection(connection_name)
    except NodeError as exc:
        raise SendError(str(exc), permanent=True) from None
    redactor = Redactor()
    redactor.add_connection(connection)
    redactor.add([p for p in (urlsplit(connection.url).path, connection.url) if len(p) > 1])
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key,
        **connection.headers,
    }
    try:
        with GuardedSession(allow_private=settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE) as session:
            response = session.post(
                connection.url,
                data=json.dumps(body),
                headers=headers,
                timeout=settings.FLOWPLATFORM_ALERT_TIMEOUT_S,
                allow_redirects=False,
            )
    except NodeError as exc:
        raise SendError(redactor.redact(f"webhook refused: {exc}"), exc.permanent) from None
    except requests.RequestException as exc:
        raise SendError(redactor.redact(f"webhook unreachable: {exc}")) from None
    if response.status_code >= 300:
        detail = redactor.redact(response.text[:200])
        raise SendError(
            f"webhook answered HTTP {response.status_code}: {detail}",
            permanent=response.status_code not in RETRYABLE_STATUS,
        )


def send_email(address: str, body: dict[str, Any]) -> None:
    """E-mail ``body`` (its ``text`` as the subject line, the JSON below) with Django's backend."""
    subject = body["text"].split(" <", 1)[0][:200]
    lines = [body["text"], "", json.dumps(body, indent=2, sort_keys=True)]
    message = EmailMessage(
        subject=f"[Flow Platform] {subject}", body="\n".join(lines), to=[address]
    )
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendError(
            f"the mail server refused {address}: {exc.recipients}", permanent=True
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"mail server: {type(exc).__name__}: {exc}") from None
