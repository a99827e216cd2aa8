"""The publish step against moto: roll-up sizes, formats read back exactly, the manifest written
last, the pointer and watermark only after it, and a published snapshot never rewritten."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from api_poller.aws.watermark import read_watermark
from api_poller.core.keys import latest_snapshot_key, published_marker_key
from api_poller.output.rollup import roll_up_job
from api_poller.output.schema import ParquetPlan
from api_poller.pipeline.publish import NothingToPublish, publish_source_snapshot, snapshot_date
from api_poller.settings import PollerSettings
from api_poller.sources.spec import SourceSpec, parse_source
from tests.helpers import PROCESSED_BUCKET
from tests.unit.output.conftest import TRICKY_RECORDS, land_pages

SETTINGS = PollerSettings()
JOB = "manual__2026-12-02T09:00:00+00:00"
PREFIX = "snapshots/orders/dt=2026-12-02/job=manual__2026-12-02T09_00_00_00_00/"


def spec(**output: Any) -> SourceSpec:
    document = {
        "name": "orders", "connection_id": "c", "path": "/items", "records": "items",
        "paginator": {"type": "offset"}, "incremental": {"cursor_field": "id", "param": "since"},
        "output": output,
    }  # fmt: skip
    return parse_source(document, "orders.yaml")


def summary(records: int, pages: int, job_max: Any = None) -> dict[str, Any]:
    return {
        "complete": True, "recordsWritten": records, "totalRecords": records, "mode": "plan",
        "progress": {"Total": pages}, "watermark": {"before": None, "jobMax": job_max, "advanced": False},
    }  # fmt: skip


def served_pages(pages: int, per_page: int) -> list[list[dict[str, Any]]]:
    return [
        [{"id": page * per_page + i, "payload": "x" * 200, "tags": {"n": i}} for i in range(per_page)]
        for page in range(pages)
    ]


def body(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=PROCESSED_BUCKET, Key=key)["Body"].read())


def manifest_of(s3: Any) -> dict[str, Any]:
    return dict(json.loads(body(s3, f"{PREFIX}_manifest.json")))


def publish(s3: Any, source: SourceSpec, pages: int, records: int, **extra: Any) -> dict[str, Any]:
    return publish_source_snapshot(
        SETTINGS, source, s3, job_id=JOB, dt="2026-12-02", summary=summary(records, pages, **extra)
    )


def test_pages_roll_up_in_page_order_into_parts_of_about_the_target_size(s3: Any) -> None:
    pages = served_pages(30, 10)  # 12 pages hold about 28 KB of NDJSON
    land_pages(s3, JOB, pages)

    rollup = roll_up_job(s3, PROCESSED_BUCKET, JOB, PREFIX, output_format="ndjson", target_bytes=25_000)

    sizes = [file.bytes for file in rollup.files]
    assert len(sizes) == 3 and all(size >= 25_000 for size in sizes[:-1]) and sizes[-1] < 25_000
    assert all(size < 25_000 + 2_400 for size in sizes)  # at most one page past the target
    lines = b"".join(body(s3, file.key) for file in rollup.files).splitlines()
    assert [json.loads(line) for line in lines] == [record for page in pages for record in page]
    assert [file.key.rsplit("/", 1)[1] for file in rollup.files] == [
        "part-00000.ndjson",
        "part-00001.ndjson",
        "part-00002.ndjson",
    ]


def test_page_ten_comes_after_page_nine(s3: Any) -> None:
    pages = served_pages(12, 1)
    land_pages(s3, JOB, pages)

    publish(s3, spec(), pages=12, records=12)

    (file,) = manifest_of(s3)["files"]
    assert [json.loads(line)["id"] for line in body(s3, file["key"]).splitlines()] == list(range(12))


@pytest.mark.parametrize("fmt", ["ndjson", "ndjson.gz", "parquet"])
def test_every_format_reads_back_to_exactly_the_served_records(s3: Any, fmt: str) -> None:
    pages = [TRICKY_RECORDS[:2], TRICKY_RECORDS[2:], served_pages(1, 3)[0]]
    served = [record for page in pages for record in page]
    land_pages(s3, JOB, pages)

    publish(s3, spec(format=fmt), pages=3, records=len(served))

    manifest = manifest_of(s3)
    read: list[dict[str, Any]] = []
    for file in manifest["files"]:
        data = body(s3, file["key"])
        assert file["bytes"] == len(data)
        if fmt == "parquet":
            plan = ParquetPlan.from_description(manifest["schema"]["parquet"])
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
            file_records = [plan.decode_row(row) for row in rows]
        else:
            text = gzip.decompress(data) if fmt == "ndjson.gz" else data
            file_records = [json.loads(line) for line in text.splitlines()]
        assert file["records"] == len(file_records)
        read += file_records
    assert [json.dumps(r, sort_keys=True) for r in read] == [json.dumps(r, sort_keys=True) for r in served]
    assert manifest["files"][0]["key"].endswith(
        {"ndjson": ".ndjson", "ndjson.gz": ".ndjson.gz"}.get(fmt, ".parquet")
    )


def test_the_manifest_describes_the_snapshot_and_the_pointer_names_it(s3: Any) -> None:
    land_pages(s3, JOB, [TRICKY_RECORDS[:3], TRICKY_RECORDS[3:]])

    outcome = publish(s3, spec(format="ndjson.gz"), pages=2, records=5, job_max=5)

    manifest = manifest_of(s3)
    assert manifest["source"] == "orders" and manifest["jobId"] == JOB and manifest["dt"] == "2026-12-02"
    assert manifest["format"] == "ndjson.gz"
    assert manifest["location"] == f"s3://{PROCESSED_BUCKET}/{PREFIX}"
    assert (manifest["records"], manifest["pages"]) == (5, 2)
    assert manifest["bytes"] == sum(file["bytes"] for file in manifest["files"])
    assert manifest["plan"] == {"totalPages": 2, "totalRecords": 5, "recordsWritten": 5, "mode": "plan"}
    assert manifest["watermark"] == {"field": "id", "before": None, "jobMax": 5}
    assert manifest["schema"]["fields"]["meta"] == ["null", "object"]
    pointer = json.loads(body(s3, latest_snapshot_key("orders")))
    assert pointer["manifest"] == f"s3://{PROCESSED_BUCKET}/{PREFIX}_manifest.json"
    assert pointer["jobId"] == JOB and pointer["records"] == 5
    assert outcome["event"] == {
        "jobId": JOB, "source": "orders", "snapshot": manifest["location"], "manifest": pointer["manifest"],
        "records": 5, "pages": 2, "files": 1, "format": "ndjson.gz", "dt": "2026-12-02",
    }  # fmt: skip
    watermark = read_watermark(s3, PROCESSED_BUCKET, "orders")
    assert watermark is not None and watermark.value == 5
    assert outcome["watermark"]["advanced"] is True


def test_a_manifest_that_cannot_be_written_fails_with_no_pointer_no_watermark(s3: Any) -> None:
    land_pages(s3, JOB, [TRICKY_RECORDS])

    def refuse_manifest(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key", "").endswith("_manifest.json"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")

    s3.meta.events.register("before-parameter-build.s3.PutObject", refuse_manifest)
    try:
        with pytest.raises(ClientError, match="AccessDenied"):
            publish(s3, spec(), pages=1, records=5, job_max=5)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", refuse_manifest)

    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=PROCESSED_BUCKET).get("Contents", [])]
    assert latest_snapshot_key("orders") not in keys
    assert published_marker_key(JOB) not in keys
    assert read_watermark(s3, PROCESSED_BUCKET, "orders") is None  # the job will be fetched again

    outcome = publish(s3, spec(), pages=1, records=5, job_max=5)  # the retry publishes it
    assert outcome["event"]["records"] == 5 and read_watermark(s3, PROCESSED_BUCKET, "orders") is not None


def test_a_published_snapshot_is_never_rewritten_and_a_rerun_publishes_nothing(s3: Any) -> None:
    land_pages(s3, JOB, [TRICKY_RECORDS])
    publish(s3, spec(), pages=1, records=5)
    first = manifest_of(s3)
    land_pages(s3, JOB, [served_pages(1, 7)[0]])  # the job rerun, the API changed meanwhile

    with pytest.raises(NothingToPublish, match="already published"):
        publish(s3, spec(), pages=1, records=7)

    assert manifest_of(s3) == first
    assert [json.loads(line) for line in body(s3, first["files"][0]["key"]).splitlines()] == TRICKY_RECORDS


def test_a_retry_after_the_manifest_resumes_without_rewriting_it(s3: Any) -> None:
    land_pages(s3, JOB, [TRICKY_RECORDS])
    publish(s3, spec(), pages=1, records=5)
    first = manifest_of(s3)
    s3.delete_object(Bucket=PROCESSED_BUCKET, Key=published_marker_key(JOB))  # failed after the manifest
    s3.delete_object(Bucket=PROCESSED_BUCKET, Key=latest_snapshot_key("orders"))

    publish(s3, spec(), pages=1, records=5)

    assert manifest_of(s3) == first
    assert json.loads(body(s3, latest_snapshot_key("orders")))["jobId"] == JOB


def test_an_incomplete_job_publishes_nothing(s3: Any) -> None:
    land_pages(s3, JOB, [TRICKY_RECORDS])

    with pytest.raises(NothingToPublish, match="incomplete"):
        publish_source_snapshot(
            SETTINGS, spec(), s3, job_id=JOB, dt="2026-12-02", summary={**summary(5, 1), "complete": False}
        )

    assert not any(
        item["Key"].startswith("snapshots/")
        for item in s3.list_objects_v2(Bucket=PROCESSED_BUCKET)["Contents"]
    )


def test_the_date_partition_is_the_runs_date_in_utc() -> None:
    from datetime import datetime, timedelta, timezone

    assert snapshot_date(datetime(2026, 12, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5)))) == "2026-12-03"
    assert snapshot_date(datetime(2026, 12, 2, 0, 30)) == "2026-12-02"
