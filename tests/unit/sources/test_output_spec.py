"""A source's ``output:`` section: defaults, valid values, and clear errors naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api_poller.core.errors import SourceError
from api_poller.sources import OutputSpec, load_source
from tests.unit.sources.test_spec import with_changes, write


def test_a_source_without_output_publishes_ndjson_at_128_mb_and_keeps_every_snapshot(tmp_path: Path) -> None:
    source = load_source(write(tmp_path, with_changes()))

    assert source.output == OutputSpec(format="ndjson", target_file_size_mb=128, keep_snapshots=None)
    assert source.output.target_file_bytes == 128 * 1024 * 1024


@pytest.mark.parametrize("fmt", ["ndjson", "ndjson.gz", "parquet"])
def test_every_format_is_read(tmp_path: Path, fmt: str) -> None:
    output = {"format": fmt, "target_file_size_mb": 5120, "keep_snapshots": 3}
    source = load_source(write(tmp_path, with_changes(output=output)))

    assert source.output == OutputSpec(format=fmt, target_file_size_mb=5120, keep_snapshots=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("output", "field", "words"),
    [
        (
            {"format": "csv"},
            "output.format",
            "'csv' (str) is not supported: one of ndjson, ndjson.gz, parquet",
        ),
        ({"format": "parket"}, "output.format", "did you mean 'parquet'?"),
        ({"target_file_size_mb": 0}, "output.target_file_size_mb", "must be between 1 and 5120, got 0"),
        ({"target_file_size_mb": 5121}, "output.target_file_size_mb", "must be between 1 and 5120, got 5121"),
        ({"target_file_size_mb": 0.5}, "output.target_file_size_mb", "must be a whole number"),
        ({"keep_snapshots": 0}, "output.keep_snapshots", "must be between 1 and"),
        ({"keep_snapshots": "all"}, "output.keep_snapshots", "must be a whole number"),
        ({"compression": "zstd"}, "output.compression", "unknown field of output"),
        ("parquet", "output", "must be a mapping"),
    ],
)
def test_bad_output_is_refused_naming_file_and_field(
    tmp_path: Path, output: Any, field: str, words: str
) -> None:
    path = write(tmp_path, with_changes(output=output))

    with pytest.raises(SourceError) as caught:
        load_source(path)

    assert str(caught.value).startswith(f"{path}: {field}: "), str(caught.value)
    assert words in str(caught.value)
