"""What the records of a snapshot look like: the JSON types seen per field, and a Parquet column
plan that reads back to exactly the records served.

``SchemaObserver`` is fed every record (in page order) and keeps only per-field facts, never the
records. Its ``summary()`` goes in the manifest (field -> JSON types seen); its ``parquet_plan()``
decides each top-level field's column:

* only booleans -> ``bool``; only integers (within int64) -> ``int64``; only non-integral numbers
  -> ``double``; only strings -> ``string``; never a value but null -> ``string`` (all null);
* anything else (objects, arrays, integers mixed with fractions, mixed types, or a field that is
  null in some records and absent from others) -> ``string`` holding the value as JSON text
  (a "JSON field"): exact, and queryable with ``json_extract`` in DuckDB or Athena;
* a field absent from some records is null there; such fields are listed as ``omitWhenNull``
  so that ``decode_row`` leaves the key out again (a JSON field stores a served null as ``null``).

Integers mixed with fractions are JSON text rather than ``double`` so that ``1`` reads back as
``1``, not ``1.0``: the read-back is the served record, not a value that merely compares equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def json_type(value: Any) -> str:
    """The JSON type name of a parsed JSON value (integer and number told apart)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array"


@dataclass
class _FieldFacts:
    types: set[str] = field(default_factory=set)
    present: int = 0
    # Only for integers: whether every one fits int64.
    int64_safe: bool = True


@dataclass(frozen=True)
class ParquetPlan:
    """The Parquet columns of a snapshot and how a row reads back into the served record."""

    columns: dict[str, str]  # field -> "bool" | "int64" | "double" | "string"
    json_fields: frozenset[str]
    omit_when_null: frozenset[str]

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        types = {"bool": pa.bool_(), "int64": pa.int64(), "double": pa.float64(), "string": pa.string()}
        metadata = {"api_poller.schema": json.dumps(self.describe(), sort_keys=True)}
        return pa.schema([(name, types[kind]) for name, kind in self.columns.items()], metadata=metadata)

    def encode_row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The Parquet row of a record: JSON fields as JSON text, an absent field as null."""
        row: dict[str, Any] = {}
        for name in self.columns:
            if name not in record:
                row[name] = None
            elif name in self.json_fields:
                row[name] = json.dumps(record[name], separators=(",", ":"), ensure_ascii=False)
            else:
                row[name] = record[name]
        return row

    def decode_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The served record back from a Parquet row (``pyarrow`` ``to_pylist()`` form)."""
        record: dict[str, Any] = {}
        for name, value in row.items():
            if value is None and name in self.omit_when_null:
                continue
            record[name] = json.loads(value) if name in self.json_fields and value is not None else value
        return record

    def describe(self) -> dict[str, Any]:
        """The plan as the manifest and the files' metadata carry it (to read the files back)."""
        return {
            "columns": dict(self.columns),
            "jsonFields": sorted(self.json_fields),
            "omitWhenNull": sorted(self.omit_when_null),
        }

    @classmethod
    def from_description(cls, document: Mapping[str, Any]) -> ParquetPlan:
        return cls(
            columns=dict(document["columns"]),
            json_fields=frozenset(document["jsonFields"]),
            omit_when_null=frozenset(document["omitWhenNull"]),
        )


class SchemaObserver:
    """Per-field facts of every record seen (never the records themselves)."""

    def __init__(self) -> None:
        self.records = 0
        self._fields: dict[str, _FieldFacts] = {}  # first-seen order is column order

    def observe(self, record: Mapping[str, Any]) -> None:
        self.records += 1
        for name, value in record.items():
            facts = self._fields.get(name)
            if facts is None:
                facts = self._fields[name] = _FieldFacts()
            kind = json_type(value)
            facts.types.add(kind)
            facts.present += 1
            if kind == "integer" and not INT64_MIN <= value <= INT64_MAX:
                facts.int64_safe = False

    def summary(self) -> dict[str, list[str]]:
        """Field name -> the JSON types seen (``null`` included; absent records are not a type)."""
        return {name: sorted(facts.types) for name, facts in self._fields.items()}

    def absent_counts(self) -> dict[str, int]:
        """Fields missing from some records: name -> how many records lack it."""
        return {
            name: self.records - facts.present
            for name, facts in self._fields.items()
            if facts.present < self.records
        }

    def parquet_plan(self) -> ParquetPlan:
        columns: dict[str, str] = {}
        json_fields: set[str] = set()
        omit: set[str] = set()
        for name, facts in self._fields.items():
            absent = facts.present < self.records
            values = facts.types - {"null"}
            kind = _column_kind(values, facts.int64_safe)
            if kind is None or (absent and "null" in facts.types):
                kind = "string"
                json_fields.add(name)
            if absent:
                omit.add(name)
            columns[name] = kind
        return ParquetPlan(columns, frozenset(json_fields), frozenset(omit))


def _column_kind(values: set[str], int64_safe: bool) -> str | None:
    """The plain column a field's non-null types fit, or None (JSON text)."""
    if not values:
        return "string"
    if len(values) > 1:
        return None
    (only,) = values
    if only == "integer":
        return "int64" if int64_safe else None
    return {"boolean": "bool", "number": "double", "string": "string"}.get(only)
