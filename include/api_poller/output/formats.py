"""Writers of one snapshot data file, per format: ``ndjson``, ``ndjson.gz`` and ``parquet``.

A writer fills a temporary file on disk (so a part of any target size costs bounded memory),
takes a page's records at a time, tells how many bytes it has written so far (the roll-up starts a
new part past the target), and hands back the finished file to upload. Output is deterministic:
the same records give the same bytes (gzip carries no timestamp or file name), so a rerun
overwrites a part with identical content.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from api_poller.output.schema import ParquetPlan
    from api_poller.sources.spec import OutputFormat

EXTENSIONS: dict[str, str] = {"ndjson": "ndjson", "ndjson.gz": "ndjson.gz", "parquet": "parquet"}
CONTENT_TYPES: dict[str, str] = {
    "ndjson": "application/x-ndjson",
    "ndjson.gz": "application/gzip",
    "parquet": "application/vnd.apache.parquet",
}
# Parquet row groups: rows are buffered up to this much JSON text, then written as one group.
ROW_GROUP_JSON_BYTES = 32 * 1024 * 1024
PARQUET_COMPRESSION = "zstd"


class PartWriter(Protocol):
    records: int

    def write_page(self, lines: Sequence[bytes], records: Sequence[Mapping[str, Any]]) -> None:
        """Append a page: its NDJSON lines (newline-terminated) and the same records parsed."""

    def bytes_written(self) -> int:
        """Bytes in the file so far (what the part will roughly weigh if closed now)."""

    def finish(self) -> IO[bytes]:
        """Close the format's framing; the file, rewound, ready to upload (the caller closes it)."""


class NdjsonWriter:
    """Plain newline-delimited JSON: the per-page lines as they are, one after the other."""

    def __init__(self) -> None:
        self.records = 0
        self._file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (finish() hands it over)

    def write_page(self, lines: Sequence[bytes], records: Sequence[Mapping[str, Any]]) -> None:
        self._file.writelines(lines)
        self.records += len(lines)

    def bytes_written(self) -> int:
        return self._file.tell()

    def finish(self) -> IO[bytes]:
        self._file.seek(0)
        return self._file


class GzipNdjsonWriter:
    """NDJSON in one gzip member (``mtime=0``, no file name: the same input, the same bytes)."""

    def __init__(self) -> None:
        self.records = 0
        self._file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (finish() hands it over)
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0, compresslevel=6)

    def write_page(self, lines: Sequence[bytes], records: Sequence[Mapping[str, Any]]) -> None:
        self._gzip.writelines(lines)
        self.records += len(lines)

    def bytes_written(self) -> int:
        return self._file.tell()  # compressed bytes flushed so far

    def finish(self) -> IO[bytes]:
        self._gzip.close()  # leaves the underlying file open
        self._file.seek(0)
        return self._file


class ParquetPartWriter:
    """Parquet (zstd) with the snapshot's column plan; rows are buffered into row groups."""

    def __init__(self, plan: ParquetPlan, row_group_bytes: int = ROW_GROUP_JSON_BYTES) -> None:
        import pyarrow.parquet as pq

        self.records = 0
        self._plan = plan
        self._schema = plan.arrow_schema()
        self._file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (finish() hands it over)
        self._writer = pq.ParquetWriter(self._file, self._schema, compression=PARQUET_COMPRESSION)
        self._pages: list[Any] = []  # pyarrow Tables, one per page, until the row group is full
        self._buffered_bytes = 0
        self._row_group_bytes = row_group_bytes

    def write_page(self, lines: Sequence[bytes], records: Sequence[Mapping[str, Any]]) -> None:
        import pyarrow as pa

        # Each page becomes Arrow columns at once: compact (about its JSON size), where the
        # buffered rows as Python objects would take several times that.
        rows = [self._plan.encode_row(record) for record in records]
        self._pages.append(pa.Table.from_pylist(rows, schema=self._schema))
        self._buffered_bytes += sum(len(line) for line in lines)
        self.records += len(records)
        if self._buffered_bytes >= self._row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pages:
            self._writer.write_table(pa.concat_tables(self._pages))
        self._pages, self._buffered_bytes = [], 0

    def bytes_written(self) -> int:
        return self._file.tell()

    def finish(self) -> IO[bytes]:
        self._flush()
        self._writer.close()  # writes the footer; the file stays open
        self._file.seek(0)
        return self._file


def new_part_writer(output_format: OutputFormat, plan: ParquetPlan | None, target_bytes: int) -> PartWriter:
    """A writer for one part of ``output_format`` (Parquet needs the snapshot's column plan; its
    row groups are at most the target size of JSON text, so small targets still roll over)."""
    if output_format == "ndjson":
        return NdjsonWriter()
    if output_format == "ndjson.gz":
        return GzipNdjsonWriter()
    if plan is None:
        raise ValueError("a Parquet part needs the snapshot's column plan")
    return ParquetPartWriter(plan, min(ROW_GROUP_JSON_BYTES, target_bytes))
