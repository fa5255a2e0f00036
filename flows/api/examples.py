"""Examples shown in the OpenAPI document and Swagger UI."""

from __future__ import annotations

from typing import Any

MINIMAL_FLOW: dict[str, Any] = {
    "slug": "paid-orders-to-crm",
    "name": "Paid orders to CRM",
    "description": "Every paid order with a positive amount, reshaped for the CRM.",
    "nodes": [
        {
            "key": "orders",
            "type": "sql_query",
            "config": {
                "connection": "warehouse",
                "query": "select id, email, status, amount from orders where id > %(min_id)s",
                "params": {"min_id": 0},
            },
        },
        {
            "key": "paid",
            "type": "filter",
            "config": {"conditions": [{"field": "status", "op": "eq", "value": "paid"}]},
        },
        {
            "key": "shape",
            "type": "map_fields",
            "config": {
                "mapping": {"order_id": "id", "total": {"source": "amount", "cast": "float"}}
            },
        },
        {
            "key": "push",
            "type": "http_post",
            "config": {"connection": "crm", "url": "/ingest", "batch_size": 100},
        },
    ],
    "edges": [
        {"from": "orders", "to": "paid"},
        {"from": "paid", "to": "shape"},
        {"from": "shape", "to": "push"},
    ],
}

FLOW_RESPONSE: dict[str, Any] = {
    **MINIMAL_FLOW,
    "version": 1,
    "created_at": "2026-01-05T09:30:00Z",
    "updated_at": "2026-01-05T09:30:00Z",
}

RUN_ID = "0b8e3f5e-2f4c-4d55-9a39-6f1c2a7d9e10"

RUN: dict[str, Any] = {
    "id": RUN_ID,
    "flow": "paid-orders-to-crm",
    "version": 1,
    "status": "succeeded",
    "trigger": "api",
    "params": {"min_id": 1000},
    "interval_start": None,
    "interval_end": None,
    "created_at": "2026-01-05T09:31:00Z",
    "started_at": "2026-01-05T09:31:01Z",
    "finished_at": "2026-01-05T09:31:04Z",
    "duration_s": 3.0,
    "error": "",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "trace_url": "https://tracing.example.com/trace/4bf92f3577b34da6a3ce929d0e0e4736",
}

NODE_RUN: dict[str, Any] = {
    "node_key": "orders",
    "node_type": "sql_query",
    "status": "succeeded",
    "attempts": 1,
    "deliveries": 1,
    "rows_in": 0,
    "rows_out": 3000,
    "rows_out_by_port": {"out": 3000},
    "counts": {"rows_in": "rows in", "rows_out": "rows out"},
    "started_at": "2026-01-05T09:31:01Z",
    "finished_at": "2026-01-05T09:31:02Z",
    "heartbeat_at": "2026-01-05T09:31:02Z",
    "duration_ms": 840,
    "error": "",
    "traceback": "",
    "partitions": [],
}

RUN_DETAIL: dict[str, Any] = {**RUN, "node_runs": [NODE_RUN]}

VERSION: dict[str, Any] = {
    "number": 1,
    "checksum": "1f2f56cab6174ee059b8ff60c05fa2be5ed063b615e5108753f705ee8f59386e",
    "created_at": "2026-01-05T09:30:00Z",
    "definition": {
        "nodes": MINIMAL_FLOW["nodes"],
        "edges": [
            {"from": e["from"], "from_port": "out", "to": e["to"], "to_port": "in"}
            for e in MINIMAL_FLOW["edges"]
        ],
    },
}

PREVIEW_REQUEST: dict[str, Any] = {"node": "shape", "limit": 2, "params": {"min_id": 0}}

PREVIEW_RESPONSE: dict[str, Any] = {
    "node": "shape",
    "limit": 2,
    "timed_out": False,
    "elapsed_ms": 41,
    "nodes": [
        {
            "key": "orders",
            "type": "sql_query",
            "status": "ok",
            "message": "",
            "inputs": {},
            "records": [
                {"id": 1, "email": "ada@example.com", "status": "paid", "amount": "42.50"},
                {"id": 2, "email": "bob@example.com", "status": "open", "amount": "7.00"},
            ],
            "count": 2,
            "limit_reached": True,
            "cut_for_size": False,
            "schema": None,
            "sample_schema": {
                "id": "integer",
                "email": "string",
                "status": "string",
                "amount": "decimal",
            },
        },
        {
            "key": "paid",
            "type": "filter",
            "status": "ok",
            "message": "",
            "inputs": {"in": ["orders"]},
            "records": [{"id": 1, "email": "ada@example.com", "status": "paid", "amount": "42.50"}],
            "count": 1,
            "limit_reached": False,
            "cut_for_size": False,
            "schema": None,
            "sample_schema": {
                "id": "integer",
                "email": "string",
                "status": "string",
                "amount": "decimal",
            },
        },
        {
            "key": "shape",
            "type": "map_fields",
            "status": "ok",
            "message": "",
            "inputs": {"in": ["paid"]},
            "records": [{"order_id": 1, "total": 42.5}],
            "count": 1,
            "limit_reached": False,
            "cut_for_size": False,
            "schema": {"order_id": "any", "total": "float"},
            "sample_schema": {"order_id": "integer", "total": "float"},
        },
    ],
}
