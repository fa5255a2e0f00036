"""CSV files read by Arrow: the same batches as Python's ``csv`` gives, the values built only
when a node uses them (decision 0049).

Arrow parses each block of the file into columns of text (every cell as read, in C); the
cells of the declared typed columns are checked, in C, to be in the form ``str()`` of their
value writes (``_value_texts`` of :mod:`nodes.builtin.file_formats`: ``12.50``,
``2026-01-01T10:00:00+00:00``, an empty cell for null). A batch whose cells all are holds
them as a :class:`ArrowRows` source: its rows are built from that text with the very casts of
the Python reader when a node needs Python values (``filter``, ``map_fields``, the hand-off,
a preview), while ``sql_write``'s ``COPY`` takes the text straight from the Arrow columns
(:meth:`ArrowRows.copy_text`). A batch with another form of a value (``+5``, ``1e3``, a
bad cell) is cast by Python at once, as before: same values, same errors.

Only blocks Python's ``csv`` reads the same way take this path: UTF-8 text without a byte
order mark anywhere, whole lines of one record each — no quote character anywhere in the block, no
blank line, no ``\\r`` but in ``\\r\\n``, no NUL, no field longer than ``csv``'s field size
limit — with a row width Arrow accepts. At the first block that is not such, the rest of the
file is read by Python's ``csv`` from that block on (batches are cut at the same lines as
before: a block holds whole batches), so every error names the same line and column.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Sequence
from typing import IO, Any

from nodes.builtin.file_formats import (
    CASTS,
    Columns,
    _csv_plan,
    _Locator,
    not_encoded,
    read_csv_python,
    typed_rows,
)
from nodes.sdk.batches import RowBatch
from nodes.sdk.schema import FieldType

#: Bytes read from the (decompressed) stream at a time; a block holds whole batches.
BLOCK_BYTES = 1 << 18
_BOM = b"\xef\xbb\xbf"

#: Per type, the cells whose text is ``str()`` of the value the cast gives (an empty cell:
#: null), as RE2 patterns (Arrow's). Dates and datetimes are also checked on the calendar.
_FORMS: dict[FieldType, str] = {
    FieldType.INTEGER: r"^(?:|0|-?[1-9][0-9]*)$",
    FieldType.DECIMAL: r"^(?:|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?)$",
    FieldType.DATE: r"^(?:|[0-9]{4}-(?:0[1-9]|1[0-2])-[0-3][0-9])$",
    FieldType.DATETIME: (
        r"^(?:|[0-9]{4}-(?:0[1-9]|1[0-2])-[0-3][0-9][T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
        r"(?:\.[0-9]{6})?(?:[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)$"
    ),
}
#: Texts in those forms whose ``str()`` differs (or which Python refuses): a substring
#: anywhere in the column sends the batch to Python (a false alarm only costs speed).
_ODD: dict[FieldType, tuple[str, ...]] = {
    FieldType.INTEGER: (),
    FieldType.DECIMAL: ("0.000000",),  # str(Decimal("0.0000001")) == "1E-7"
    FieldType.DATE: ("0000-",),  # year 0
    FieldType.DATETIME: ("0000-", ".000000", "-00:00"),
}


def eligible(
    columns: Columns | None, header: bool, delimiter: str, quotechar: str, encoding: str
) -> bool:
    """Whether a file read with these options may go through Arrow: UTF-8, a one-character
    delimiter and quote character, declared types of text, integers, decimals, dates and
    datetimes only (floats, booleans and JSON are cast by Python), a header or columns."""
    try:
        if codecs.lookup(encoding).name != "utf-8":
            return False
    except LookupError:
        return False
    marks = (delimiter, quotechar)
    if len(delimiter) != 1 or len(quotechar) != 1 or delimiter == quotechar:
        return False
    if any(not mark.isascii() or mark in "\r\n" for mark in marks):
        return False
    if columns is None:
        return header
    return bool(columns) and all(kind not in CASTS or kind in _FORMS for kind in columns.values())


class _Prefixed(io.RawIOBase):
    """``prefix`` then the rest of ``stream``: the bytes read ahead, given back."""

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
        self.prefix, self.stream = memoryview(prefix), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.prefix:
            size = min(len(buffer), len(self.prefix))
            buffer[:size] = self.prefix[:size]
            self.prefix = self.prefix[size:]
            return size
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_csv(
    stream: IO[bytes],
    *,
    columns: Columns | None,
    header: bool,
    delimiter: str,
    quotechar: str,
    batch_size: int,
    encoding: str = "utf-8",
) -> Iterator[RowBatch]:
    """Row batches of a UTF-8 CSV file (see the module): those of
    :func:`~nodes.builtin.file_formats.read_csv_python`, built when used (``encoding``: a
    name of UTF-8, as the errors spell it)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    data, eof = b"", False

    def fill(size: int) -> None:
        """Read until ``data`` holds ``size`` bytes or the stream ends (the bytes joined once)."""
        nonlocal data, eof
        parts, held = [data], len(data)
        while not eof and held < size:
            more = stream.read(size - held)
            if more:
                parts.append(more)
                held += len(more)
            else:
                eof = True
        if len(parts) > 1:
            data = b"".join(parts)

    def by_python(head: list[str] | None, lines: int) -> Iterator[RowBatch]:
        return read_csv_python(
            io.BufferedReader(_Prefixed(data, stream)),
            columns=columns,
            header=header,
            delimiter=delimiter,
            quotechar=quotechar,
            encoding=encoding,
            batch_size=batch_size,
            head=head,
            lines=lines,
        )

    quote = quotechar.encode()
    fill(BLOCK_BYTES)
    if data.startswith(_BOM):  # Python keeps it, as part of the first cell
        yield from by_python(None, 0)
        return
    lines = 0
    if header:
        searched = 0  # a header longer than a block: read as much again, search the new bytes
        while data.find(b"\n", searched) < 0 and not eof:
            searched = len(data)
            fill(2 * len(data) + BLOCK_BYTES)
        end = data.find(b"\n")
        line = (data if end < 0 else data[:end]).removesuffix(b"\r")
        if not line or not _whole_lines(line, len(line), quote):
            yield from by_python(None, 0)
            return
        try:
            head = line.decode("utf-8").split(delimiter)
        except UnicodeDecodeError:
            yield from by_python(None, 0)
            return
        data, lines = (b"" if end < 0 else data[end + 1 :]), 1
    else:
        head = list(columns or ())
    names, positions, casts = _csv_plan(head, columns)
    width = len(head)
    arrow_names = [f"c{i}" for i in range(width)]
    picked = list(range(width)) if positions is None else positions
    plain = positions is None and not casts  # rows kept as lists of text, as Python's
    kinds = dict(casts)
    read_options = pacsv.ReadOptions(column_names=arrow_names, use_threads=False)
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter, quote_char=False, ignore_empty_lines=False
    )
    convert_options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(arrow_names, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
        check_utf8=True,
    )
    limit = csv.field_size_limit()
    want = BLOCK_BYTES
    scanned = seen = 0  # ``data[:scanned]`` searched: ``seen`` line ends, the last at ``last``
    last = -1
    while True:
        fill(want)
        if not data:
            return
        if eof:
            count = seen + data.count(b"\n", scanned) + (not data.endswith(b"\n"))
            end = len(data)
        else:
            at = data.rfind(b"\n", scanned)
            if at >= 0:
                seen += data.count(b"\n", scanned, at + 1)
                last = at
            scanned = len(data)
            whole = seen // batch_size * batch_size
            if not whole:  # a batch longer than a block (or a line): read as much again
                want = 2 * len(data)
                continue
            end, count, want = _after_line(data, last + 1, seen, whole), whole, BLOCK_BYTES
        scanned = seen = 0
        last = -1
        table = None
        if _whole_lines(data, end, quote):
            try:
                table = pacsv.read_csv(
                    pa.BufferReader(pa.py_buffer(data).slice(0, end)),
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=convert_options,
                    memory_pool=_pool(),
                )
            except pa.ArrowInvalid:  # a row's width, a byte that is not UTF-8: Python says
                table = None
                _check_utf8(data, end, lines, encoding)
        if (
            table is None
            or table.num_rows != count
            or any(
                pc.max(pc.binary_length(column, memory_pool=_pool())).as_py() > limit
                for column in table.columns
            )
        ):
            yield from by_python(head, lines)  # from this block on (``data`` holds it)
            return
        data = data[end:]
        out = [table.column(i) for i in picked]
        start, lines = lines, lines + count
        everywhere = all(_in_form(out[index], kind) for index, kind in casts)
        for offset in range(0, count, batch_size):
            size = min(batch_size, count - offset)
            piece = [column.slice(offset, size) for column in out]
            source = ArrowRows(names, piece, kinds, plain, start + offset)
            if everywhere or all(_in_form(piece[index], kind) for index, kind in casts):
                yield RowBatch(names, None, source=source)
            else:  # another form of a value, or a bad cell: cast now (it fails as before)
                yield RowBatch(names, *source.build())


def _after_line(data: bytes, end: int, count: int, wanted: int) -> int:
    """Where the ``wanted``-th line of ``data`` ends, ``data[:end]`` holding ``count`` lines
    (``end`` after a line end): a jump back by the lines' mean length, its lines counted,
    repeated; the last few lines found one by one."""
    mean = end / count
    while count - wanted > 8:
        at = data.rfind(b"\n", 0, max(end - int((count - wanted) * mean * 0.9), 0))
        lines = data.count(b"\n", at + 1, end)
        if at < 0 or count - lines < wanted:
            break
        end, count = at + 1, count - lines
    for _ in range(count - wanted):
        end = data.rfind(b"\n", 0, end - 1) + 1
    return end


def _pool() -> Any:
    """Arrow's memory for these reads: the C library's allocator, which gives memory back as
    blocks are freed (Arrow's default pool keeps about 20 MB more per process at its peak,
    for no CPU measured)."""
    import pyarrow as pa

    return pa.system_memory_pool()


def _check_utf8(data: bytes, end: int, lines: int, encoding: str) -> None:
    """Raise for text that is not UTF-8 in ``data[:end]`` (which starts after ``lines``
    lines), naming the encoding as given and the line of the first bad byte. (Python's reader
    names a line near it: where its decoder, a chunk ahead of the parser, stood.)"""
    try:
        data[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_encoded(encoding, exc, lines + data.count(b"\n", 0, exc.start) + 1) from None


def _whole_lines(data: bytes, end: int, quote: bytes) -> bool:
    """Whether every line of ``data[:end]`` is one record Arrow reads as Python's ``csv``
    does."""
    return (
        data.find(quote, 0, end) < 0
        and data.find(b"\x00", 0, end) < 0
        and data.count(b"\r", 0, end) == data.count(b"\r\n", 0, end)
        and not data.startswith((b"\n", b"\r\n"), 0, end)
        and data.find(b"\n\n", 0, end) < 0
        and data.find(b"\n\r\n", 0, end) < 0
        # (Arrow drops a byte order mark at the start of what it reads; Python's ``csv`` keeps
        # it in the cell: a block that holds one anywhere is read by Python)
        and data.find(_BOM, 0, end) < 0
    )


def _in_form(column: Any, kind: FieldType) -> bool:
    """Whether every cell of a text column is empty or in the form ``str()`` of its value
    (as ``kind``) writes, a valid value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pc.all(pc.match_substring_regex(column, _FORMS[kind], memory_pool=_pool())).as_py():
        return False
    if any(
        pc.any(pc.match_substring(column, odd, memory_pool=_pool())).as_py() for odd in _ODD[kind]
    ):
        return False
    if kind in (FieldType.DATE, FieldType.DATETIME):
        present = column
        if pc.any(pc.equal(column, "", memory_pool=_pool())).as_py():
            present = pc.filter(column, pc.not_equal(column, ""), memory_pool=_pool())
        try:
            day = pc.utf8_slice_codeunits(present, 0, 10, memory_pool=_pool())
            pc.cast(day, pa.date32(), memory_pool=_pool())
        except pa.ArrowInvalid:
            return False  # a day the month has not
    return True


class ArrowRows:
    """A batch's cells as Arrow text columns (in its names' order, constants after them):
    a :class:`~nodes.sdk.batches.RowSource`."""

    __slots__ = ("columns", "constants", "kinds", "names", "plain", "start")

    def __init__(
        self,
        names: Sequence[str],
        columns: list[Any],
        kinds: dict[int, FieldType],
        plain: bool,
        start: int,
        constants: tuple[str, ...] = (),
    ) -> None:
        self.names, self.columns, self.kinds = names, columns, kinds
        self.plain, self.start, self.constants = plain, start, constants

    def __len__(self) -> int:
        return len(self.columns[0])

    def build(self) -> tuple[list[Any], list[Sequence[str]] | None]:
        # (tuples, as the columns of rows read by Python's ``csv``)
        by_column: list[Any] = [tuple(column.to_pylist()) for column in self.columns]
        count = len(by_column[0])
        texts: list[Sequence[str]] | None
        if self.plain:
            rows: list[Any] = list(map(list, zip(*by_column, strict=True)))
            texts = None
        else:
            locate = _Locator(self.start, self.start + count, count)
            rows, texts = typed_rows(self.names, by_column, list(self.kinds.items()), locate)
        for value in self.constants:  # as ``file_read`` adds ``_file``
            rows = [(*row, value) for row in rows]
            if texts is not None:
                texts = [*texts, [value] * count]
        return rows, texts

    def sliced(self, index: slice) -> ArrowRows:
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("a row source is sliced with a step of 1 only")
        columns = [column.slice(start, max(stop - start, 0)) for column in self.columns]
        return self._like(columns, self.start + start)

    def joined(self, others: Sequence[Any]) -> ArrowRows | None:
        import pyarrow as pa

        if not all(
            type(other) is ArrowRows
            and (other.kinds, other.plain, other.constants)
            == (self.kinds, self.plain, self.constants)
            for other in others
        ):
            return None
        columns = [
            pa.chunked_array(
                [*_chunks(column), *(c for o in others for c in _chunks(o.columns[i]))]
            )
            for i, column in enumerate(self.columns)
        ]
        return self._like(columns, self.start)

    def with_constant(self, value: str) -> ArrowRows:
        return ArrowRows(
            self.names, self.columns, self.kinds, self.plain, self.start, (*self.constants, value)
        )

    def _like(self, columns: list[Any], start: int) -> ArrowRows:
        return ArrowRows(self.names, columns, self.kinds, self.plain, start, self.constants)

    def copy_text(self, positions: Sequence[int]) -> bytes | None:
        """The text of ``COPY … FROM STDIN`` (text format) for the columns at ``positions``:
        the cells as read (a datetime's ``T`` a space, an empty typed cell ``\\N``), joined
        in C; ``None`` when a value holds a character COPY escapes (the caller escapes)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        count = len(self)
        if not count or not positions:
            return b"" if not count else None
        parts: list[Any] = []
        for position in positions:
            if position >= len(self.columns):
                parts.append(pa.scalar(self.constants[position - len(self.columns)]))
                continue
            column = self.columns[position]
            kind = self.kinds.get(position)
            if kind is FieldType.DATETIME:
                column = pc.replace_substring(
                    column, "T", " ", max_replacements=1, memory_pool=_pool()
                )
            if kind is not None and pc.any(pc.equal(column, "", memory_pool=_pool())).as_py():
                empty = pc.equal(column, "", memory_pool=_pool())
                column = pc.if_else(empty, "\\N", column, memory_pool=_pool())
            parts.append(column)
        if all(isinstance(part, pa.Scalar) for part in parts):
            return None
        lines = pc.binary_join_element_wise(*parts, "\t", memory_pool=_pool())
        lines = pc.binary_join_element_wise(lines, pa.scalar("\n"), "", memory_pool=_pool())
        if isinstance(lines, pa.ChunkedArray):
            lines = lines.combine_chunks(memory_pool=_pool())
        text = _values(lines)
        width = len(positions)
        plain = (
            text.count(b"\t") == count * (width - 1)
            and text.count(b"\n") == count
            and not any(char in text for char in (b"\\", b"\r", b"\b", b"\v", b"\f"))
        )
        return text if plain else None


def _chunks(column: Any) -> list[Any]:
    return column.chunks if hasattr(column, "chunks") else [column]


def _values(array: Any) -> bytes:
    """The bytes of a string array's values, one after the other."""
    if not len(array):
        return b""
    offsets = memoryview(array.buffers()[1]).cast("i")
    first, last = offsets[array.offset], offsets[array.offset + len(array)]
    return memoryview(array.buffers()[2])[first:last].tobytes()


__all__ = ["ArrowRows", "eligible", "read_csv"]
