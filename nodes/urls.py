"""Connection URLs: parse, validate and mask them."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

SUPPORTED_SCHEMES = ("postgresql", "postgres", "sqlite", "http", "https", "file", "s3")


class ConnectionURLError(ValueError):
    """A connection URL that the platform cannot use."""


def validate_url(url: str) -> str:
    """Return ``url`` stripped, or raise ConnectionURLError saying what is wrong (never echoing
    secrets). Database URLs also pass the database guard (:mod:`nodes.dbguard`)."""
    url = url.strip()
    if "\x00" in url:
        raise ConnectionURLError("URL contains a NUL byte")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        # The text of this error may quote part of a password: do not repeat it.
        raise ConnectionURLError(
            "not a valid URL (bad host or port; URL-encode special characters in the password)"
        ) from None
    if "@" in parts.path and "@" not in parts.netloc:
        raise ConnectionURLError(
            "not a valid URL: URL-encode '/', '?' and '#' in the user name and password"
        )
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise ConnectionURLError(
            f"unsupported scheme '{parts.scheme}' (use one of: {', '.join(SUPPORTED_SCHEMES)})"
        )
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise ConnectionURLError("sqlite URLs need a file path, e.g. sqlite:///var/data.db")
    elif parts.scheme in ("file", "s3"):
        # File connections: the directory (inside FLOWPLATFORM_FILE_ROOTS) or the bucket and
        # its endpoint's address are checked each time the connection is listed.
        return url
    elif not parts.hostname:
        raise ConnectionURLError(f"{parts.scheme} URLs need a host")
    from nodes import dbguard  # it imports this module

    dbguard.check_url(url)
    return url


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to display and export)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        # A user name alone may be a token (https://TOKEN@host): mask it too.
        user = f"{parts.username}:***" if parts.password is not None else "***"
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    # Query values may carry tokens (?api_key=...): keep the names, hide the values.
    query = "&".join(f"{pair.split('=', 1)[0]}=***" for pair in parts.query.split("&") if pair)
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
