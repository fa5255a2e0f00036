"""Errors a node raises at run time."""

from __future__ import annotations


class NodeError(Exception):
    """A node failed while executing.

    ``permanent=True`` says a retry cannot help (bad SQL, a 4xx answer, bad data);
    ``permanent=False`` says it may (a timeout, a 5xx answer, a dropped connection).
    The message must be safe to show to users: never put a secret in it.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent

    def __str__(self) -> str:
        return self.message
