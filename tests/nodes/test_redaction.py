"""The redactor: every form a connection secret takes is hidden, and text is redacted, then cut.

The property tests draw secrets and texts from several seeds; the filler text around a secret
is drawn from characters no secret (nor base64, nor URL encoding) uses, so that what must
survive redaction is known exactly.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import random
import string
from urllib.parse import quote, quote_plus

import pytest

from nodes.redaction import MASK, RedactingFilter, Redactor, scope
from nodes.sdk import ConnectionInfo, ExecutionContext

SEEDS = [1, 2, 3, 5, 8, 13]
CASES = 40
SECRET_CHARS = string.ascii_letters + string.digits + "-_.~+/=:@%!"
FILLER_CHARS = " \n()[]<>αβγ東京"  # no secret, base64 or %-escape character


def secret_of(rng: random.Random) -> str:
    return "".join(rng.choices(SECRET_CHARS, k=rng.randint(8, 64)))


def filler(rng: random.Random, low: int = 0, high: int = 40) -> str:
    return "".join(rng.choices(FILLER_CHARS, k=rng.randint(low, high)))


def slices(text: str, width: int = 8) -> set[str]:
    return {text[i : i + width] for i in range(len(text) - width + 1)}


def assert_no_slice(secret: str, text: str) -> None:
    found = [piece for piece in slices(secret) if piece in text]
    assert found == [], f"{found} of {secret!r} in {text!r}"


def pure_base64(prefix: bytes, secret: bytes) -> str:
    """The characters of base64(prefix + secret + ...) that encode only secret bytes."""
    encoded = base64.b64encode(prefix + secret + b"\0\0\0").decode()
    start, end = len(prefix) * 8, (len(prefix) + len(secret)) * 8  # the secret's bits
    return "".join(c for j, c in enumerate(encoded) if 6 * j >= start and 6 * j + 6 <= end)


# --- each form ---------------------------------------------------------------------------------
TOKEN = "tK9_zQ3-vLw8Rb2+Xy/5PqN7mJ4hGf6DsA1cE0uY"
PASSWORD = "p@ss w0rd/ü:long"
URL = "https://etl:" + quote(PASSWORD, safe="") + "@crm.example/api?api_key=k3y-v4lue-123&x=1"
CONNECTION = ConnectionInfo("crm", URL, {"Authorization": f"Bearer {TOKEN}", "X-Trace": "on"})


@pytest.fixture
def redactor() -> Redactor:
    redactor = Redactor()
    redactor.add_connection(CONNECTION)
    return redactor


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "form",
    [
        TOKEN,
        f"Bearer {TOKEN}",
        PASSWORD,
        quote(PASSWORD, safe=""),
        quote(PASSWORD),
        quote_plus(PASSWORD),
        quote(PASSWORD, safe="").lower(),
        quote(TOKEN, safe=""),
        quote_plus(TOKEN),
        basic("etl", PASSWORD),
        base64.b64encode(TOKEN.encode()).decode(),
        base64.urlsafe_b64encode(b"x" + TOKEN.encode()).decode(),
        "k3y-v4lue-123",
    ],
    ids=[
        "token",
        "header value",
        "password",
        "password quoted",
        "password quoted keeping slashes",
        "password quote_plus",
        "password quoted lower-case escapes",
        "token quoted",
        "token quote_plus",
        "basic token",
        "token base64",
        "token base64 url-safe misaligned",
        "query value",
    ],
)
def test_every_form_of_a_secret_is_hidden(redactor: Redactor, form: str) -> None:
    redacted = redactor.redact(f"peer said: {form} (end)")
    # (the space before a token goes too: "Bearer <token>" is a secret as a whole)
    assert redacted.startswith("peer said:") and redacted.endswith(" (end)")
    assert MASK in redacted
    core = form.split(" ", 1)[-1]
    assert_no_slice(core, redacted)


def test_a_secret_inside_a_larger_base64_text_is_hidden(redactor: Redactor) -> None:
    prefix = b'{"authorization": "Bearer '
    encoded = base64.b64encode(prefix + TOKEN.encode() + b'"}').decode()
    redacted = redactor.redact(f"echo {encoded}")
    assert redacted.startswith("echo eyJhdXRob3JpemF0aW9uIjog")  # the JSON around stays
    assert_no_slice(pure_base64(prefix, TOKEN.encode()), redacted)


def test_a_basic_authorization_header_hides_what_it_encodes() -> None:
    token = basic("svc", "Sesame-0pen-Sesame")
    redactor = Redactor()
    redactor.add_connection(
        ConnectionInfo("api", "https://api.example/", {"X-Auth": f"Basic {token}"})
    )
    assert redactor.redact("Sesame-0pen-Sesame") == MASK
    assert redactor.redact(f"Authorization: Basic {token}") == f"Authorization: {MASK}"


def test_a_token_standing_as_the_user_name_is_hidden() -> None:
    redactor = Redactor()
    redactor.add_connection(ConnectionInfo("api", "https://ghp_0123456789abcdef@api.example/"))
    assert redactor.redact("token ghp_0123456789abcdef") == f"token {MASK}"
    assert MASK in redactor.redact(basic("ghp_0123456789abcdef", ""))


def test_what_is_no_secret_stays_readable(redactor: Redactor) -> None:
    text = "HTTP 403 from crm.example for user etl: x=1, on, Bearer scheme expected"
    assert redactor.redact(text) == text


def test_short_secrets_are_hidden_whole_and_tiny_ones_not_looked_for() -> None:
    redactor = Redactor(["hunt2", "ab"])
    assert redactor.redact("pw hunt2, ab") == f"pw {MASK}, ab"


def test_an_empty_redactor_changes_nothing() -> None:
    assert not Redactor()
    assert Redactor().redact("anything at all") == "anything at all"
    assert Redactor().cut("0123456789", 4) == "0123"


def test_a_context_teaches_its_redactor_each_connection_it_looks_up() -> None:
    context = ExecutionContext(connection_lookup=lambda name: CONNECTION)
    assert context.redactor.redact(TOKEN) == TOKEN
    context.connection("crm")
    assert context.redactor.redact(TOKEN) == MASK


# --- properties, over several seeds ------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_no_slice_of_a_secret_survives(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(CASES):
        secret = secret_of(rng)
        redactor = Redactor([secret])
        pieces, kept = [], []
        for _ in range(rng.randint(1, 6)):
            start = rng.randrange(len(secret) - 7)
            fragment = secret[start : rng.randint(start + 8, len(secret))]
            around = filler(rng)
            pieces += [around, fragment]
            kept.append(around)
        tail = filler(rng)
        redacted = redactor.redact("".join([*pieces, tail]))
        assert_no_slice(secret, redacted)
        assert redacted.replace(MASK, "") == "".join([*kept, tail])  # only secrets went


@pytest.mark.parametrize("seed", SEEDS)
def test_no_encoded_form_of_a_secret_survives(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(CASES):
        secret = secret_of(rng)
        redactor = Redactor([secret])
        prefix = filler(rng, 0, 5).encode()
        encoded = base64.b64encode(prefix + secret.encode() + filler(rng, 0, 5).encode()).decode()
        urlsafe = encoded.replace("+", "-").replace("/", "_")
        quoted = [quote(secret, safe=""), quote_plus(secret)]
        text = f"{filler(rng)}{encoded}{filler(rng)}{urlsafe} {' '.join(quoted)}"
        redacted = redactor.redact(text)
        core = pure_base64(prefix, secret.encode())
        assert_no_slice(core, redacted)
        assert_no_slice(core.replace("+", "-").replace("/", "_"), redacted)
        for form in quoted:
            assert_no_slice(form, redacted)


@pytest.mark.parametrize("seed", SEEDS)
def test_text_is_redacted_then_cut(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(CASES):
        secret = secret_of(rng)
        redactor = Redactor([secret])
        limit = rng.randint(1, 120)
        # The secret starts anywhere around the cut, often straddling it.
        text = filler(rng, 0, limit + 10) + secret + filler(rng)
        cut = redactor.cut(text, limit)
        assert redactor.redact(text).startswith(cut)
        assert len(cut) <= limit + len(MASK)
        assert not set(cut.replace(MASK, "")) & set(SECRET_CHARS)  # no character of it


def test_the_cut_no_longer_leaves_the_start_of_a_token() -> None:
    redactor = Redactor([f"Bearer {TOKEN}"])
    # The cut falls 8 characters into the token: cutting first left them for redaction to miss.
    quoted = redactor.cut("." * 170 + f"Authorization: Bearer {TOKEN}", 200)
    assert_no_slice(TOKEN, quoted)
    assert quoted == "." * 170 + "Authorization: " + MASK


# --- logs ----------------------------------------------------------------------------------
@pytest.fixture
def log() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, stream


def test_log_records_are_redacted_while_a_node_runs(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log
    with scope(Redactor([TOKEN])):
        logger.warning("peer answered %s", f"bad token {TOKEN}")
        try:
            raise ValueError(f"echo: {TOKEN}")
        except ValueError:
            logger.exception("failed")
    logger.warning("after the run: %s", TOKEN)  # no node run in progress knows it any more
    lines = stream.getvalue()
    assert f"peer answered bad token {MASK}" in lines
    assert f"ValueError: echo: {MASK}" in lines
    assert lines.count(TOKEN) == 1 and lines.endswith(f"after the run: {TOKEN}\n")


def test_the_redactor_is_built_once_and_learns_a_connection_once(redactor: Redactor) -> None:
    windows = redactor._windows
    redactor.add_connection(CONNECTION)
    assert redactor._windows is windows


# --- escaped and re-cased secrets --------------------------------------------------------------
def json_escaped(text: str) -> str:
    """``text`` as a JSON string's inside, ASCII only, with ``/`` escaped too (as PHP does)."""
    return json.dumps(text, ensure_ascii=True)[1:-1].replace("/", "\\/")


def html_referenced(text: str, rng: random.Random) -> str:
    """``text`` with some characters written as HTML character references."""
    forms = [lambda c: f"&#x{ord(c):X};", lambda c: f"&#{ord(c)};", html.escape]
    return "".join(
        rng.choice(forms)(c) if not c.isalnum() or rng.random() < 0.3 else c for c in text
    )


def test_a_secret_with_json_escaped_slashes_is_hidden_whole() -> None:
    secret = "ab/cd/efg/hijk/lm/nopq/rs"  # pieces of 2 to 4 characters between the escapes
    redacted = Redactor([secret]).redact(f'{{"error": "denied: {json_escaped(secret)}"}}')
    assert redacted == '{"error": "denied: ***"}'


def test_unicode_escaped_text_and_html_references_are_undone_before_looking() -> None:
    redactor = Redactor([PASSWORD])  # 'p@ss w0rd/ü:long'
    assert redactor.redact(f"x {json_escaped(PASSWORD)} y") == "x *** y"
    assert redactor.redact("x p&#x40;ss&#32;w0rd&#x2F;&uuml;&colon;long y") == "x *** y"
    assert redactor.redact("<p>p&#64;ss w0rd&sol;&#xFC;:lo</p>") == "<p>***</p>"


def test_a_secret_in_another_case_is_hidden() -> None:
    redactor = Redactor([TOKEN])
    assert redactor.redact(f"[{TOKEN.upper()}] [{TOKEN.lower()}] [{TOKEN.swapcase()}]") == (
        "[***] [***] [***]"
    )
    # Short secrets (4 to 7 characters) keep their case: ordinary words stay readable.
    assert Redactor(["Paris"]).redact("PARIS, paris, Paris") == "PARIS, paris, ***"


def test_text_with_escapes_but_no_secret_is_unchanged(redactor: Redactor) -> None:
    text = '{"path": "\\/api\\/v1", "name": "M\\u00fcller & S\\u00f6hne &amp; Co &#x2F;"}'
    assert redactor.redact(text) == text


@pytest.mark.parametrize("seed", SEEDS)
def test_no_slice_of_an_escaped_or_re_cased_secret_survives(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(CASES):
        secret = secret_of(rng) + rng.choice(["", "ä", "/ü", "€&<"])
        redactor = Redactor([secret])
        before, after = filler(rng), filler(rng)
        # Each way of writing the secret, and how to read the redacted text back.
        for written, read in [
            (json_escaped(f"{before}{secret}{after}"), lambda t: json.loads(f'"{t}"')),
            (html_referenced(f"{before}{secret}{after}", rng), html.unescape),
            (f"{before}{secret.upper()}{after}", str.lower),
            (f"{before}{secret.lower()}{after}", str.lower),
        ]:
            redacted = read(redactor.redact(written))
            assert_no_slice(secret.lower(), redacted.lower())
            assert redacted.replace(MASK, "").lower() == f"{before}{after}".lower(), written
