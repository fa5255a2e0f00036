"""The ``map_fields`` node: rename, pick, cast, defaults, constants, nesting, schemas."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from nodes.builtin.map_fields import MapFieldsNode
from nodes.sdk import ExecutionContext, FieldType, NodeError, RecordSchema

ORDER = {
    "id": 7,
    "amount": "12.50",
    "paid": "yes",
    "day": "2024-02-29",
    "at": "2024-02-29T10:00:00+00:00",
    "customer": {"name": "Zoë 東京", "address": {"city": "Madrid"}},
    "note": None,
}
UPSTREAM = RecordSchema(
    {
        "id": FieldType.INTEGER,
        "amount": FieldType.STRING,
        "customer": FieldType.JSON,
        "note": FieldType.STRING,
    }
)


def run(config: dict[str, Any], *records: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    node = MapFieldsNode(config)
    out = node.execute(ExecutionContext(**context), {"in": iter([list(records or [ORDER])])})
    return [record for batch in out for record in batch]


def test_renames_and_picks_only_mapped_fields() -> None:
    assert run({"mapping": {"order_id": "id", "city": "customer.address.city"}}) == [
        {"order_id": 7, "city": "Madrid"}
    ]


def test_casts_every_type() -> None:
    mapping = {
        "total": {"source": "amount", "cast": "decimal"},
        "total_f": {"source": "amount", "cast": "float"},
        "id_s": {"source": "id", "cast": "str"},
        "id_i": {"source": "id", "cast": "int"},
        "paid": {"source": "paid", "cast": "bool"},
        "day": {"source": "day", "cast": "date"},
        "at": {"source": "at", "cast": "datetime"},
    }
    assert run({"mapping": mapping}) == [
        {
            "total": Decimal("12.50"),
            "total_f": 12.5,
            "id_s": "7",
            "id_i": 7,
            "paid": True,
            "day": date(2024, 2, 29),
            "at": datetime(2024, 2, 29, 10, tzinfo=UTC),
        }
    ]


def test_defaults_fill_missing_and_null_sources_and_are_cast() -> None:
    mapping = {
        "note": {"source": "note", "default": "none"},
        "zip": {"source": "customer.address.zip", "default": "00000"},
        "count": {"source": "count", "cast": "int", "default": "0"},
        "absent": "nope",
        "kept_null": {"source": "note", "cast": "int"},
    }
    assert run({"mapping": mapping}) == [
        {"note": "none", "zip": "00000", "count": 0, "absent": None, "kept_null": None}
    ]


def test_constants_and_dotted_targets_build_nested_objects() -> None:
    mapping = {
        "source": {"value": "crm"},
        "empty": {"value": None},
        "customer.id": "id",
        "customer.name": "customer.name",
        "customer.since": {"value": "2024-01-01", "cast": "date"},
    }
    assert run({"mapping": mapping}) == [
        {
            "source": "crm",
            "empty": None,
            "customer": {"id": 7, "name": "Zoë 東京", "since": date(2024, 1, 1)},
        }
    ]


def test_keep_unmapped_keeps_the_fields_not_used_as_a_source() -> None:
    record = {"id": 1, "status": "paid", "customer": {"name": "Zoë"}}
    out = run(
        {"mapping": {"order_id": "id", "customer.vip": {"value": True}}, "keep_unmapped": True},
        record,
    )
    assert out == [{"status": "paid", "customer": {"name": "Zoë", "vip": True}, "order_id": 1}]
    assert record == {"id": 1, "status": "paid", "customer": {"name": "Zoë"}}  # input untouched


def test_a_failing_cast_names_field_value_and_record_index() -> None:
    records = [{"amount": "1"}, {"amount": "2"}, {"amount": "twelve" + "!" * 200}]
    with pytest.raises(NodeError) as caught:
        run({"mapping": {"total": {"source": "amount", "cast": "decimal"}}}, *records)
    error = caught.value
    assert error.permanent
    assert str(error).startswith("field 'total' of record 2: cannot cast 'twelve!!!")
    assert len(str(error)) < 150


def test_record_index_counts_across_batches_and_names_the_partition() -> None:
    node = MapFieldsNode({"mapping": {"n": {"source": "n", "cast": "int"}}})
    batches = iter([[{"n": "1"}, {"n": "2"}], [{"n": "x"}]])
    with pytest.raises(NodeError, match="field 'n' of record 2 of partition 3: cannot cast 'x'"):
        list(node.execute(ExecutionContext(partition=3), {"in": batches}))


def test_streams_one_output_batch_per_input_batch() -> None:
    node = MapFieldsNode({"mapping": {"n": "n"}})
    out = list(
        node.execute(ExecutionContext(), {"in": iter([[{"n": 1}, {"n": 2}], [], [{"n": 3}]])})
    )
    assert out == [[{"n": 1}, {"n": 2}], [{"n": 3}]]


def test_empty_input_yields_nothing() -> None:
    node = MapFieldsNode({"mapping": {"n": "n"}})
    assert list(node.execute(ExecutionContext(), {"in": iter([])})) == []


@pytest.mark.parametrize(
    ("mapping", "loc", "message"),
    [
        ({}, ("mapping",), "at least 1 item"),
        ({"a": {"source": "x", "cast": "integer"}}, ("mapping", "a", "cast"), "'int'"),
        ({"a": {}}, ("mapping", "a"), "either 'source' or 'value'"),
        ({"a": {"source": "x", "value": 1}}, ("mapping", "a"), "either 'source' or 'value'"),
        ({"a": {"value": 1, "default": 2}}, ("mapping", "a"), "takes no 'default'"),
        ({"a": {"value": "abc", "cast": "int"}}, ("mapping", "a"), "cannot cast 'abc' to int"),
        ({"a": {"source": "x", "cast": "date", "default": "soon"}}, ("mapping", "a"),
         "cannot cast 'soon' to date"),
        ({"a": {"source": ""}}, ("mapping", "a", "source"), "at least 1"),
        ({"a": {"source": "x", "typo": 1}}, ("mapping", "a", "typo"), "Extra inputs"),
        ({"a": "x", "a.b": "y"}, ("mapping",), "'a' and 'a.b' overlap"),
        ({"a..b": "x"}, ("mapping",), "not a valid field path"),
    ],
)  # fmt: skip
def test_config_validation_errors(
    mapping: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        MapFieldsNode({"mapping": mapping})
    error = caught.value.errors()[0]
    assert error["loc"] == loc
    assert message in error["msg"]


def test_check_names_mappings_whose_source_is_missing_upstream() -> None:
    node = MapFieldsNode(
        {
            "mapping": {
                "order_id": "id",
                "total": {"source": "amount_eur"},
                "city": "customer.address.city",
                "k": {"value": 1},
            }
        }
    )
    assert [str(p) for p in node.check({"in": UPSTREAM})] == [
        "config.mapping.total.source: field 'amount_eur' does not exist upstream "
        "(known fields: id, amount, customer, note)"
    ]
    assert node.check({"in": RecordSchema.unknown()}) == []


def test_output_schema_types_targets_from_cast_upstream_or_constant() -> None:
    node = MapFieldsNode(
        {
            "mapping": {
                "order_id": "id",
                "total": {"source": "amount", "cast": "decimal"},
                "name": "customer.name",
                "source": {"value": "crm"},
                "flag": {"value": None},
                "meta.batch": {"value": 1},
            }
        }
    )
    assert node.output_schema({"in": UPSTREAM}).fields == {
        "order_id": FieldType.INTEGER,
        "total": FieldType.DECIMAL,
        "name": FieldType.ANY,
        "source": FieldType.STRING,
        "flag": FieldType.ANY,
        "meta": FieldType.JSON,
    }
    assert node.output_schema({"in": RecordSchema.unknown()}).fields == {
        "order_id": FieldType.ANY,
        "total": FieldType.DECIMAL,
        "name": FieldType.ANY,
        "source": FieldType.STRING,
        "flag": FieldType.ANY,
        "meta": FieldType.JSON,
    }


def test_output_schema_with_keep_unmapped() -> None:
    node = MapFieldsNode({"mapping": {"order_id": "id"}, "keep_unmapped": True})
    assert node.output_schema({"in": UPSTREAM}).fields == {
        "amount": FieldType.STRING,
        "customer": FieldType.JSON,
        "note": FieldType.STRING,
        "order_id": FieldType.INTEGER,
    }
    assert not node.output_schema({"in": RecordSchema.unknown()}).known


def test_config_schema_documents_the_path_shorthand() -> None:
    schema = MapFieldsNode.describe()["config_schema"]
    choices = schema["properties"]["mapping"]["additionalProperties"]["anyOf"]
    assert choices[0]["type"] == "string"
    assert choices[1] == {"$ref": "#/$defs/FieldMapping"}
    assert all(p.get("description") for p in schema["$defs"]["FieldMapping"]["properties"].values())
