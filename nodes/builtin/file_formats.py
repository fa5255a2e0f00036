"""Reading and writing record files: CSV, JSON Lines, JSON arrays and Parquet.

Readers stream one file in batches (flat memory whatever its size) and raise a permanent
:class:`NodeError` naming the file, the line and the column at fault. Writers take batches
and write them to a binary stream; Parquet row groups are the batches written.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from itertools import islice
from typing import IO, Any, NoReturn

import orjson

from nodes.builtin.casts import to_bool, to_date, to_datetime, to_decimal, to_float, to_int, to_str
from nodes.jsonbody import dumps_bytes
from nodes.sdk.batches import AnyBatch, Batch, RowBatch, as_records
from nodes.sdk.errors import NodeError
from nodes.sdk.schema import FieldType

Columns = Mapping[str, FieldType]


def _json_value(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


#: How a declared column type turns a value read from a file into its value (None: kept).
CASTS: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.INTEGER: to_int,
    FieldType.FLOAT: to_float,
    FieldType.DECIMAL: to_decimal,
    FieldType.BOOLEAN: to_bool,
    FieldType.DATE: to_date,
    FieldType.DATETIME: to_datetime,
    FieldType.JSON: _json_value,
}
#: Fast whole-column conversions, used when every value converts and stays finite.
_FAST: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.INTEGER: int,
    FieldType.FLOAT: float,
    FieldType.DECIMAL: Decimal,
    FieldType.DATETIME: datetime.fromisoformat,
    FieldType.DATE: date.fromisoformat,
}
#: Values the fast conversions give but the casts refuse: NaN and infinities.
_FINITE: dict[FieldType, Callable[[Any], bool]] = {
    FieldType.FLOAT: math.isfinite,
    FieldType.DECIMAL: Decimal.is_finite,
}


class FileFormatError(ValueError):
    """A value or line of a file that cannot be read; ``where`` (``line 12``, ``item 3``) and
    ``column`` locate it."""

    def __init__(self, message: str, where: str = "", column: str = "") -> None:
        super().__init__(message)
        self.where, self.column = where, column


def not_encoded(encoding: str, exc: UnicodeDecodeError, line: int) -> FileFormatError:
    """The error of text that is not in ``encoding`` (as the flow spells it), near ``line``:
    the same from both CSV readers."""
    return FileFormatError(f"not valid {encoding} text ({exc.reason})", f"near line {line}")


def decompressed(stream: IO[bytes], name: str, compression: str) -> IO[bytes]:
    """``stream`` read through gzip when ``compression`` says so (``auto``: a ``.gz`` name)."""
    if compression == "gzip" or (compression == "auto" and name.endswith(".gz")):
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return stream


# --- reading ------------------------------------------------------------------------------------
def read_csv(
    stream: IO[bytes],
    *,
    columns: Columns | None,
    header: bool,
    delimiter: str,
    quotechar: str,
    encoding: str,
    batch_size: int,
) -> Iterator[RowBatch]:
    """Row batches of a CSV file. With ``columns`` only those, cast to their types (an empty
    cell is null for every type but string); without, every column of the header as text.

    Read by Arrow when the options allow (:mod:`nodes.builtin.csv_arrow`: the same batches,
    their rows built only when used), else by Python's ``csv``."""
    from nodes.builtin import csv_arrow

    if csv_arrow.eligible(columns, header, delimiter, quotechar, encoding):
        return csv_arrow.read_csv(
            stream,
            columns=columns,
            header=header,
            delimiter=delimiter,
            quotechar=quotechar,
            batch_size=batch_size,
            encoding=encoding,
        )
    return read_csv_python(
        stream,
        columns=columns,
        header=header,
        delimiter=delimiter,
        quotechar=quotechar,
        encoding=encoding,
        batch_size=batch_size,
    )


def read_csv_python(
    stream: IO[bytes],
    *,
    columns: Columns | None,
    header: bool,
    delimiter: str,
    quotechar: str,
    encoding: str,
    batch_size: int,
    head: list[str] | None = None,
    lines: int = 0,
) -> Iterator[RowBatch]:
    """:func:`read_csv` by Python's ``csv``. ``head`` and ``lines``: the stream goes on from
    a file whose header (``head``, when ``header``) and first ``lines`` lines were read
    already (line numbers count them)."""
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    reader = csv.reader(text, delimiter=delimiter, quotechar=quotechar, strict=True)
    try:
        if head is None:
            head = next(reader, None) if header else list(columns or ())
            if head is None:
                return
        names, positions, casts = _csv_plan(head, columns)
        width = len(head)
        while True:
            start = lines + reader.line_num
            rows = list(islice(reader, batch_size))
            if not rows:
                return
            locate = _Locator(start, lines + reader.line_num, len(rows))
            if [] in rows:  # blank lines
                rows = [row for row in rows if row]
                locate = _Locator(start, -1, 0)
                if not rows:  # blank lines only
                    continue
            if positions is None and not casts:
                if set(map(len, rows)) != {width}:
                    _wrong_width(rows, width, locate)
                yield RowBatch(names, rows)  # type: ignore[arg-type] # lists, owned by the batch
                continue
            try:
                by_column = list(zip(*rows, strict=True))
            except ValueError:
                _wrong_width(rows, width, locate)
            if len(by_column) != width:
                _wrong_width(rows, width, locate)
            if positions is not None:
                by_column = [by_column[i] for i in positions]
            yield RowBatch(names, *typed_rows(names, by_column, casts, locate))
    except csv.Error as exc:
        raise FileFormatError(f"not valid CSV: {exc}", f"line {lines + reader.line_num}") from None
    except UnicodeDecodeError as exc:
        # Text is decoded a chunk ahead of the parser: the line is approximate.
        raise not_encoded(encoding, exc, lines + reader.line_num + 1) from None


def typed_rows(
    names: Sequence[str],
    by_column: list[Any],
    casts: Sequence[tuple[int, FieldType]],
    locate: _Locator,
) -> tuple[list[Any], list[Sequence[str]] | None]:
    """The rows of a batch read as text columns, the ``casts`` columns cast (a bad cell
    raises, located by ``locate``), and its text columns when every cast kept its text."""
    text_columns: list[Sequence[str]] | None = list(by_column)
    for index, kind in casts:
        read = by_column[index]
        by_column[index] = _cast_column(read, kind, names[index], locate)
        if text_columns is not None:
            column_text = _value_texts(read, kind)
            if column_text is None:
                text_columns = None
            else:
                text_columns[index] = column_text
    return list(zip(*by_column, strict=True)), text_columns


def _csv_plan(
    head: list[str], columns: Columns | None
) -> tuple[list[str], list[int] | None, list[tuple[int, FieldType]]]:
    """The output names, the positions of the declared columns (``None``: all, in order), and
    the output columns to cast."""
    if columns is None:
        return head, None, []
    missing = [name for name in columns if name not in head]
    if missing:
        raise FileFormatError(f"the header has no column '{missing[0]}'", "line 1", missing[0])
    positions = [head.index(name) for name in columns]
    casts = [(i, kind) for i, kind in enumerate(columns.values()) if kind in CASTS]
    return list(columns), None if positions == list(range(len(head))) else positions, casts


def _wrong_width(rows: list[list[str]], width: int, locate: _Locator) -> NoReturn:
    index = next(i for i, row in enumerate(rows) if len(row) != width)
    raise FileFormatError(f"expected {width} fields, found {len(rows[index])}", locate(index))


class _Locator:
    """The line of the i-th record of a batch (exact when no record spans several lines)."""

    def __init__(self, start: int, end: int, count: int) -> None:
        self.start, self.exact = start, end - start == count

    def __call__(self, index: int) -> str:
        if self.exact:
            return f"line {self.start + index + 1}"
        return f"record {index + 1} after line {self.start}"


def _cast_column(values: Sequence[str], kind: FieldType, name: str, locate: _Locator) -> Any:
    fast = _FAST.get(kind)
    if fast is not None and "" not in values:
        try:
            out = list(map(fast, values))
        except (ValueError, ArithmeticError):
            pass
        else:
            finite = _FINITE.get(kind)
            if finite is None or all(map(finite, out)):
                return out
    cast = CASTS[kind]
    out = []
    for i, value in enumerate(values):
        if value == "":
            out.append(None)
            continue
        try:
            out.append(cast(value))
        except ValueError as exc:
            raise FileFormatError(str(exc), locate(i), name) from None
    return out


# --- the text of cast values -----------------------------------------------------------------
# A column cast from text also has ``str()`` of its values at hand when the text read is in the
# form ``str()`` writes (a datetime's "T" aside): a batch then carries it beside the values
# (``RowBatch.text_columns``) and a text writer (``sql_write``'s COPY) sends it as read. The checks
# run on values the cast took (so each is a number, a date...) and look only at what could
# make ``str()`` differ: a sign or zero more, an exponent, a "Z", a space, an empty cell...
# Every check is a few scans of the column's joined text, in C: no call per value.
_LEADING_ZERO = re.compile(r"\n-?0[0-9]")


def _only(joined: str, characters: bytes) -> bool:
    """Whether ``joined`` holds no other characters than ``characters`` (ASCII)."""
    return joined.isascii() and not joined.encode("ascii").translate(None, characters)


def _integer_texts(read: Sequence[str]) -> bool:
    """Digits with a "-" in front or not, no leading zero, not "-0" (``str()`` gives "0")."""
    lines = "\n" + "\n".join(read)
    return (
        _only(lines, b"0123456789-\n")
        and "\n-0" not in lines
        and _LEADING_ZERO.search(lines) is None
    )


def _decimal_texts(read: Sequence[str]) -> bool:
    """Digits with a "." or not, a "-" in front or not: no leading zero, no dot first or last,
    no exponent, not more than five zeros after "0." (``str(Decimal("0.0000001"))`` is
    "1E-7")."""
    lines = "\n" + "\n".join(read) + "\n"
    return (
        _only(lines, b"0123456789.-\n")
        and "\n." not in lines
        and "\n-." not in lines
        and ".\n" not in lines
        and "\n0.000000" not in lines
        and "\n-0.000000" not in lines
        and _LEADING_ZERO.search(lines) is None
    )


def _same_width(read: Sequence[str], widths: Iterable[int]) -> tuple[str, int, int] | None:
    """The joined column, its one width and its length, when every value has one of
    ``widths`` (and no line end); the i-th character of every value is then
    ``joined[i :: width + 1]``."""
    joined, width, count = "\n".join(read), len(read[0]), len(read)
    if width not in widths or len(joined) != count * (width + 1) - 1:
        return None
    if joined[width :: width + 1] != "\n" * (count - 1) or "\n" in read[-1]:
        return None  # the line ends between the values: each value that wide
    return joined, width, count


def _dashes(joined: str, width: int, count: int) -> bool:
    return joined[4 :: width + 1] == joined[7 :: width + 1] == "-" * count


def _date_texts(read: Sequence[str]) -> bool:
    same = _same_width(read, (10,))  # YYYY-MM-DD (not 2026-W01-1: no dash at 7)
    return same is not None and _dashes(*same)


def _datetime_texts(read: Sequence[str]) -> bool:
    """YYYY-MM-DD?HH:MM:SS, then .ffffff (six digits, not all zeros) and/or +HH:MM (digits,
    not -00:00: no "Z", no "+HHMM", no "+HH"), the separator "T" or " " in every value alike."""
    same = _same_width(read, (19, 25, 26, 32))
    if same is None:
        return False
    joined, width, count = same
    step = width + 1
    fraction, offset = width in (26, 32), width in (25, 32)
    sign = width - 6  # where an offset starts
    digits = [
        *(range(20, 26) if fraction else ()),
        *((sign + 1, sign + 2, sign + 4, sign + 5) if offset else ()),
    ]
    return (
        _dashes(joined, width, count)
        and joined[10::step] in ("T" * count, " " * count)
        and joined[13::step] == joined[16::step] == ":" * count
        and "T24" not in joined  # (never read as hour 24 today: the next day's midnight)
        and " 24" not in joined
        and (not fraction or (joined[19::step] == "." * count and ".000000" not in joined))
        and (
            not offset
            or (
                not joined[sign::step].strip("+-")
                and joined[sign + 3 :: step] == ":" * count
                and "-00:00" not in joined
            )
        )
        and _digits("".join(joined[i::step] for i in digits))
    )


def _digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits only (or empty)."""
    return text.isascii() and (not text or text.isdigit())


_TEXT_CHECKS: dict[FieldType, Callable[[Sequence[str]], bool]] = {
    FieldType.INTEGER: _integer_texts,
    FieldType.DECIMAL: _decimal_texts,
    FieldType.DATE: _date_texts,
    FieldType.DATETIME: _datetime_texts,
}


def _value_texts(read: Sequence[str], kind: FieldType) -> Sequence[str] | None:
    """``str()`` of each value cast from ``read`` (as ``kind``), from the text itself when
    every value is in the form ``str()`` writes; ``None`` when one is not (or for a type
    without such a form: floats, booleans, JSON)."""
    check = _TEXT_CHECKS.get(kind)
    if check is None or not read or "" in read or not check(read):
        return None
    if kind is FieldType.DATETIME and read[0][10] == "T":
        return "\n".join(read).replace("T", " ").split("\n")  # no other "T", no line end
    return read


def read_jsonl(
    stream: IO[bytes], *, columns: Columns | None, encoding: str, batch_size: int
) -> Iterator[Batch]:
    """Batches of a JSON Lines file (one object per line; blank lines skipped)."""
    batch: Batch = []
    for number, line in enumerate(io.TextIOWrapper(stream, encoding=encoding), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise FileFormatError("not valid JSON", f"line {number}") from None
        batch.append(_object(record, columns, f"line {number}"))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _object(value: Any, columns: Columns | None, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FileFormatError(f"expected a JSON object, found {type(value).__name__}", where)
    if columns is None:
        return value
    record = {}
    for name, kind in columns.items():
        item = value.get(name)
        if item is not None and kind in CASTS:
            try:
                item = CASTS[kind](item)
            except ValueError as exc:
                raise FileFormatError(str(exc), where, name) from None
        record[name] = item
    return record


_CHUNK = 1 << 16
_SPACE = re.compile(r"\s*")


def read_json_array(
    stream: IO[bytes], *, columns: Columns | None, encoding: str, batch_size: int
) -> Iterator[Batch]:
    """Batches of a file holding one JSON array of objects, parsed item by item (the array is
    never held whole)."""
    batch: Batch = []
    for number, item in _array_items(io.TextIOWrapper(stream, encoding=encoding)):
        batch.append(_object(item, columns, f"item {number}"))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _array_items(text: IO[str]) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    buffer, pos, eof = "", 0, False

    def more() -> bool:
        nonlocal buffer, pos, eof
        chunk = "" if eof else text.read(_CHUNK)
        eof = not chunk
        buffer, pos = buffer[pos:] + chunk, 0
        return not eof

    def skip_space() -> str:
        nonlocal pos
        while True:
            pos = _SPACE.match(buffer, pos).end()  # type: ignore[union-attr]
            if pos < len(buffer) or not more():
                return buffer[pos : pos + 1]

    if skip_space() != "[":
        raise FileFormatError("expected a JSON array", "item 1")
    pos += 1
    number = 0
    while True:
        char = skip_space()
        if char == "]":
            pos += 1
            if skip_space():
                raise FileFormatError("text after the end of the array", f"item {number}")
            return
        if number:
            if char != ",":
                raise FileFormatError("expected ',' or ']'", f"item {number + 1}")
            pos += 1
            skip_space()
        number += 1
        while True:
            try:
                item, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                if more():
                    continue
                raise FileFormatError("not valid JSON", f"item {number}") from None
            if end == len(buffer) and more():
                continue  # a number may go on in the next chunk
            break
        pos = end
        yield number, item


def read_parquet(
    stream: IO[bytes], *, columns: Columns | None, batch_size: int
) -> Iterator[RowBatch]:
    """Row batches of a Parquet file (its own types; ``columns`` picks columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _seekable(stream) as source:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as exc:
            raise FileFormatError(f"not a Parquet file ({str(exc)[:200]})") from None
        names = list(columns) if columns is not None else None
        present = parquet.schema_arrow.names
        for name in names or ():
            if name not in present:
                raise FileFormatError(f"the file has no column '{name}'", "", name)
        for batch in parquet.iter_batches(batch_size=batch_size, columns=names):
            values = [column.to_pylist() for column in batch.columns]
            yield RowBatch(batch.schema.names, list(zip(*values, strict=True)))


class _seekable:
    """The stream itself when it can seek, otherwise a copy spooled to a temporary file."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.spool: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        seekable = getattr(self.stream, "seekable", lambda: False)
        if seekable() and not isinstance(self.stream, gzip.GzipFile):
            return self.stream
        self.spool = tempfile.TemporaryFile()
        shutil.copyfileobj(self.stream, self.spool, 1 << 20)
        self.spool.seek(0)
        return self.spool

    def __exit__(self, *exc: object) -> None:
        if self.spool is not None:
            self.spool.close()


# --- writing ------------------------------------------------------------------------------------
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


def extension(fmt: str, compression: str) -> str:
    """The file extension of a format: ``csv.gz`` for gzipped CSV; Parquet compresses inside."""
    base = EXTENSIONS[fmt]
    return f"{base}.gz" if compression == "gzip" and fmt != "parquet" else base


class RecordWriter:
    """Writes batches to a binary stream in one format; :meth:`close` finishes the file (not
    the stream)."""

    def __init__(self, stream: IO[bytes], compression: str) -> None:
        self.rows = 0
        self._gzip: gzip.GzipFile | None = None
        if compression == "gzip":
            self._gzip = gzip.GzipFile(fileobj=stream, mode="wb", mtime=0)
        self.stream: IO[bytes] = self._gzip or stream  # type: ignore[assignment]

    def write(self, batch: AnyBatch) -> None:
        self.rows += len(batch)
        self._write(batch)

    def _write(self, batch: AnyBatch) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if type(value) is str else to_str(value)


class CsvWriter(RecordWriter):
    """A header row (the first record's fields), then one row per record; null is empty."""

    def __init__(self, stream: IO[bytes], compression: str, delimiter: str = ",") -> None:
        super().__init__(stream, compression)
        self.text = io.TextIOWrapper(self.stream, encoding="utf-8", newline="", write_through=True)
        self.writer = csv.writer(self.text, delimiter=delimiter, lineterminator="\n")
        self.header: list[str] | None = None

    def _write(self, batch: AnyBatch) -> None:
        if not batch:
            return
        if self.header is None:
            self.header = list(batch.names if type(batch) is RowBatch else batch[0])
            self.writer.writerow(self.header)
        rows: list[Any]
        if type(batch) is RowBatch and batch.names == self.header:
            rows = batch.rows
        else:
            rows = list(map(self._row, as_records(batch)))
        self.writer.writerows([list(map(_text, row)) for row in rows])

    def _row(self, record: dict[str, Any]) -> list[Any]:
        header = self.header or []
        if len(record) != len(header) or not record.keys() <= set(header):
            extra = sorted(set(record) - set(header)) or sorted(set(header) - set(record))
            raise NodeError(
                f"a record's fields differ from the file's header ({', '.join(extra)})",
                permanent=True,
            )
        return list(map(record.get, header))

    def close(self) -> None:
        self.text.flush()
        self.text.detach()
        super().close()


class JsonlWriter(RecordWriter):
    """One JSON object per line (decimals written with their exact digits)."""

    def _write(self, batch: AnyBatch) -> None:
        self.stream.write(b"".join(dumps_bytes(record) + b"\n" for record in batch))


class ParquetWriter(RecordWriter):
    """One row group per batch. Column types come from the first batch (decimals widened to
    38 digits at the scale seen, datetimes at microseconds with their zone); a column null in
    every record of it takes its type from ``known`` (the declared columns, and the files
    written before), else the file cannot be written."""

    def __init__(self, stream: IO[bytes], compression: str, known: dict[str, Any]) -> None:
        self.rows = 0
        self._gzip = None
        self.stream = stream
        self.codec = "gzip" if compression == "gzip" else "none"
        self.known = known
        self.writer: Any = None

    def _write(self, batch: AnyBatch) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        records = as_records(batch)
        try:
            if self.writer is None:
                schema = self._schema(pa.Table.from_pylist(records).schema)
                self.writer = pq.ParquetWriter(self.stream, schema, compression=self.codec)
            table = pa.Table.from_pylist(records, schema=self.writer.schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise NodeError(
                f"records do not fit the Parquet file's column types: {str(exc)[:300]}",
                permanent=True,
            ) from None
        self.writer.write_table(table, row_group_size=max(len(records), 1))

    def _schema(self, inferred: Any) -> Any:
        import pyarrow as pa

        fields = []
        for field in inferred:
            kind = field.type
            if pa.types.is_decimal128(kind):
                kind = pa.decimal128(38, kind.scale)
            elif pa.types.is_null(kind):
                kind = self.known.get(field.name)
                if kind is None:
                    raise NodeError(
                        f"field '{field.name}' is null in every record of the file's first "
                        "batch: declare its type in columns",
                        permanent=True,
                    )
            fields.append(pa.field(field.name, kind))
            self.known[field.name] = kind
        return pa.schema(fields)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def parquet_types(columns: Columns) -> dict[str, Any]:
    """The Parquet type of each declared column (decimals: 38 digits, scale 9; datetimes: UTC)."""
    import pyarrow as pa

    types = {
        FieldType.STRING: pa.string(),
        FieldType.INTEGER: pa.int64(),
        FieldType.FLOAT: pa.float64(),
        FieldType.DECIMAL: pa.decimal128(38, 9),
        FieldType.BOOLEAN: pa.bool_(),
        FieldType.DATE: pa.date32(),
        FieldType.DATETIME: pa.timestamp("us", tz="UTC"),
    }
    return {name: types[kind] for name, kind in columns.items() if kind in types}


def make_writer(
    fmt: str, stream: IO[bytes], compression: str, delimiter: str, known: dict[str, Any]
) -> RecordWriter:
    """A writer of ``fmt``; ``known`` holds Parquet column types, shared by a node's files."""
    if fmt == "csv":
        return CsvWriter(stream, compression, delimiter)
    if fmt == "jsonl":
        return JsonlWriter(stream, compression)
    return ParquetWriter(stream, compression, known)


__all__ = [
    "CASTS",
    "FileFormatError",
    "decompressed",
    "extension",
    "make_writer",
    "read_csv",
    "read_json_array",
    "read_jsonl",
    "read_parquet",
]
