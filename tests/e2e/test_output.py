"""Source snapshots end to end (``dag.test`` against the simulator and moto): files that read back
to exactly the served records, a manifest and pointer, the Asset event with its extra in
Airflow's database; a failed job publishes nothing."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from api_poller_dev.partner_sim.dataset import Dataset
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller import names
from api_poller.aws.watermark import read_watermark
from api_poller.core.keys import latest_snapshot_key, published_marker_key
from api_poller.output.schema import ParquetPlan
from tests.helpers import PROCESSED_BUCKET, ROOT, task_states

pytestmark = pytest.mark.e2e

TOTAL, PAGE_SIZE, SEED = 95, 10, 11
POISON_PAGE = 3
CONFIG = SimulatorConfig(total_records=TOTAL, page_size=PAGE_SIZE, latency_ms=0, error_rate=0, seed=SEED)
OFFSET = {"type": "offset", "page_size": PAGE_SIZE, "total_path": "meta.total"}
SOURCES = {
    # Planned pages, Parquet, incremental: the watermark moves only once the snapshot is out.
    "parquet_orders": {
        "path": "/offset/items", "records": "data.items", "paginator": OFFSET,
        "incremental": {"cursor_field": "updated_at", "param": "updated_since"},
        "output": {"format": "parquet", "target_file_size_mb": 1},
    },
    # A walked source (cursor), gzip.
    "gz_events": {
        "path": "/cursor/items", "records": "items",
        "paginator": {"type": "cursor", "cursor_path": "next_cursor", "page_size": PAGE_SIZE},
        "output": {"format": "ndjson.gz"},
    },
    # A page whose records lack their primary key: the job fails.
    "poisoned": {"path": "/offset/items", "records": "data.items", "paginator": OFFSET},
}  # fmt: skip


@dataclass
class Stack:
    bag: Any


@pytest.fixture(scope="module")
def stack(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("output_sources")
    with ExitStack() as servers, pytest.MonkeyPatch.context() as env:
        for name, fields in SOURCES.items():
            poison = frozenset({POISON_PAGE}) if name == "poisoned" else frozenset()
            config = SimulatorConfig(**{**CONFIG.__dict__, "poison_pages": poison})
            base_url = servers.enter_context(run_in_thread(config))
            host, port = base_url.removeprefix("http://").split(":")
            connection = {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
            env.setenv(f"AIRFLOW_CONN_OUT_{name.upper()}", json.dumps(connection))
            document = {"name": name, "connection_id": f"out_{name}", "primary_key": "id", **fields}
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        env.setenv("API_POLLER_SOURCES_FOLDER", str(folder))
        from airflow.dag_processing.dagbag import DagBag

        yield Stack(DagBag(dag_folder=str(ROOT / "dags")))


def served_records() -> list[dict[str, Any]]:
    dataset = Dataset(CONFIG)
    return [dataset.record(offset) for offset in range(TOTAL)]


def asset_events(source: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra, AssetEvent.source_run_id)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == names.source_asset_name(source))
        ).all()
    return [{"extra": extra, "run_id": run_id} for extra, run_id in rows]


def read_object(aws: Any, uri_or_key: str) -> bytes:
    key = uri_or_key.removeprefix(f"s3://{PROCESSED_BUCKET}/")
    return bytes(aws.s3.get_object(Bucket=PROCESSED_BUCKET, Key=key)["Body"].read())


def snapshot_records(aws: Any, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for file in manifest["files"]:
        data = read_object(aws, file["key"])
        if manifest["format"] == "parquet":
            plan = ParquetPlan.from_description(manifest["schema"]["parquet"])
            records += [plan.decode_row(row) for row in pq.read_table(io.BytesIO(data)).to_pylist()]
        else:
            text = gzip.decompress(data) if manifest["format"] == "ndjson.gz" else data
            records += [json.loads(line) for line in text.splitlines()]
    return records


def assert_readable_as_one_hive_table(aws: Any, source: str, manifest: dict[str, Any], copy: Path) -> None:
    """The source's folder, copied as is, is one table to a Hive-partitioned reader (pyarrow's
    dataset, as DuckDB, Athena and Spark read it): the data files only, ``dt`` and ``job`` as
    columns; the manifest and pointer (``_`` names) are left out."""
    import pyarrow.dataset as ds

    root = f"snapshots/{source}/"
    for key in aws.keys(PROCESSED_BUCKET, root):
        target = copy / key[len(root) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_object(aws, key))
    table = ds.dataset(copy, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == manifest["records"]
    assert set(table.column("dt").to_pylist()) == {manifest["dt"]}
    assert set(table.column("job").to_pylist()) == {manifest["job"]}
    assert table.column("id").to_pylist() == [record["id"] for record in served_records()]


@pytest.mark.parametrize("name", ["parquet_orders", "gz_events"])
def test_a_complete_job_publishes_a_snapshot_that_reads_back_to_the_served_records(
    stack: Stack, aws: Any, name: str, tmp_path: Path
) -> None:
    dag_run = stack.bag.dags[names.source_dag_id(name)].test()

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert task_states(dag_run)["publish"] == "success"
    pointer = json.loads(read_object(aws, latest_snapshot_key(name)))
    assert pointer["jobId"] == dag_run.run_id
    manifest = json.loads(read_object(aws, pointer["manifest"]))
    assert snapshot_records(aws, manifest) == served_records()  # in order, none twice, exact
    assert manifest["records"] == TOTAL and manifest["pages"] == 10
    fields = manifest["schema"]["fields"]
    assert fields == {"id": ["integer"], "updated_at": ["string"], "payload": ["string"]}
    assert manifest["plan"]["totalPages"] == 10
    assert pointer["manifest"].endswith("/_manifest.json") and pointer["location"] == manifest["location"]
    assert published_marker_key(dag_run.run_id) in aws.keys(PROCESSED_BUCKET, "jobs/")
    (event,) = [event for event in asset_events(name) if event["run_id"] == dag_run.run_id]
    assert event["extra"] == {
        "jobId": dag_run.run_id, "source": name, "snapshot": manifest["location"],
        "manifest": pointer["manifest"], "records": TOTAL, "pages": 10, "files": 1,
        "format": manifest["format"], "dt": manifest["dt"],
    }  # fmt: skip
    if name == "parquet_orders":
        assert_readable_as_one_hive_table(aws, name, manifest, tmp_path)
        watermark = read_watermark(aws.s3, PROCESSED_BUCKET, name)
        assert watermark is not None and watermark.value == served_records()[-1]["updated_at"]
        assert manifest["watermark"] == {"field": "updated_at", "before": None, "jobMax": watermark.value}


def test_a_failed_job_publishes_nothing_no_pointer_no_event(stack: Stack, aws: Any) -> None:
    dag_run = stack.bag.dags[names.source_dag_id("poisoned")].test()

    states = task_states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["report"] == "failed" and states["publish"] == "upstream_failed"
    assert aws.keys(PROCESSED_BUCKET, "snapshots/") == []
    assert asset_events("poisoned") == []


def test_with_on_incomplete_warn_an_incomplete_job_skips_publish(
    stack: Stack, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run ends well (only a warning), but nothing is published and no event is sent."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("API_POLLER_ON_INCOMPLETE", "warn")
    bag = DagBag(dag_folder=str(ROOT / "dags" / "api_poller_sources.py"))

    dag_run = bag.dags[names.source_dag_id("poisoned")].test()

    states = task_states(dag_run)
    assert states["report"] == "success" and states["publish"] == "skipped", states
    assert aws.keys(PROCESSED_BUCKET, "snapshots/") == []
    assert published_marker_key(dag_run.run_id) not in aws.keys(PROCESSED_BUCKET, "jobs/")
    assert asset_events("poisoned") == []
