"""Token authentication (``Authorization: Token <key>``) that rejects malformed keys early."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import authentication, exceptions

_KEY = re.compile(r"^[0-9a-f]{40}$")


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token scheme; a key that cannot be one is refused without a database query."""

    def authenticate_credentials(self, key: str) -> Any:
        if not _KEY.match(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
