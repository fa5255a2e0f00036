"""Connection URLs: parse, validate and mask them."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

SUPPORTED_SCHEMES = ("postgresql", "postgres", "sqlite", "http", "https")


class ConnectionURLError(ValueError):
    """A connection URL that the platform cannot use."""


def validate_url(url: str) -> str:
    """Return ``url`` stripped, or raise ConnectionURLError saying what is wrong (never echoing secrets)."""
    url = url.strip()
    if "\x00" in url:
        raise ConnectionURLError("URL contains a NUL byte")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConnectionURLError(f"not a valid URL ({exc})") from None
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise ConnectionURLError(
            f"unsupported scheme '{parts.scheme}' (use one of: {', '.join(SUPPORTED_SCHEMES)})"
        )
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise ConnectionURLError("sqlite URLs need a file path, e.g. sqlite:///var/data.db")
    elif not parts.hostname:
        raise ConnectionURLError(f"{parts.scheme} URLs need a host")
    return url


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to display and export)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
    # Query values may carry tokens (?api_key=...): keep the names, hide the values.
    query = "&".join(f"{pair.split('=', 1)[0]}=***" for pair in parts.query.split("&") if pair)
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
