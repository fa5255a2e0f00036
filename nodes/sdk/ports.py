"""Ports: the named, typed sockets that edges connect."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PortKind(StrEnum):
    """What travels through a port."""

    RECORDS = "records"  # a stream of JSON-like records (dicts)
    SUMMARY = "summary"  # records that report on work done (e.g. HTTP responses)
    ANY = "any"  # an input that accepts whatever arrives


# (output kind, input kind) pairs that may be joined by an edge.
COMPATIBLE: frozenset[tuple[PortKind, PortKind]] = frozenset(
    {
        (PortKind.RECORDS, PortKind.RECORDS),
        (PortKind.SUMMARY, PortKind.SUMMARY),
        # A summary is itself a stream of records, so record nodes may consume it.
        (PortKind.SUMMARY, PortKind.RECORDS),
        (PortKind.RECORDS, PortKind.ANY),
        (PortKind.SUMMARY, PortKind.ANY),
    }
)


def can_connect(output: PortKind, input: PortKind) -> bool:
    """Whether an edge may join an output port of kind ``output`` to an input of kind ``input``."""
    return (output, input) in COMPATIBLE


@dataclass(frozen=True)
class Port:
    """A named input or output of a node type."""

    name: str
    kind: PortKind = PortKind.RECORDS
    required: bool = True
    description: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": str(self.kind),
            "required": self.required,
            "description": self.description,
        }
