"""Which queries ``sql_query`` may read in key ranges on its own: a plain single-table select.

Reading a query in slices wraps it: ``SELECT * FROM (<query>) AS q WHERE q.key >= low AND
q.key < high``. That returns exactly the query's rows, each once, when the query's rows do not
depend on one another, which this module checks conservatively, on the query's tokens (string
literals, quoted names and comments skipped as the database would)::

    SELECT <items> FROM <one table> [[AS] alias] [WHERE ...] [ORDER BY ...] [;]

and nothing that relates rows to each other: no join, ``GROUP BY``, ``HAVING``, ``DISTINCT``,
aggregate function, window (``OVER``), ``LIMIT``/``OFFSET``/``FETCH``, set operation,
``WITH``, locking clause or ``INTO``. The key must reach the output under its own name: as a
bare column (``id``, ``o.id``) or through ``*``, and no other item may mention that name (so
nothing else is called ``id`` or hides it under a cast). Anything else, including what this
module cannot read, is not a plain select: the query is then read once (decision 0030).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Words that make a query more than a plain select wherever they stand outside parentheses.
_NOT_PLAIN = frozenset({
    "group", "having", "window", "limit", "offset", "fetch", "for", "union", "intersect",
    "except", "minus", "into", "lock", "procedure", "distinct", "distinctrow", "qualify",
    "straight_join", "high_priority", "sql_calc_found_rows", "sql_small_result",
    "sql_big_result", "sql_buffer_result", "sql_no_cache", "sql_cache", "select", "with", "only",
    "lateral"
})  # fmt: skip
#: Aggregate functions (followed by ``(``) anywhere: without GROUP BY, MariaDB/MySQL may fold
#: the rows into one, and a slice would each give its own.
_AGGREGATES = frozenset({
    "count", "sum", "avg", "min", "max", "every", "bool_and", "bool_or", "bit_and", "bit_or",
    "bit_xor", "array_agg", "string_agg", "json_agg", "jsonb_agg", "json_object_agg",
    "jsonb_object_agg", "json_objectagg", "json_arrayagg", "xmlagg", "group_concat", "std",
    "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "covar_pop",
    "covar_samp", "corr", "regr_slope", "regr_intercept", "regr_count", "regr_r2", "regr_avgx",
    "regr_avgy", "regr_sxx", "regr_syy", "regr_sxy", "percentile_cont", "percentile_disc",
    "mode", "range_agg", "range_intersect_agg", "any_value", "median"
})  # fmt: skip

_TOKEN = {
    False: re.compile(  # PostgreSQL
        r"""(?P<space>\s+)
        | (?P<comment>--[^\n]*)
        | (?P<block>/\*)
        | (?P<string>[eE]'(?:[^'\\]|\\.|'')*' | '(?:[^']|'')*')
        | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
        | (?P<quoted>"(?:[^"]|"")*")
        | (?P<param>%%|%\(\w+(?:\.\w+)*\)s)
        | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
        | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
        | (?P<punct>[(),.;*])
        | (?P<operator>[-+/<>=~!@\#%^&|`?:\[\]]+)""",
        re.VERBOSE | re.DOTALL,
    ),
    True: re.compile(  # MariaDB/MySQL
        r"""(?P<space>\s+)
        | (?P<comment>--(?=\s|$)[^\n]*|\#[^\n]*)
        | (?P<block>/\*)
        | (?P<string>'(?:[^'\\]|\\.|'')*' | "(?:[^"\\]|\\.|"")*")
        | (?P<quoted>`(?:[^`]|``)*`)
        | (?P<param>%%|%\(\w+(?:\.\w+)*\)s)
        | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
        | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*)
        | (?P<punct>[(),.;*])
        | (?P<operator>[-+/<>=~!@%^&|?:\[\]]+)""",
        re.VERBOSE | re.DOTALL,
    ),
}


@dataclass(frozen=True)
class Token:
    kind: str  # word, quoted, string, number, param, punct, operator
    text: str
    start: int
    end: int
    depth: int  # parentheses around it

    @property
    def name(self) -> str:
        """A word or quoted name as the database reads it (quotes removed)."""
        if self.kind == "quoted":
            quote = self.text[0]
            return self.text[1:-1].replace(quote * 2, quote)
        return self.text

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


@dataclass(frozen=True)
class Item:
    """One item of the select list."""

    tokens: tuple[Token, ...]

    @property
    def star(self) -> bool:
        """``*`` or ``alias.*``."""
        texts = [t.text for t in self.tokens]
        return texts == ["*"] or (len(texts) >= 3 and texts[-2:] == [".", "*"])

    @property
    def column(self) -> Token | None:
        """The column of a bare column reference (``id``, ``o.id``, ``"Id"``), else ``None``."""
        names = self.tokens[::2]
        dots = self.tokens[1::2]
        if len(self.tokens) % 2 == 0 or len(names) > 3:
            return None
        if any(t.text != "." for t in dots) or any(t.kind not in ("word", "quoted") for t in names):
            return None
        return self.tokens[-1]


@dataclass(frozen=True)
class PlainSelect:
    """A query found to be a plain single-table select (see the module docstring)."""

    mysql: bool
    #: The table's name as written, part by part (schema, table), each token's text.
    table: tuple[Token, ...]
    #: The query's text from after ``FROM`` up to ``WHERE``/``ORDER BY``/the end.
    from_text: str
    #: The text of its ``WHERE`` condition, if any.
    where_text: str | None
    items: tuple[Item, ...]

    def outputs(self, column: str) -> bool:
        """Whether the table's ``column`` reaches the output under its own name, alone."""
        fold = str.lower
        bare = [i for i in self.items if i.column is not None and self._same(i.column, column)]
        others = [i for i in self.items if i not in bare]
        mentioned = any(
            fold(t.name) == fold(column)
            for item in others
            for t in item.tokens
            if t.kind in ("word", "quoted")
        )
        stars = sum(i.star for i in self.items)
        return not mentioned and len(bare) + stars == 1

    def _same(self, token: Token, column: str) -> bool:
        if self.mysql:  # column names are case-insensitive
            return token.name.lower() == column.lower()
        # PostgreSQL folds unquoted names to lower case
        return (token.name if token.kind == "quoted" else token.text.lower()) == column


def tokens(query: str, mysql: bool) -> list[Token] | None:
    """The query's tokens (comments and spaces left out); ``None`` when it cannot be read."""
    pattern = _TOKEN[mysql]
    found: list[Token] = []
    depth = 0
    position = 0
    while position < len(query):
        match = pattern.match(query, position)
        if match is None:
            return None
        kind = match.lastgroup
        end = match.end()
        if kind == "tag":  # (a dollar quote's tag)
            kind = "dollar"
        if kind == "block":
            end = query.find("*/", position + 2)
            body = query[position + 2 : end]
            if end < 0 or "/*" in body or body[:1] in ("!", "+", "M"):
                return None  # unterminated, nested, or executable (MySQL /*! ... */)
            end += 2
        elif kind == "dollar":
            close = query.find(match.group(0), end)
            if close < 0:
                return None
            end = close + len(match.group(0))
            kind = "string"
        if kind not in ("space", "comment", "block"):
            text = query[position:end]
            if text == ")":
                depth -= 1
                if depth < 0:
                    return None
            found.append(Token(str(kind), text, position, end, depth))
            if text == "(":
                depth += 1
        position = end
    return found if depth == 0 else None


def plain_select(query: str, mysql: bool) -> PlainSelect | None:
    """The query as a :class:`PlainSelect`, or ``None`` when it is anything more."""
    found = tokens(query, mysql)
    if not found:
        return None
    if found[-1].text == ";":
        if query[found[-1].end :].strip():
            return None  # a comment after the ";" would swallow what a wrapper adds
        found = found[:-1]
    if not found or any(t.text == ";" for t in found) or not found[0].is_word("select"):
        return None
    for index, token in enumerate(found):
        following = found[index + 1].text if index + 1 < len(found) else ""
        if token.is_word("over") or (token.is_word(*_AGGREGATES) and following == "("):
            return None
        if token.depth == 0 and index > 0 and token.is_word(*_NOT_PLAIN):
            return None
    top = [i for i, t in enumerate(found) if t.depth == 0]
    try:
        from_at = next(i for i in top if found[i].is_word("from"))
    except StopIteration:
        return None
    items = _items(found[1:from_at])
    if items is None:
        return None
    rest = [i for i in top if i > from_at]
    clause = next((i for i in rest if found[i].is_word("where", "order")), len(found))
    table = _table(found[from_at + 1 : clause])
    if table is None:
        return None
    order = next((i for i in rest if found[i].is_word("order")), len(found))
    if order < len(found) and not (order + 1 < len(found) and found[order + 1].is_word("by")):
        return None
    end = found[order - 1].end if order < len(found) else found[-1].end
    from_text = query[found[from_at].end : found[clause].start if clause < len(found) else end]
    where_text = None
    if clause < len(found) and found[clause].is_word("where"):
        if clause + 1 >= order:
            return None
        where_text = query[found[clause].end : end]
    return PlainSelect(mysql, table, from_text, where_text, tuple(items))


def _items(found: list[Token]) -> list[Item] | None:
    """The select list's items, split at its top-level commas."""
    items: list[Item] = []
    current: list[Token] = []
    for token in [*found, None]:
        if token is None or (token.text == "," and token.depth == 0):
            if not current:
                return None
            items.append(Item(tuple(current)))
            current = []
        else:
            current.append(token)
    return items


def _table(found: list[Token]) -> tuple[Token, ...] | None:
    """The table's name parts from ``name [[AS] alias]`` (``schema.name`` allowed)."""
    if not found:
        return None
    parts = [found[0]]
    at = 1
    if len(found) > 2 and found[1].text == ".":
        parts.append(found[2])
        at = 3
    if any(t.kind not in ("word", "quoted") for t in parts):
        return None
    alias = found[at:]
    if alias and alias[0].is_word("as"):
        alias = alias[1:]
    if len(alias) > 1 or (alias and alias[0].kind not in ("word", "quoted")):
        return None
    return tuple(parts)
