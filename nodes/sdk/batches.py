"""What flows between nodes: records, batches of them, and row batches.

A batch is a list of records (dicts). A source that reads rows (a SQL cursor, a CSV file) may
yield a :class:`RowBatch` instead: the same records held as value tuples, so that no dict is
built per row until a node needs one (decision 0010). Only nodes that declare
:class:`~nodes.sdk.capabilities.AcceptsRows` ever receive one; every other node gets lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import is_, itemgetter
from typing import Any, Protocol, TypeVar, overload

Record = dict[str, Any]
Batch = list[Record]
RecordStream = Iterable[Batch]

DEFAULT_BATCH_SIZE = 1000


class RowSource(Protocol):
    """Rows held in another form until a consumer needs Python values (``file_read`` of a
    CSV file keeps the text it read in Arrow arrays): a :class:`RowBatch` built on one asks it
    for its rows and text columns only when they are used."""

    def __len__(self) -> int: ...

    def build(self) -> tuple[list[Any], list[Sequence[str]] | None]:
        """The rows and the text columns (or ``None``), as the batch would have held them."""
        ...

    def sliced(self, index: slice) -> RowSource: ...

    def joined(self, others: Sequence[RowSource]) -> RowSource | None:
        """This source followed by ``others`` (``None``: they cannot be joined as sources)."""
        ...

    def with_constant(self, value: str) -> RowSource:
        """The same rows with one more column holding ``value`` in every row."""
        ...

    def copy_text(self, positions: Sequence[int]) -> bytes | None:
        """The columns at ``positions`` as the text of ``COPY … FROM STDIN`` (``None``: not
        at hand; the caller converts the rows)."""
        ...


class RowBatch(Sequence[Record]):
    """A batch of records held as rows: value tuples in ``names`` order.

    Reading a table gives rows, not dicts, and building a dict per row is most of what a
    record-by-record node would cost. A node that declares ``AcceptsRows`` may receive row
    batches and work on them column by column (``filter``, ``map_fields`` do); every other node
    receives plain lists of dicts, built from the rows in C when it needs them
    (:func:`as_records`). The hand-off encoder writes the columns without any dict.

    As a sequence it reads as its records: iterating or indexing builds dicts (a new one each
    time), and it equals a list of equal records. A name given twice keeps its last value,
    as ``dict`` would.

    ``text_columns``, when a source has them at hand (``file_read`` of a CSV file): each
    column's values as ``str()`` of each (``text_columns[j][i] == str(rows[i][j])``:
    ``12.50``, ``2026-01-01 10:00:00+00:00``; values of type ``str``, ``int``, ``Decimal``,
    ``date`` or ``datetime`` only, no null), so that a writer of text (``sql_write``'s
    ``COPY``) sends them as they are instead of converting every value back. They are an
    optional companion: a node that builds new rows builds a batch without them; slices and
    re-cut batches keep them. Equality ignores them.

    ``source`` (with ``rows`` ``None``): the rows are built from it when first used
    (:class:`RowSource`); slices, re-cut batches and ``sql_write``'s ``COPY`` use the source
    itself, so a batch that only goes from ``file_read`` into ``COPY`` never holds Python
    values (decision 0049). Once the rows are built the source is dropped (``source`` is
    ``None``): what a node changes in them is what is written.
    """

    __slots__ = ("_rows", "_text_columns", "names", "source")

    def __init__(
        self,
        names: Sequence[str],
        rows: list[tuple[Any, ...]] | None,
        text_columns: list[Sequence[str]] | None = None,
        source: RowSource | None = None,
    ) -> None:
        self.names = list(names)
        self._rows = rows
        self._text_columns = text_columns
        self.source = source if rows is None else None
        if rows is None and source is None:
            raise ValueError("a row batch needs rows or a source of rows")

    def _build(self) -> None:
        # The source is dropped once built: the rows are the batch from then on (a node may
        # change them in place and pass the batch on), and the source's memory is freed.
        assert self.source is not None
        self._rows, self._text_columns = self.source.build()
        self.source = None

    @property
    def rows(self) -> list[Any]:
        if self._rows is None:
            self._build()
        return self._rows  # type: ignore[return-value]

    @rows.setter
    def rows(self, rows: list[Any]) -> None:
        self._rows, self.source = rows, None

    @property
    def text_columns(self) -> list[Sequence[str]] | None:
        if self._rows is None:
            self._build()
        return self._text_columns

    @text_columns.setter
    def text_columns(self, texts: list[Sequence[str]] | None) -> None:
        if self._rows is None:
            self._build()
        self._text_columns = texts

    def __len__(self) -> int:
        if self._rows is None:
            return len(self.source)  # type: ignore[arg-type]
        return len(self._rows)

    def __iter__(self) -> Iterator[Record]:
        return map(dict, map(zip, repeat(self.names), self.rows))

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> RowBatch: ...

    def __getitem__(self, index: int | slice) -> Record | RowBatch:
        if isinstance(index, slice):
            if self._rows is None and index.step in (None, 1):  # (a step: the rows built)
                assert self.source is not None
                return RowBatch(self.names, None, source=self.source.sliced(index))
            texts = self.text_columns
            if texts is not None:
                texts = [column[index] for column in texts]
            return RowBatch(self.names, self.rows[index], texts)
        return dict(zip(self.names, self.rows[index], strict=False))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowBatch | list):
            return self.records() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowBatch({self.names!r}, {len(self.rows)} rows)"

    def records(self) -> Batch:
        """The rows as a list of dicts (built in C, no Python frame per row)."""
        return list(self)

    def positions(self) -> dict[str, int]:
        """Each name's column index (a repeated name: its last, as ``dict`` keeps it)."""
        return {name: index for index, name in enumerate(self.names)}

    def column(self, index: int) -> list[Any]:
        """The values of one column, in row order."""
        return list(map(itemgetter(index), self.rows))


AnyBatch = Batch | RowBatch
_B = TypeVar("_B", Batch, AnyBatch)


@dataclass(frozen=True, slots=True)
class PortBatch:
    """A batch that leaves by one named output port: what a node with several output ports
    (``branch``) yields instead of a bare batch. Its length is its batch's."""

    port: str
    batch: AnyBatch

    def __len__(self) -> int:
        return len(self.batch)


#: What ``Node.execute`` yields: batches for the node's only output port, or batches each
#: tagged with the port it leaves by.
Output = AnyBatch | PortBatch


def has_null(values: Sequence[Any]) -> bool:
    """Whether a column holds a null, by identity in C (``None in values`` would call each
    value's ``__eq__``)."""
    return any(map(is_, values, repeat(None)))


def as_records(batch: AnyBatch) -> Batch:
    """A batch as a list of dicts, whatever form it travels in."""
    return batch.records() if type(batch) is RowBatch else batch  # type: ignore[return-value]


def first_input(inputs: Mapping[str, Iterable[_B]]) -> Iterable[_B]:
    """The single input stream of a one-input node (empty when nothing is connected)."""
    return next(iter(inputs.values()), ())


def rebatch(batches: Iterable[_B], size: int) -> Iterator[_B]:
    """Re-cut a stream of batches into batches of at most ``size`` records, by slices; row
    batches stay row batches unless a cut joins pieces of different columns."""
    pieces: list[Any] = []  # the start of the next batch, joined once it is full
    held = 0
    for batch in batches:
        start = 0
        if pieces:
            start = size - held
            # (a whole batch joins as it is: the join copies it once, a slice would twice)
            pieces.append(batch if start >= len(batch) else batch[:start])
            held += len(pieces[-1])
            if held < size:
                continue
            yield _joined(pieces)
            pieces, held = [], 0
        while len(batch) - start >= size:
            yield batch[start : start + size]
            start += size
        if start < len(batch):
            pieces, held = [batch[start:]], len(batch) - start
    if pieces:
        yield _joined(pieces)


def _joined(pieces: list[Any]) -> Any:
    first = pieces[0]
    if all(type(piece) is RowBatch and piece.names == first.names for piece in pieces):
        if all(piece._rows is None for piece in pieces):
            source = first.source.joined([piece.source for piece in pieces[1:]])
            if source is not None:
                return RowBatch(first.names, None, source=source)
        texts: list[Sequence[str]] | None = None
        if all(piece.text_columns is not None for piece in pieces):
            texts = [
                list(chain.from_iterable(piece.text_columns[index] for piece in pieces))
                for index in range(len(first.names))
            ]
        return RowBatch(first.names, list(chain.from_iterable(p.rows for p in pieces)), texts)
    return list(chain.from_iterable(map(as_records, pieces)))


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AnyBatch",
    "Batch",
    "Output",
    "PortBatch",
    "Record",
    "RecordStream",
    "RowBatch",
    "RowSource",
    "as_records",
    "first_input",
    "has_null",
    "rebatch",
]
