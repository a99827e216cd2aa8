"""The DAG on a distributed executor: CeleryExecutor, Redis as broker, PostgreSQL as metadata DB and
result backend, two Celery worker processes.

Both workers run on this machine, so each reports itself as ``<hostname>-worker<N>`` (Airflow's
``[core] hostname_callable``, see ``api_poller_dev.local_airflow.worker_hostname``); the task instances'
``hostname`` then shows which worker ran them. The numbers (tasks per worker, wall time) are printed
(visible with ``-s``) and written to ``test-artifacts/celery-executor.json``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from api_poller_dev.local_airflow import REDIS_URL, postgres_reachable, redis_reachable
from api_poller_dev.simulator import record_text

from tests.helpers import real_airflow_stack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "test-artifacts" / "celery-executor.json"
TOTAL_RECORDS = 3000
SEED = 5
FETCH_TASKS = 4
WORKERS = 2

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"),
    pytest.mark.skipif(
        not redis_reachable(), reason=f"Redis (the Celery broker) is not reachable at {REDIS_URL}"
    ),
]


@pytest.fixture(scope="module")
def celery_stack():
    """moto, the simulator and Airflow with the CeleryExecutor and two workers, all on 127.0.0.1."""
    simulator_args = [
        f"--total-records={TOTAL_RECORDS}",
        "--latency-ms=0-200",
        "--error-rate=0.1",
        f"--seed={SEED}",
    ]
    with real_airflow_stack(
        "celery",
        simulator_args,
        {"API_POLLER_PROCESS_TIMEOUT_SECONDS": "600"},
        executor="CeleryExecutor",
        celery_workers=WORKERS,
        worker_concurrency=2,
    ) as (airflow, url, aws):
        airflow.wait_for_celery_workers(timeout=120)
        yield airflow, url, aws


def test_a_job_runs_to_completion_across_two_celery_workers(celery_stack):
    airflow, url, aws = celery_stack
    started = time.monotonic()
    run_id = airflow.trigger("api_poller", {"url": url, "fetch_tasks": FETCH_TASKS})
    state = airflow.wait_for_run("api_poller", run_id, timeout=420)
    wall_seconds = time.monotonic() - started
    instances = airflow.task_instances("api_poller", run_id)
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in instances}
    assert state == "success", states
    fetch_indexes = sorted(index for task, index in states if task == "fetch_pages")
    assert fetch_indexes == list(range(FETCH_TASKS)), states

    # Every record the simulator served is in the processed output, exactly once and unchanged.
    records = aws.processed_records()
    ids = Counter(record["id"] for record in records)
    assert sorted(ids) == list(range(TOTAL_RECORDS))
    assert max(ids.values()) == 1, [record_id for record_id, seen in ids.items() if seen > 1][:10]
    assert all(record["payload"] == record_text(SEED, record["id"]) for record in records)

    # The task instances ran on more than one of the workers (and only on the workers).
    ran = [ti for ti in instances if ti["state"] == "success"]
    per_worker = Counter(ti["hostname"] for ti in ran)
    worker_names = {f"-worker{index}" for index in range(WORKERS)}
    assert all(any(host.endswith(name) for name in worker_names) for host in per_worker), per_worker
    assert len(per_worker) > 1, f"every task ran on one worker: {per_worker}"

    run = airflow.dag_run("api_poller", run_id)
    numbers = {
        "executor": "CeleryExecutor",
        "workers": WORKERS,
        "worker_concurrency": 2,
        "records": TOTAL_RECORDS,
        "fetch_tasks": FETCH_TASKS,
        "task_instances": len(ran),
        "tasks_per_worker": dict(sorted(per_worker.items())),
        "tasks_by_worker": {
            host: sorted(
                ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
                for ti in ran
                if ti["hostname"] == host
            )
            for host in sorted(per_worker)
        },
        "wall_seconds_trigger_to_done": round(wall_seconds, 1),
        "run_start_date": run.get("start_date"),
        "run_end_date": run.get("end_date"),
    }
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(numbers, indent=2) + "\n")
    print(f"\nCelery run: {json.dumps(numbers, indent=2)}")
