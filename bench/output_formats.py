"""Bytes, file counts and roll-up time of a 1,000,000-record snapshot in each output format.

    .venv/bin/python bench/output_formats.py                     # 1M records, 100 per page, 128 MB
    .venv/bin/python bench/output_formats.py --records 100000 --target-mb 8

Records are the simulator's (``id``, ``updated_at``, a 32-character ``payload``; the same
generator as ``/offset/items``). They are landed once in moto's S3 (its server, in a process of
its own on 127.0.0.1, as the e2e tests use it) the way the consumer writes them, one NDJSON object
per page under ``jobs/<job>/records/``; then the publish step's roll-up
(``api_poller.output.rollup.roll_up_job``) runs once per format, timed: that is the extra time
publishing adds to a job (the manifest and pointer are two small PUTs more). moto's server shares
the machine's CPUs with the roll-up, which a real S3 would not. Results go to
``bench/results/output_formats.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "devtools")]
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import boto3  # noqa: E402
from api_poller_dev.local_stack import moto_server  # noqa: E402
from api_poller_dev.partner_sim.dataset import Dataset  # noqa: E402
from api_poller_dev.simulator import SimulatorConfig  # noqa: E402

from api_poller.core.keys import processed_key, snapshot_prefix  # noqa: E402
from api_poller.core.planning import page_id  # noqa: E402
from api_poller.output.rollup import roll_up_job  # noqa: E402

BUCKET = "bench-processed"
JOB = "bench__2026-12-02T00:00:00+00:00"
FORMATS = ("ndjson", "ndjson.gz", "parquet")


def land_pages(s3, records: int, page_size: int) -> int:
    """The simulator's records as the consumer writes them; the NDJSON bytes landed."""
    dataset = Dataset(SimulatorConfig(total_records=records, page_size=page_size, seed=1))

    def land(page: int) -> int:
        start = page * page_size
        lines = [
            json.dumps(dataset.record(offset), separators=(",", ":"))
            for offset in range(start, min(start + page_size, records))
        ]
        body = ("\n".join(lines) + "\n").encode()
        s3.put_object(Bucket=BUCKET, Key=processed_key(JOB, page_id(page)), Body=body)
        return len(body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return sum(pool.map(land, range(-(-records // page_size))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--target-mb", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "output_formats")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="bench-output-") as workdir,
        moto_server(Path(workdir)) as endpoint,
    ):
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        started = time.perf_counter()
        landed = land_pages(s3, args.records, args.page_size)
        landing_seconds = time.perf_counter() - started
        print(f"landed {args.records:,} records in {args.records // args.page_size:,} pages "
              f"({landed:,} bytes) in {landing_seconds:.1f} s", flush=True)  # fmt: skip
        rows = []
        for output_format in FORMATS:
            prefix = snapshot_prefix(f"bench_{output_format.replace('.', '_')}", "2026-12-02", JOB)
            started = time.perf_counter()
            rollup = roll_up_job(
                s3, BUCKET, JOB, prefix, output_format=output_format,  # type: ignore[arg-type]
                target_bytes=args.target_mb * 1024 * 1024,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            assert rollup.records == args.records, rollup.records
            size = sum(file.bytes for file in rollup.files)
            rows.append({
                "format": output_format, "files": len(rollup.files), "bytes": size,
                "vs_pages": size / landed, "rollup_seconds": round(seconds, 2),
                "records_per_second": round(args.records / seconds),
            })  # fmt: skip
            print(f"{output_format}: {len(rollup.files)} files, {size:,} bytes, {seconds:.1f} s", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "records": args.records, "page_size": args.page_size, "pages": -(-args.records // args.page_size),
        "target_mb": args.target_mb, "landed_bytes": landed, "landing_seconds": round(landing_seconds, 1),
        "peak_rss_mb": round(peak_mb), "python": platform.python_version(), "cpus": os.cpu_count(),
        "formats": rows, "load_average": [load_before, os.getloadavg()[0]],
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Output formats: a {args.records:,}-record snapshot",
        "",
        f"`bench/output_formats.py --records {args.records} --page-size {args.page_size} "
        f"--target-mb {args.target_mb}`: the simulator's records ({result['pages']:,} pages of "
        f"{args.page_size}, {landed:,} bytes of per-page NDJSON) rolled up by the publish step "
        f"against moto's S3 server on 127.0.0.1, {os.cpu_count()} CPUs (load average "
        f"{result['load_average'][0]:.1f} -> {result['load_average'][1]:.1f}: the machine is shared), "
        f"peak RSS of the roll-up process {result['peak_rss_mb']} MB.",
        "",
        "| format | files | bytes | vs per-page NDJSON | roll-up time | records/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['format']} | {row['files']} | {row['bytes']:,} | {row['vs_pages']:.2f} | "
            f"{row['rollup_seconds']:.1f} s | {row['records_per_second']:,} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
