"""Redaction: keep connection secrets out of errors, tracebacks, logs and task results.

One :class:`Redactor` per node run knows the secrets of the connections the node uses (it
learns them as the node looks its connections up) and hides every form a secret can take in
text a peer or a driver sends back:

- the value itself, and the token of ``Scheme token`` header values (``Bearer``, ``Basic``, ...);
- a URL's password (or its user name when it has no password: ``https://TOKEN@host``) and its
  query values, as written and decoded (a user name beside a password stays readable);
- the ``Basic`` token (base64 of ``user:password``), and base64 of every secret at any
  alignment, so a secret inside a larger base64 text is found too;
- URL-encoded forms (``quote``, ``quote_plus``, upper- and lower-case escapes);
- any slice of :data:`WINDOW` or more characters of any of those forms: a secret cut short
  by a truncation, or split by an escape, does not survive. Slices are compared ignoring
  case (an upper- or lower-cased secret is found); forms shorter than :data:`WINDOW` are
  matched whole, with their case;
- the same, in the text as it reads with JSON escapes (``\\/``, ``\\u00e4``, ...) and HTML
  character references (``&#x2F;``, ``&amp;``, ...) undone: what is found there is masked
  in the text as written, escapes included.

Text is redacted first, then cut (:meth:`Redactor.cut`), never the other way round.

While a node runs, the engine keeps its redactor *active* (:func:`scope`): the logging
filter :class:`RedactingFilter` redacts every log record of the process with every active
redactor, whichever thread emits it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import functools
import html.entities
import itertools
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

if TYPE_CHECKING:
    from nodes.sdk.context import ConnectionInfo

#: Any run of this many characters of a secret form is hidden.
WINDOW = 8
#: Shorter secrets are too likely to be ordinary words: they are not looked for.
MIN_SECRET = 4
MASK = "***"

_HEX_ESCAPE = re.compile(r"%[0-9A-F]{2}")


class Redactor:
    """Hides known secrets in text. Build it once per node run; :meth:`add` as secrets appear.

    Finding secrets costs one set lookup per character of the text (the :data:`WINDOW`-long
    slices of every form are kept in one set), whatever the number of secrets.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._windows: frozenset[str] = frozenset()
        self._short: re.Pattern[str] | None = None  # forms shorter than WINDOW, matched whole
        self._short_forms: frozenset[str] = frozenset()
        self._longest = 0
        self._secrets: frozenset[str] = frozenset()
        self.add(secrets)

    def __bool__(self) -> bool:
        return bool(self._windows or self._short_forms)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secrets (and every form of each)."""
        new = set(secrets) - self._secrets  # a connection looked up again costs next to nothing
        if not new:
            return
        forms = {form for secret in new for form in secret_forms(secret)}
        with self._lock:
            self._secrets |= new
            if not forms:
                return
            windows = set(self._windows)
            short = set(self._short_forms)
            for form in forms:
                if len(form) < WINDOW:
                    short.add(form)
                else:
                    folded = _folded(form)  # (slices are compared ignoring case)
                    windows.update(folded[i : i + WINDOW] for i in range(len(form) - WINDOW + 1))
            self._longest = max(self._longest, *(len(form) for form in forms))
            if short != self._short_forms:
                ordered = sorted(short, key=len, reverse=True)
                self._short = re.compile("|".join(map(re.escape, ordered)))
            self._short_forms = frozenset(short)
            self._windows = frozenset(windows)

    def add_connection(self, connection: ConnectionInfo) -> None:
        self.add(connection_secrets(connection))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets are in ``text``: sorted, merged ``(start, end)`` ranges. The text is
        also read with its JSON and HTML escapes undone (spans found there cover the escapes)."""
        found = self._found(text, range(len(text) - WINDOW + 1))
        unescaped = _unescaped(text)
        if unescaped is not None:
            # Only what touches an undone escape is new: the rest was read above.
            found += [
                (unescaped.start(a), unescaped.end(b - 1))
                for a, b in self._found(unescaped.text, unescaped.near_escapes())
            ]
        return _merged(found)

    def _found(self, text: str, starts: Iterable[int]) -> list[tuple[int, int]]:
        """Spans of secrets in ``text``, windows tried at ``starts``, short forms anywhere."""
        windows, short = self._windows, self._short
        found: list[tuple[int, int]] = []
        if windows:
            folded = _folded(text)
            found += [(i, i + WINDOW) for i in starts if folded[i : i + WINDOW] in windows]
        if short is not None:
            found += [match.span() for match in short.finditer(text)]
        return found

    def redact(self, text: str) -> str:
        """``text`` with every secret form replaced by ``***``."""
        if not self:
            return text
        return _masked(text, self.spans(text))

    def cut(self, text: str, limit: int) -> str:
        """The first ``limit`` characters of ``text``, redacted.

        The secrets are looked for in the text beyond the cut as well, so that a secret the
        cut splits is still recognised and hidden whole.
        """
        if len(text) <= limit:
            return self.redact(text)
        # (an escaped character takes up to 10 characters: &#x10FFFF;)
        spans = self.spans(text[: limit + self._longest * 10]) if self else []
        kept = [(start, min(end, limit)) for start, end in spans if start < limit]
        return _masked(text[:limit], kept)


def _folded(text: str) -> str:
    """``text`` lower-cased, character for character (same length, same positions)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)  # e.g. 'İ'


#: JSON escapes (a surrogate pair first) and HTML character references.
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|\\u([0-9a-fA-F]{4})"
    r'|\\(["\\/bfnrt])'
    r"|&#[xX]([0-9a-fA-F]{1,6});?"
    r"|&#([0-9]{1,7});?"
    r"|&([A-Za-z][A-Za-z0-9]{1,31};)"
)
_JSON_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


@functools.lru_cache(maxsize=1024)
def _escaped_text(escape: str) -> str | None:
    """The text an escape or character reference stands for (``None``: not one)."""
    match = _ESCAPE.fullmatch(escape)
    if match is None:  # pragma: no cover - only matches of _ESCAPE are passed
        return None
    high, low, code, simple, hex_ref, decimal_ref, name = match.groups()
    if high is not None:
        value = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
        return chr(value)
    if simple is not None:
        return _JSON_ESCAPES[simple]
    if name is not None:
        return html.entities.html5.get(name)
    number = int(code or hex_ref, 16) if decimal_ref is None else int(decimal_ref)
    return chr(number) if number <= 0x10FFFF else None


class _Unescaped:
    """A text with its JSON escapes and HTML character references undone, and where each of
    its characters lies in the text as written."""

    def __init__(self, text: str, escapes: list[tuple[int, int, int, int]]) -> None:
        self.text = text
        # (position here, length here, start and end as written) of each undone escape
        self.escapes = escapes
        self._positions = [escape[0] for escape in escapes]

    def start(self, index: int) -> int:
        """Where the character at ``index`` starts in the text as written."""
        i = bisect.bisect_right(self._positions, index) - 1
        if i < 0:
            return index
        position, length, start, end = self.escapes[i]
        return start if index < position + length else end + index - position - length

    def end(self, index: int) -> int:
        """Where the character at ``index`` ends in the text as written."""
        i = bisect.bisect_right(self._positions, index) - 1
        if i >= 0 and index < self.escapes[i][0] + self.escapes[i][1]:
            return self.escapes[i][3]
        return self.start(index) + 1

    def near_escapes(self) -> Iterable[int]:
        """Where a :data:`WINDOW` touching an undone escape may start (each once, in order)."""
        last = len(self.text) - WINDOW
        ranges: list[range] = []
        done = -1
        for position, length, _start, _end in self.escapes:
            low, high = max(done + 1, position - WINDOW + 1), min(last, position + length - 1)
            if low <= high:
                ranges.append(range(low, high + 1))
                done = high
        return itertools.chain.from_iterable(ranges)


def _unescaped(text: str) -> _Unescaped | None:
    """``text`` with JSON escapes and HTML character references undone; ``None`` when there
    is nothing to undo."""
    if "\\" not in text and "&" not in text:
        return None
    pieces: list[str] = []
    escapes: list[tuple[int, int, int, int]] = []
    position = decoded = 0
    for match in _ESCAPE.finditer(text):
        char = _escaped_text(match.group())
        if char is None:
            continue
        start, end = match.span()
        decoded += start - position
        pieces += [text[position:start], char]
        escapes.append((decoded, len(char), start, end))
        decoded += len(char)
        position = end
    if not escapes:
        return None
    pieces.append(text[position:])
    return _Unescaped("".join(pieces), escapes)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    parts, position = [], 0
    for start, end in spans:
        parts += [text[position:start], MASK]
        position = end
    parts.append(text[position:])
    return "".join(parts)


# --- what a connection holds, and the forms a secret takes -----------------------------------
def connection_secrets(connection: ConnectionInfo) -> list[str]:
    """The secrets of a connection: header values, and the URL's credentials and query values."""
    return [*header_secrets(connection.headers.values()), *url_secrets(connection.url)]


def header_secrets(values: Iterable[str]) -> list[str]:
    """Header values, the token of ``Scheme token`` values, and what a ``Basic`` token holds."""
    found: list[str] = []
    for value in values:
        found.append(value)
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if not token:
            continue
        found.append(token)
        if scheme.lower() == "basic":
            found += _basic_credentials(token)
    return found


def url_secrets(url: str) -> list[str]:
    """A URL's password (or the user name standing for a token), the ``Basic`` token made of
    them, and its query values, as written and decoded. (A user name with a password is no
    secret: it stays readable.)"""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return [url]  # not a URL this platform could use: hide all of it
    found: list[str] = []
    if password is not None:
        found += [password, *basic_auth_secrets(unquote(username or ""), unquote(password))]
    elif username:
        found += [username, *basic_auth_secrets(unquote(username), "")]
    found += [pair.partition("=")[2] for pair in parts.query.split("&")]  # as written
    found += [value for _name, value in parse_qsl(parts.query)]
    return found


def basic_auth_secrets(user: str, password: str) -> list[str]:
    """The secrets of HTTP basic auth: the password (or a user name standing for a token when
    there is none) and the ``Basic`` token, ``base64(user:password)``."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [password or user, token]


def _basic_credentials(token: str) -> list[str]:
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return []
    return [decoded.partition(":")[2]]


def secret_forms(secret: str) -> set[str]:
    """Every form of ``secret`` worth looking for (empty when it is too short to look for)."""
    if len(secret) < MIN_SECRET:
        return set()
    forms = {secret}
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        forms.add(encoded)
        forms.add(_HEX_ESCAPE.sub(lambda m: m.group(0).lower(), encoded))
    for data in _encodings(secret):
        forms.update(_base64_cores(data))
    return {form for form in forms if len(form) >= MIN_SECRET}


def _encodings(secret: str) -> set[bytes]:
    """UTF-8, and Latin-1 as HTTP clients encode basic-auth credentials, where it applies."""
    found = {secret.encode()}
    with contextlib.suppress(UnicodeEncodeError):
        found.add(secret.encode("latin-1"))
    return found


def _base64_cores(data: bytes) -> Iterator[str]:
    """What base64 of any text containing ``data`` contains, for each of the three alignments
    (the characters that also encode neighbouring bytes left out), standard and URL-safe."""
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode().rstrip("=")
        head = (0, 2, 3)[offset]  # characters that carry bits of the bytes before
        tail = 1 if (offset + len(data)) % 3 else 0  # the last one carries bits of the next
        core = encoded[head : len(encoded) - tail]
        yield core
        yield core.replace("+", "-").replace("/", "_")


# --- active redactors: what the logging filter applies ---------------------------------------
_active: list[Redactor] = []
_active_lock = threading.Lock()


@contextmanager
def scope(redactor: Redactor | None = None) -> Iterator[Redactor]:
    """Keep ``redactor`` (a new one by default) active while the block runs: log records
    emitted meanwhile, by any thread of the process, are redacted with it."""
    redactor = redactor if redactor is not None else Redactor()
    with _active_lock:
        _active.append(redactor)
    try:
        yield redactor
    finally:
        with _active_lock:
            _active.remove(redactor)


def redact_active(text: str) -> str:
    """``text`` redacted with every active redactor."""
    for redactor in list(_active):
        text = redactor.redact(text)
    return text


def _any_secret_active() -> bool:
    return any(_active)  # (a node that uses no connection has an empty redactor)


class RedactingFilter(logging.Filter):
    """A logging filter (put it on handlers) hiding the secrets of the node runs in progress.

    The message, the formatted exception and the stack are redacted; a record without secrets
    is left as it was.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _any_secret_active():
            return True
        message = record.getMessage()
        redacted = redact_active(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_active(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_active(record.stack_info)
        return True
