"""The dlt peer: dlt's ``rest_api`` source over the partner API, into dlt's filesystem destination.

Runs in its own venv (``bench/.venv-dlt``, from ``bench/requirements-dlt.txt``). The destination is
local disk (``file://``, JSON lines), not S3. dlt's offset paginator reads the pages one after
another (``startAt``/``count``, stopping at ``totalRecords``); its HTTP client retries 5xx, 429 and
connection errors with exponential backoff (attempts set to 6 here, like the product).
Prints one JSON line: wall time of ``pipeline.run`` (extract + normalize + load), rows, steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True, help="the API's base URL (the resource is /payload)")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--attempts", type=int, default=6)
    parser.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ["RUNTIME__REQUEST_MAX_ATTEMPTS"] = str(args.attempts)
    os.environ["RUNTIME__REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["RUNTIME__REQUEST_TIMEOUT"] = "30"
    os.environ["DLT_DATA_DIR"] = str(args.workdir / "data")

    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": args.base_url,
                "paginator": {
                    "type": "offset",
                    "limit": args.page_size,
                    "offset_param": "startAt",
                    "limit_param": "count",
                    "total_path": "totalRecords",
                },
            },
            "resources": [{"name": "payload", "endpoint": {"path": "payload", "data_selector": "payload"}}],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="api_poller_bench",
        pipelines_dir=str(args.workdir / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(args.workdir / "lake").as_uri()),
        dataset_name="partner",
    )
    started = time.monotonic()
    pipeline.run(source, loader_file_format="jsonl")
    wall = time.monotonic() - started

    trace = pipeline.last_trace
    steps = {
        step.step: round((step.finished_at - step.started_at).total_seconds(), 3)
        for step in trace.steps
        if step.finished_at
    }
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("payload", 0)
    print(
        json.dumps(
            {
                "rows": rows,
                "wall_s": round(wall, 3),
                "steps_s": steps,
                "dlt_version": dlt.__version__,
                "destination": "filesystem (local disk, jsonl)",
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
