"""Encryption of secrets at rest: Fernet, with MultiFernet for key rotation."""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretError(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    """The MultiFernet of ``FLOWPLATFORM_ENCRYPTION_KEYS``: the first key encrypts, all decrypt."""
    return _fernet(tuple(settings.FLOWPLATFORM_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretError(
            "a stored secret cannot be decrypted: FLOWPLATFORM_ENCRYPTION_KEYS lacks its key"
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the primary key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretError("a stored secret cannot be decrypted with any configured key") from None
