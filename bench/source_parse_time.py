"""How long Airflow takes to parse the DAG folder with N source files, against none.

    .venv/bin/python bench/source_parse_time.py            # 50 sources, 3 rounds each
    .venv/bin/python bench/source_parse_time.py --sources 200 --rounds 5

Each round runs a fresh Python process that builds a ``DagBag`` of ``dags/`` (what a
dag-processor does for each file) with ``API_POLLER_SOURCES_FOLDER`` pointing at a scratch folder:
an empty one, then one holding N generated sources (a mix of the four paginators, incremental
ones, overridable parameters and schedules). It prints the DagBag fill time (Airflow's own
``collect_dags`` timing, the sum over the DAG files) and the time of each factory file, per round
and as the median. No network and no AWS is touched: the factory only reads the files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGINATORS = [
    {"type": "offset", "page_size": 100, "total_path": "meta.total"},
    {"type": "page_number", "page_size": 50, "total_pages_path": "total_pages"},
    {"type": "cursor", "cursor_path": "next_cursor", "page_size": 100},
    {"type": "next_url", "link_header": True},
]
AUTHS = [{"type": "bearer"}, {"type": "basic"}, {"type": "api_key_header"}, {"type": "api_key_query"}]

MEASURE = """
import json, time
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
elapsed = time.perf_counter() - started
files = {{stat.file: stat.duration.total_seconds() for stat in bag.dagbag_stats}}
errors = len(bag.import_errors)
print(json.dumps({{"fill": elapsed, "dags": len(bag.dags), "errors": errors, "files": files}}))
"""


def write_sources(folder: Path, count: int) -> None:
    for index in range(count):
        source = {
            "name": f"source_{index:03d}",
            "description": f"Generated source {index}",
            "connection_id": f"partner_{index % 7}",
            "path": f"/v1/items_{index}",
            "params": {"status": "all"},
            "records": "data.items",
            "primary_key": "id",
            "paginator": PAGINATORS[index % len(PAGINATORS)],
            "auth": AUTHS[index % len(AUTHS)],
            "schedule": "@daily" if index % 2 else None,
            "overridable_params": ["status"],
        }
        if index % 3 == 0:
            source["incremental"] = {"cursor_field": "updated_at", "param": "updated_since"}
        (folder / f"source_{index:03d}.yaml").write_text(yaml.safe_dump(source))


def measure(folder: Path, airflow_home: Path) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "devtools")]),
        "API_POLLER_SOURCES_FOLDER": str(folder),
    }
    code = MEASURE.format(dags=str(ROOT / "dags"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="source-parse-") as scratch:
        empty, full, home = Path(scratch, "empty"), Path(scratch, "full"), Path(scratch, "airflow")
        for folder in (empty, full, home):
            folder.mkdir()
        write_sources(full, args.sources)
        for label, folder in (("no sources", empty), (f"{args.sources} sources", full)):
            rounds = [measure(folder, home) for _ in range(args.rounds)]
            fills = [round(r["fill"], 3) for r in rounds]
            factory = [
                round(sum(t for f, t in r["files"].items() if "api_poller_source" in f), 3) for r in rounds
            ]
            print(
                f"{label:>12}: DagBag fill {statistics.median(fills):.3f} s (rounds {fills}); "
                f"factory files {statistics.median(factory):.3f} s (rounds {factory}); "
                f"{rounds[0]['dags']} DAGs, {rounds[0]['errors']} import errors"
            )


if __name__ == "__main__":
    main()
