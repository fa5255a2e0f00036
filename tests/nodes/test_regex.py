"""User regular expressions: linear time, ``re.search`` answers, refused constructs named."""

from __future__ import annotations

import random
import re
import time
from typing import Any

import pytest

from flows.engine.executor import build_node
from flows.validation import validate_flow
from nodes.builtin.filter import FilterNode
from nodes.builtin.operators import OPERATORS
from nodes.sdk import ExecutionContext, NodeError
from nodes.sdk.node import RowBatch
from nodes.sdk.regex import RegexError, compile_regex

CATASTROPHIC = r"(a+)+$"
ROWS = 50_000
# Each value makes a backtracking engine try every way of splitting the a's (2**24 paths).
NEAR_MISS = "a" * 24 + "!"


def filtered(batch: Any) -> int:
    node = FilterNode({"conditions": [{"field": "name", "op": "regex", "value": CATASTROPHIC}]})
    return sum(map(len, node.execute(ExecutionContext(), {"in": iter([batch])})))


@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_over_many_records_takes_linear_time() -> None:
    records = [{"id": i, "name": NEAR_MISS if i % 2 else "a" * 24} for i in range(ROWS)]
    started = time.monotonic()
    assert filtered(records) == ROWS // 2
    assert time.monotonic() - started < 5


@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_over_a_row_batch_takes_linear_time() -> None:
    rows = [(i, NEAR_MISS if i % 2 else "a" * 24) for i in range(ROWS)]
    started = time.monotonic()
    assert filtered(RowBatch(["id", "name"], rows)) == ROWS // 2
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(a)\1", "backreference"),
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"foo(?=bar)", "lookahead (?="),
        (r"foo(?!bar)", "negative lookahead (?!"),
        (r"(?<=\$)\d+", "lookbehind (?<="),
        (r"(?<!-)\d+", "negative lookbehind (?<!"),
        (r"(a)?(?(1)b|c)", "conditional group"),
        (r"(?>a+)b", "atomic group"),
        (r"a++b", "possessive quantifier"),
        (r"a{1001}", "repetition count above 1000"),
        (r"a{99999999999}", "repetition number is too large"),
        (r"((a{100}){100}){100}", "too large"),
        ("(" * 500 + ")" * 500, "nested too deeply"),
        ("(" * 3000 + ")" * 3000, "too long (6000 characters; at most 1000 are allowed)"),
    ],
)
def test_constructs_without_a_linear_time_match_are_refused_by_name(
    pattern: str, construct: str
) -> None:
    with pytest.raises(RegexError, match=re.escape(construct)):
        compile_regex(pattern)


def test_a_refused_pattern_is_named_by_its_path_when_a_flow_is_saved(
    minimal_flow: dict[str, Any],
) -> None:
    conditions = minimal_flow["nodes"][1]["config"]["conditions"]
    conditions.append({"field": "status", "op": "regex", "value": r"^(\w+)\1$"})
    found = [str(problem) for problem in validate_flow(minimal_flow)]
    assert len(found) == 1, found
    assert found[0].startswith(f"nodes[1].config.conditions[{len(conditions) - 1}].value")
    assert "backreference" in found[0]
    assert "linear-time" in found[0]


def test_a_pattern_saved_before_the_rule_fails_its_run_for_good_with_the_reason() -> None:
    condition = {"field": "email", "op": "regex", "value": r"^(?!test).*@example\.com$"}
    spec = {"key": "keep", "type": "filter", "config": {"conditions": [condition]}}
    with pytest.raises(NodeError) as caught:
        build_node(spec)
    assert caught.value.permanent
    assert str(caught.value).startswith("invalid config: config.conditions[0].value: ")
    assert "negative lookahead" in str(caught.value)


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"\d", "٣", True),  # Unicode digits, as Python's \d
        (r"^\d+$", "12a", False),
        (r"\s", "\u00a0", True),
        (r"\s", "\x1c", True),
        (r"\s", "\v", True),
        (r"\w", "é", True),
        (r"\w", "\u0301", False),  # a combining mark is not a word character in Python
        (r"(?a)\w", "é", False),
        (r"\W", "é", False),
        (r"[^\d\s]", "٣ ", False),
        (r"abc$", "abc\n", True),  # $ also before a final newline
        (r"abc$", "abc\n\n", False),
        (r"abc\Z", "abc\n", False),
        (r"(?m)^b$", "a\nb\nc", True),
        (r"^b", "a\nb", False),
        (r"a.c", "a\nc", False),
        (r"(?s)a.c", "a\nc", True),
        (r"(?i)straße", "STRASSE", False),
        (r"(?i)ÉCOLE", "école", True),
        (r"(?i:a)B", "Ab", False),
        (r"x{,2}y", "xxy", True),
        (r"[]a]", "]", True),
        (r"[[:alpha:]]", "z", False),  # a plain set in Python, not a POSIX class
        (r"[[:alpha:]]", ":]", True),
        (r"(?:a{2}){3}", "aaaaaa", True),
        (r"(?x) a b # spaced", "ab", True),
        (r"\bcat\b", "a cat!", True),
        (r"\Bat", "cat", True),
    ],
)
def test_patterns_mean_what_python_re_search_makes_of_them(
    pattern: str, text: str, expected: bool
) -> None:
    assert (re.search(pattern, text) is not None) is expected
    assert compile_regex(pattern).search(text) is expected


# --- property: the answers of re.search, over generated patterns and texts ------------------
ALPHABET = "ab-_ .\n\t٣éÉ\u00a0Ω"
ATOMS = [
    "a", "b", "-", ".", r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", "[ab]", "[^a]", r"[\w-]",
    r"[^\s\d]", "[a-z]", "é", "(?i:é)", "(?i:a)", "\\.", "[.]", "Ω",
]  # fmt: skip
QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{,2}", "*?", "+?"]
ANCHORS = ["^", "$", r"\A", r"\Z", r"\b", r"\B"]


def random_pattern(rng: random.Random, depth: int = 0) -> str:
    parts = []
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.15 and depth < 3:
            inner = "|".join(random_pattern(rng, depth + 1) for _ in range(rng.randint(1, 3)))
            part = rng.choice(["(", "(?:", "(?s:", "(?m:", "(?i:"]) + inner + ")"
        elif roll < 0.25:
            part = rng.choice(ANCHORS)
        else:
            part = rng.choice(ATOMS)
        parts.append(part + ("" if part in ANCHORS else rng.choice(QUANTIFIERS)))
    return "".join(parts)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_generated_patterns_give_the_answers_of_re_search(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        pattern = random_pattern(rng)
        bounded = compile_regex(pattern)
        for _ in range(5):
            text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
            if text.endswith("\n") and "$" in pattern[:-1]:
                continue  # the documented difference: more pattern after $ before a final \n
            if "\\b" in pattern.lower() and not text.isascii():
                continue  # the documented difference: \b counts ASCII word characters only
            expected = re.search(pattern, text) is not None
            assert bounded.search(text) is expected, (pattern, text, bounded.translated)
            assert OPERATORS["regex"](text, bounded) is expected


def test_dollar_before_a_final_newline_ends_the_match() -> None:
    """A documented difference: after a $ that matched before a final newline, nothing more
    of the pattern can match that newline (Python would let ``$\\n`` match it)."""
    assert re.search("a$\n", "a\n") is not None
    assert not compile_regex("a$\n").search("a\n")
    assert compile_regex("a$").search("a\n")


def test_word_boundaries_count_only_ascii_word_characters() -> None:
    """A documented difference: \\b next to a non-ASCII letter."""
    assert re.search(r"\bé", " é") is not None
    assert not compile_regex(r"\bé").search(" é")
    assert compile_regex(r"\bcafe\b").search("the cafe.")


def test_non_strings_never_match_and_lone_surrogates_do_not_break_matching() -> None:
    pattern = compile_regex(".")
    assert OPERATORS["regex"](1, pattern) is False
    assert OPERATORS["regex"](None, pattern) is False
    assert OPERATORS["regex"]("\ud800", compile_regex("x")) is False


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("\\w" * 6000, "too long (12000 characters; at most 1000 are allowed)"),
        ("\\w" * 40000, "too long (80000 characters; at most 1000 are allowed)"),
        ("\\w" * 500, "its translation for the linear-time engine passes 1024 KiB"),
        ("(?i)" + "\\W\\w" * 248, "passes 1024 KiB"),
    ],
)
def test_compiling_a_pattern_is_bounded_in_time(pattern: str, message: str) -> None:
    compile_regex.cache_clear()
    started = time.perf_counter()
    with pytest.raises(RegexError, match=re.escape(message)):
        compile_regex(pattern)
    assert time.perf_counter() - started < 1.0


def test_the_longest_patterns_allowed_still_compile_quickly() -> None:
    compile_regex.cache_clear()
    started = time.perf_counter()
    assert compile_regex("a" * 1000).search("a" * 1000)
    assert compile_regex("\\w+\\s" * 80).search("ab " * 80)
    assert time.perf_counter() - started < 1.0
