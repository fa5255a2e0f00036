"""The config of ``sql_write``: where and how to write (validated when a flow is saved)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nodes.builtin.sql_write.dialect import TableName
from nodes.sdk.node import NodeConfig

#: Identifiers longer than this are refused (PostgreSQL would cut them silently; MariaDB: 64).
MAX_IDENTIFIER = 63
_NAME = re.compile(r"^[^\x00]{1,63}$")


def _identifier(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"'{name[:80]}' is not a valid name (1 to 63 characters, no NUL)")
    return name


class SqlWriteConfig(NodeConfig):
    """Where and how to write the records."""

    connection: str = Field(min_length=1, description="Name of the database connection.")
    table: str = Field(
        min_length=1,
        max_length=2 * MAX_IDENTIFIER + 1,
        description="Target table: name or schema.name (always quoted as an identifier).",
    )
    mode: Literal["insert", "upsert", "replace"] = Field(
        "insert",
        description="insert: add the records; upsert: insert or update on key; replace: load "
        "a staging table and swap it in at the end, in one transaction.",
    )
    key: list[str] = Field(
        default_factory=list,
        description="Conflict columns of upsert (a unique index on them); with create_table, "
        "the primary key of the new table.",
    )
    columns: list[str] | None = Field(
        None,
        description="Columns to write, from the fields of the same names (default: all fields).",
    )
    batch_size: int = Field(
        5000, ge=1, le=100_000, description="Records per batch; each batch is one transaction."
    )
    create_table: bool = Field(
        False, description="Create the table when it does not exist (types from the records)."
    )
    statement_timeout_s: float = Field(
        300, gt=0, le=86_400, description="Longest a statement may run, in seconds."
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str) -> str:
        parsed = TableName.parse(table)
        for part in filter(None, (parsed.schema, parsed.name)):
            _identifier(part)
        if parsed.schema == "":
            raise ValueError("the schema part is empty (write name or schema.name)")
        return table

    @field_validator("key", "columns")
    @classmethod
    def _names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        for name in names:
            _identifier(name)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"'{repeated[0]}' is listed twice")
        return names

    @model_validator(mode="after")
    def _mode_needs(self) -> SqlWriteConfig:
        if self.mode == "upsert" and not self.key:
            raise ValueError("key: upsert needs the key columns (a unique index on them)")
        if self.columns is not None:
            if not self.columns:
                raise ValueError("columns: name at least one column (or leave it unset)")
            missing = [name for name in self.key if name not in self.columns]
            if missing:
                raise ValueError(f"key: '{missing[0]}' is not one of the columns written")
        return self
