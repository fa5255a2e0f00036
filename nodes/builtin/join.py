"""``join``: records of the left input matched with records of the right input by key.

The right side is read first into a bounded hash table (:mod:`nodes.builtin.join_table`); the
left side then streams through it, batch by batch. ``inner`` and ``left`` give each left record
merged with every right record of its key (``left`` keeps an unmatched left record, its right
fields null); ``semi`` gives the left records that have a match, ``anti`` those that have none,
each once and unchanged. A right field whose name the left record already has is renamed
``right_prefix + name``. Keys compare as Python values (``1``, ``1.0`` and ``Decimal(1)`` are
equal; ``"1"`` is not); a key with a null part matches nothing, as in SQL.

When the left side runs per partition, every partition probes the same right side: a worker
process builds it once per run and reuses it for the partitions it runs after
(:data:`RIGHT_TABLES`, keyed by the run, the node, the right input's stored reference and the
config that shapes the table); ``right_max_rows`` bounds it as it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import Field

from nodes.builtin.join_table import RightTable
from nodes.builtin.keys import key_reader, value_reader
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, Batch, Record
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.run_cache import RunCache
from nodes.sdk.schema import FieldType, Problem, RecordSchema

_NUMBERS = frozenset({FieldType.INTEGER, FieldType.FLOAT, FieldType.DECIMAL})


class JoinKey(NodeConfig):
    """One pair of fields that must be equal."""

    left: str = Field(min_length=1, description="Dotted path of the field on the left input.")
    right: str = Field(min_length=1, description="Dotted path of the field on the right input.")


class JoinConfig(NodeConfig):
    """How records of the two inputs match and what comes out."""

    on: list[JoinKey] = Field(min_length=1, description="The key: pairs of fields, all equal.")
    how: Literal["inner", "left", "anti", "semi"] = Field(
        "inner",
        description="'inner': matched pairs; 'left': also unmatched left records; 'semi': left "
        "records with a match; 'anti': left records without one.",
    )
    right_prefix: str = Field(
        "right_",
        min_length=1,
        max_length=50,
        description="Put before the name of a right field that the left record also has.",
    )
    select: list[str] | None = Field(
        None, min_length=1, description="The output fields, in order (default: all)."
    )
    right_max_rows: int = Field(
        1_000_000,
        ge=1,
        le=100_000_000,
        description="The most records the right side may have; past it the node fails.",
    )


#: The right sides this worker process built for partitions of a join, reused by the next
#: partitions of the same run: one table, as a right side of ``right_max_rows`` records is most
#: of a worker's memory budget (``docs/benchmarks.md``, join memory).
RIGHT_TABLES: RunCache[RightTable] = RunCache("join right sides", size=1)


class JoinNode(Node[JoinConfig]):
    """Hash join: the right side in memory (bounded), the left side streamed."""

    type = "join"
    version = 1
    label = "Join"
    description = "Match left records with right records by key (inner, left, semi, anti)."
    category = "transform"
    inputs = (
        Port("left", description="Records streamed through the join."),
        Port("right", description="Records looked up by key (held in memory, bounded)."),
    )
    outputs = (Port("out", description="The joined records."),)

    # --- before the run ---------------------------------------------------------------------
    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        left = inputs.get("left", RecordSchema.unknown())
        if self.config.how in ("semi", "anti"):
            return self._selected(left)
        right = inputs.get("right", RecordSchema.unknown())
        if left.fields is None or right.fields is None:
            return self._selected(RecordSchema.unknown())
        fields = dict(left.fields)
        for name, kind in right.fields.items():
            fields[self._right_name(name, left.fields)] = kind
        return self._selected(RecordSchema(fields))

    def _selected(self, schema: RecordSchema) -> RecordSchema:
        if self.config.select is None:
            return schema
        if schema.fields is None:
            return schema
        return RecordSchema({name: schema.type_of(name) for name in self.config.select})

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        left = inputs.get("left", RecordSchema.unknown())
        right = inputs.get("right", RecordSchema.unknown())
        problems = []
        for index, pair in enumerate(self.config.on):
            for side, path, schema in (("left", pair.left, left), ("right", pair.right, right)):
                if not schema.has_path(path):
                    known = ", ".join(schema.fields or {}) or "none"
                    problems.append(
                        Problem(
                            f"config.on[{index}].{side}",
                            f"field '{path}' does not exist on the {side} input "
                            f"(known fields: {known})",
                        )
                    )
            kinds = {left.type_of(pair.left), right.type_of(pair.right)}
            if FieldType.STRING in kinds and kinds & _NUMBERS:
                problems.append(
                    Problem(
                        f"config.on[{index}]",
                        f"'{pair.left}' ({left.type_of(pair.left)}) and '{pair.right}' "
                        f"({right.type_of(pair.right)}) never compare equal: cast one side "
                        "first (map_fields)",
                    )
                )
        if self.config.select is not None:
            config = self.config.model_copy(update={"select": None})
            joined = JoinNode(config).output_schema(inputs)
            for index, name in enumerate(self.config.select):
                if joined.fields is not None and name not in joined.fields:
                    problems.append(
                        Problem(
                            f"config.select[{index}]",
                            f"field '{name}' is not in the join's output "
                            f"(fields: {', '.join(joined.fields) or 'none'})",
                        )
                    )
        return problems

    # --- the run ----------------------------------------------------------------------------
    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[Batch]]
    ) -> Iterator[Batch]:
        table = self._right_table(context, inputs.get("right", ()))
        left_key = _reader([pair.left for pair in self.config.on])
        how, select = self.config.how, self.config.select
        merged = self._merger(table.names)
        out: Batch = []
        for batch in _cancellable(context, inputs.get("left", ())):
            for record in batch:
                key = left_key(record)
                if how == "semi" or how == "anti":
                    if (key in table) == (how == "semi"):
                        out.append(_picked(record, select))
                else:
                    found = table.matches(key)
                    if not found and how == "left":
                        found = [[None] * len(table.names)]
                    for values in found:
                        out.append(_picked(merged(record, values), select))
                if len(out) >= DEFAULT_BATCH_SIZE:
                    yield out
                    out = []
        if out:
            yield out

    def _right_table(self, context: ExecutionContext, right: Iterable[Batch]) -> RightTable:
        """The right side as a table: built from ``right``, or, when the left side runs per
        partition and the engine says where the right side is stored, the table this worker
        process built for an earlier partition of the same run (``right`` is then not read)."""
        refs = context.input_refs.get("right")
        if context.partition is None or not refs:
            return self._build_right(context, right)
        key = (
            context.node_key,
            tuple(refs),
            tuple(pair.right for pair in self.config.on),
            self.config.right_max_rows,
        )
        return RIGHT_TABLES.get(context.run_id, key, lambda: self._build_right(context, right))

    def _build_right(self, context: ExecutionContext, right: Iterable[Batch]) -> RightTable:
        table = RightTable(
            _reader([pair.right for pair in self.config.on]),
            self.config.right_max_rows,
            composite=len(self.config.on) > 1,
        )
        return table.load(_cancellable(context, right))

    def _merger(self, names: list[str]) -> Callable[[Record, list[Any]], Record]:
        """A function merging a left record with a right record's values. The right names a
        left record makes (some prefixed) depend only on its field names: they are worked out
        once per set of left names (a SQL source's records all have the same)."""
        renamings: dict[tuple[str, ...], list[str]] = {}

        def merged(left: Record, values: list[Any]) -> Record:
            shape = tuple(left)
            renamed = renamings.get(shape)
            if renamed is None:
                if len(renamings) > 1000:  # records of many shapes: keep the memory bounded
                    renamings.clear()
                renamed = renamings[shape] = [self._right_name(name, left) for name in names]
            out = dict(left)
            out.update(zip(renamed, values, strict=True))
            return out

        return merged

    def _right_name(self, name: str, left: Mapping[str, Any]) -> str:
        return self.config.right_prefix + name if name in left else name


def _reader(paths: list[str]) -> Callable[[Record], Any]:
    return value_reader(paths[0]) if len(paths) == 1 else key_reader(paths)


def _picked(record: Record, select: list[str] | None) -> Record:
    return record if select is None else {name: record.get(name) for name in select}


def _cancellable(context: ExecutionContext, batches: Iterable[Batch]) -> Iterator[Batch]:
    for batch in batches:
        if context.is_cancelled():
            raise NodeError("the run was cancelled", permanent=True)
        yield batch
