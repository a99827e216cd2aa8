"""The schema summary and the Parquet column plan: every record reads back exactly as served."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq

from api_poller.output.formats import ParquetPartWriter
from api_poller.output.schema import SchemaObserver
from tests.unit.output.conftest import TRICKY_RECORDS


def observed(records: list[dict]) -> SchemaObserver:
    observer = SchemaObserver()
    for record in records:
        observer.observe(record)
    return observer


def test_the_summary_names_every_field_with_the_json_types_seen() -> None:
    summary = observed(TRICKY_RECORDS).summary()

    assert summary == {
        "id": ["integer"],
        "name": ["null", "string"],
        "price": ["integer", "number"],
        "tags": ["array", "null"],
        "meta": ["null", "object"],
        "ok": ["boolean"],
        "none": ["null"],
        "big": ["integer"],
        "mixed": ["integer", "string"],
        "only_some": ["null", "number"],
    }
    assert observed(TRICKY_RECORDS).absent_counts() == {
        "price": 1,
        "tags": 2,
        "meta": 2,
        "ok": 2,
        "mixed": 3,
        "only_some": 3,
    }


def test_plain_fields_get_plain_columns_and_the_rest_json_text() -> None:
    plan = observed(TRICKY_RECORDS).parquet_plan()

    assert plan.columns == {
        "id": "int64", "name": "string", "price": "string", "tags": "string", "meta": "string",
        "ok": "bool", "none": "string", "big": "string", "mixed": "string", "only_some": "string",
    }  # fmt: skip
    # Integers mixed with fractions, containers, mixed types, beyond int64, null-and-absent: JSON.
    assert plan.json_fields == {"price", "tags", "meta", "big", "mixed", "only_some"}
    assert plan.omit_when_null == {"price", "tags", "meta", "ok", "mixed", "only_some"}


def test_a_parquet_file_reads_back_to_exactly_the_records() -> None:
    plan = observed(TRICKY_RECORDS).parquet_plan()
    writer = ParquetPartWriter(plan)
    lines = [json.dumps(record).encode() + b"\n" for record in TRICKY_RECORDS]
    writer.write_page(lines, TRICKY_RECORDS)

    with writer.finish() as file:
        table = pq.read_table(io.BytesIO(file.read()))

    assert [plan.decode_row(row) for row in table.to_pylist()] == TRICKY_RECORDS
    # Exact, not merely equal: 10 stays an integer, 10.5 a float.
    assert [json.dumps(plan.decode_row(row), sort_keys=True) for row in table.to_pylist()] == [
        json.dumps(record, sort_keys=True) for record in TRICKY_RECORDS
    ]
    # The plan travels with the file, so a reader without the manifest can decode it.
    assert json.loads(table.schema.metadata[b"api_poller.schema"]) == plan.describe()
