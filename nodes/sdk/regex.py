"""Regular expressions from users, matched in time linear in the text (decision 0016).

A pattern is written in Python's syntax and means what :func:`re.search` makes of it, but it
runs on RE2, which never backtracks: ``(a+)+$`` over a long line costs what ``a+$`` costs.
Python's own parser reads the pattern; the tree is written back out in RE2's syntax with
Python's meaning spelled out (Unicode ``\\d``/``\\w``/``\\s`` as explicit code point ranges,
``$`` also before a final newline, ``\\Z``), so that ordinary patterns give the answers
``re.search`` gives. What RE2 cannot run in linear time (backreferences, lookaround,
conditionals, atomic groups, possessive quantifiers) is refused by name when the pattern is
checked, never attempted. One known difference is kept: ``\\b`` and ``\\B`` count only ASCII
letters, digits and ``_`` as word characters.

Every place a user's text becomes a regular expression goes through :func:`compile_regex`.
"""

from __future__ import annotations

import array
import functools
import re
import sys
from collections.abc import Callable, Iterable
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import re2

__all__ = ["BoundedRegex", "RegexError", "compile_regex"]

#: RE2's limit on a counted repetition such as ``a{1000}``.
MAX_REPEAT_COUNT = 1000
#: The longest pattern accepted (characters): reading one costs time and memory up front.
MAX_PATTERN_LENGTH = 1000
#: The largest translation written for RE2 (characters). Python's Unicode ``\w`` alone is
#: about 11.5 kB of explicit ranges: this leaves room for ~85 of them (0.2 s to compile).
MAX_TRANSLATED_LENGTH = 1 << 20

_UNSUPPORTED = {
    sre.GROUPREF: "a backreference (\\1 or (?P=name))",
    sre.GROUPREF_EXISTS: "a conditional group (?(1)...)",
    sre.ATOMIC_GROUP: "an atomic group (?>...)",
    sre.POSSESSIVE_REPEAT: "a possessive quantifier (*+, ++, ?+ or {m,n}+)",
}


class RegexError(ValueError):
    """A pattern that cannot be used; the message says why (and names the construct)."""


class BoundedRegex:
    """A compiled pattern: :meth:`search` answers what ``re.search(pattern, text)`` would."""

    __slots__ = ("_match", "pattern", "translated")

    def __init__(self, pattern: str, translated: str, program: Any, on_empty: bool) -> None:
        self.pattern = pattern
        self.translated = translated
        unanchored = re2._re2.RE2.Anchor.UNANCHORED
        match: Callable[..., list[tuple[int, int]]] = program.Match
        none = (-1, -1)

        def search(text: str) -> bool:
            if not text:
                return on_empty
            data = text.encode("utf-8", "surrogatepass")
            return match(unanchored, data, 0, len(data))[0] != none

        self._match = search

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``."""
        return self._match(text)

    def __repr__(self) -> str:
        return f"BoundedRegex({self.pattern!r})"


@functools.lru_cache(maxsize=64)
def compile_regex(pattern: str) -> BoundedRegex:
    """The pattern compiled for linear-time matching; :class:`RegexError` when it cannot be."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(
            f"regular expression too long ({len(pattern)} characters; "
            f"at most {MAX_PATTERN_LENGTH} are allowed)"
        )
    try:
        tree = sre_parse.parse(pattern)
        translated = _Writer().sequence(tree, tree.state.flags)
        # Python's \B never matches in an empty string; RE2's does: its answer is fixed.
        on_empty = _Writer(empty=True).sequence(tree, tree.state.flags)
    except (re.error, OverflowError) as exc:
        raise RegexError(f"invalid regular expression: {exc}") from None
    except RecursionError:
        raise RegexError("regular expression nested too deeply") from None
    program = _program(translated)
    empty = program if on_empty == translated else _program(on_empty)
    none = (-1, -1)
    matches_empty = empty.Match(re2._re2.RE2.Anchor.UNANCHORED, b"", 0, 0)[0] != none
    return BoundedRegex(pattern, translated, program, matches_empty)


def _program(translated: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    program = re2._re2.RE2(translated.encode("utf-8", "surrogatepass"), options)
    if not program.ok():
        # The tree is valid Python: what RE2 still refuses is its size (nested counted repeats).
        reason = program.error().decode(errors="replace")
        raise RegexError(f"regular expression too large to run in linear time ({reason})")
    return program


class _Writer:
    """Writes a parsed Python pattern in RE2's syntax, with Python's meaning (``empty``: as
    it is matched against the empty string)."""

    def __init__(self, empty: bool = False) -> None:
        self.empty = empty
        self.size = 0  # characters written so far

    def sequence(self, items: Iterable[tuple[Any, Any]], flags: int) -> str:
        return "".join(self.item(op, arg, flags) for op, arg in items)

    def item(self, op: Any, arg: Any, flags: int) -> str:
        text = self._item(op, arg, flags)
        # Leaves count their text, groups and repeats their own few characters: the sum is
        # the translation's length, checked as it grows (a long one is never built whole).
        self.size += len(text) if op in _LEAVES else 16
        if self.size > MAX_TRANSLATED_LENGTH:
            raise RegexError(
                "regular expression too large: its translation for the linear-time engine "
                f"passes {MAX_TRANSLATED_LENGTH // 1024} KiB (Unicode classes such as \\w "
                "are large: use fewer, or ASCII ones: (?a) or [A-Za-z0-9_])"
            )
        return text

    def _item(self, op: Any, arg: Any, flags: int) -> str:
        if op in _UNSUPPORTED:
            raise _unsupported(_UNSUPPORTED[op])
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            where = "lookahead" if arg[0] == 1 else "lookbehind"
            kind = f"a {where} ({'?=' if arg[0] == 1 else '?<='}...)"
            if op is sre.ASSERT_NOT:
                kind = f"a negative {where} ({'?!' if arg[0] == 1 else '?<!'}...)"
            raise _unsupported(kind)
        if op is sre.LITERAL:
            return _case(_char(arg), flags)
        if op is sre.NOT_LITERAL:
            return _case(f"[^{_char(arg)}]", flags)
        if op is sre.ANY:
            return "(?s:.)" if flags & re.DOTALL else "."
        if op is sre.IN:
            return _case(_char_class(arg, flags), flags)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(branch, flags) for branch in arg[1]) + ")"
        if op is sre.SUBPATTERN:
            _group, add, remove, items = arg
            return "(?:" + self.sequence(items, (flags | add) & ~remove) + ")"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, items = arg
            return f"(?:{self.sequence(items, flags)}){_count(low, high)}"
        if op is sre.AT:
            return _NEVER if self.empty and arg is sre.AT_NON_BOUNDARY else _anchor(arg, flags)
        raise RegexError(f"unsupported regular expression construct {op}")  # pragma: no cover


_LEAVES = frozenset({sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN, sre.AT})


def _unsupported(construct: str) -> RegexError:
    return RegexError(
        f"{construct} is not supported: regular expressions run on a linear-time engine "
        "(RE2) that has no such construct; rewrite the pattern without it"
    )


def _char(code: int) -> str:
    return chr(code) if chr(code).isascii() and chr(code).isalnum() else f"\\x{{{code:x}}}"


def _case(text: str, flags: int) -> str:
    return f"(?i:{text})" if flags & re.IGNORECASE else text


def _count(low: int, high: int) -> str:
    bounded = high is not sre.MAXREPEAT
    if low > MAX_REPEAT_COUNT or (bounded and high > MAX_REPEAT_COUNT):
        given = str(low) if low == high else f"{low},{high if bounded else ''}"
        raise RegexError(
            f"a repetition count above {MAX_REPEAT_COUNT} is not supported "
            f"(got {{{given}}}): repeat a group instead"
        )
    if not bounded:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    return "?" if (low, high) == (0, 1) else f"{{{low},{high}}}"


def _anchor(at: Any, flags: int) -> str:
    multiline = flags & re.MULTILINE
    if at is sre.AT_BEGINNING:
        return "(?m:^)" if multiline else "\\A"
    if at is sre.AT_BEGINNING_STRING:
        return "\\A"
    if at is sre.AT_END:
        # Python's $ also matches before a final newline: for a yes/no answer, taking that
        # newline in is the same (no pattern of use consumes a character after $).
        return "(?m:$)" if multiline else "(?:\\n?\\z)"
    if at is sre.AT_END_STRING:
        return "\\z"
    if at is sre.AT_BOUNDARY:
        return "\\b"
    if at is sre.AT_NON_BOUNDARY:
        return "\\B"
    raise RegexError(f"unsupported anchor {at}")  # pragma: no cover


# --- character classes: every item becomes explicit code point ranges ------------------------
Ranges = list[tuple[int, int]]
_NEVER = "[^\\x00-\\x{10ffff}]"  # matches nothing


def _char_class(items: list[tuple[Any, Any]], flags: int) -> str:
    return _class_text(tuple(items), bool(flags & re.ASCII))


@functools.lru_cache(maxsize=256)
def _class_text(items: tuple[tuple[Any, Any], ...], ascii_only: bool) -> str:
    negate = bool(items) and items[0][0] is sre.NEGATE
    ranges: Ranges = []
    for op, arg in items[1:] if negate else items:
        if op is sre.LITERAL:
            ranges.append((arg, arg))
        elif op is sre.RANGE:
            ranges.append(arg)
        elif op is sre.CATEGORY:
            ranges.extend(_category(arg, ascii_only=ascii_only))
        else:  # pragma: no cover - the parser puts nothing else in a set
            raise RegexError(f"unsupported character set item {op}")
    merged = _merge(ranges)
    if not merged:  # an empty set: nothing matches (RE2 has no empty class)
        return _NEVER if not negate else "(?s:.)"
    body = "".join(
        _char(low) if low == high else f"{_char(low)}-{_char(high)}" for low, high in merged
    )
    return f"[{'^' if negate else ''}{body}]"


_CLASSES = {sre.CATEGORY_DIGIT: r"\d+", sre.CATEGORY_SPACE: r"\s+", sre.CATEGORY_WORD: r"\w+"}
_NEGATED = {
    sre.CATEGORY_NOT_DIGIT: sre.CATEGORY_DIGIT,
    sre.CATEGORY_NOT_SPACE: sre.CATEGORY_SPACE,
    sre.CATEGORY_NOT_WORD: sre.CATEGORY_WORD,
}


def _category(category: Any, ascii_only: bool) -> tuple[tuple[int, int], ...]:
    """The code points of ``\\d``, ``\\s``, ``\\w`` (or their negations) as ranges."""
    if category in _NEGATED:
        return tuple(_complement(_categories(ascii_only)[_NEGATED[category]]))
    return _categories(ascii_only)[category]


@functools.cache
def _categories(ascii_only: bool) -> dict[Any, tuple[tuple[int, int], ...]]:
    """What Python's re itself counts as a digit, space and word character (once a process):
    found by running ``\\d+``, ``\\s+`` and ``\\w+`` over every code point."""
    every = array.array("I", range(sys.maxunicode + 1)).tobytes()
    text = every.decode("utf-32-le", "surrogatepass")
    flags = re.ASCII if ascii_only else 0
    return {
        category: tuple((m.start(), m.end() - 1) for m in re.finditer(pattern, text, flags))
        for category, pattern in _CLASSES.items()
    }


def _merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    merged: Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges: Iterable[tuple[int, int]]) -> Ranges:
    result: Ranges = []
    start = 0
    for low, high in _merge(ranges):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= sys.maxunicode:
        result.append((start, sys.maxunicode))
    return result
