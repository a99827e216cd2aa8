"""A full job against a partner API with every fault on at once: nothing lost, nothing doubled.

Run alone with ``scripts/test -m faults``. The figures (faults injected per kind, retries made,
records lost/duplicated) are written to test-artifacts/fault-figures.json.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from api_poller_dev.simulator import SimulatorConfig, record_id, run_in_thread

from api_poller.adapters.progress import load_job_progress, load_page_statuses
from api_poller.core.keys import raw_payload_key
from tests.helpers import DEAD_LETTER_QUEUE, QUEUE, RAW_BUCKET, ROOT, run_job, task_states

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

TOTAL, PAGE, POISONED_PAGE = 1060, 25, 3

FAULTY = SimulatorConfig(
    total_records=TOTAL,  # not a multiple of the page size
    page_size=PAGE,
    latency_ms=(0, 100),
    error_rate=0.1,
    status_5xx_codes=(500, 502, 503, 504),
    rate_limit_rate=0.08,
    retry_after="1",
    hang_rate=0.05,
    hang_seconds=5,  # longer than the client's timeout below
    drop_rate=0.08,
    truncate_rate=0.08,
    non_contiguous_ids=True,
    record_bytes=20_000,  # 20 KB records
    poison_pages=frozenset({POISONED_PAGE}),
    seed=5,
)


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats") as response:
        return json.loads(response.read())


def test_every_fault_at_once_loses_nothing_and_accounts_for_the_poison_page(
    airflow_db, aws, monkeypatch, capfd
):
    monkeypatch.setenv("API_POLLER_HTTP_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("API_POLLER_ON_INCOMPLETE", "fail")
    with run_in_thread(FAULTY) as base_url:
        dag_run = run_job({"url": f"{base_url}/payload", "fetch_tasks": 2, "concurrency": 12})
        injected = stats(base_url)

    served_ids = [record_id(FAULTY, offset) for offset in range(TOTAL)]
    poisoned = set(served_ids[POISONED_PAGE * PAGE : (POISONED_PAGE + 1) * PAGE])
    written = Counter(record["id"] for record in aws.processed_records())
    duplicated = sum(count - 1 for count in written.values() if count > 1)
    lost = [i for i in served_ids if i not in poisoned and i not in written]

    assert task_states(dag_run)["report"] == "failed"  # incomplete: visibly not a success
    assert lost == [] and duplicated == 0
    assert set(written) == set(served_ids) - poisoned

    progress = load_job_progress("api_poller", dag_run.run_id)
    dead_letters = aws.queue_depth(DEAD_LETTER_QUEUE)
    assert progress["FailedToComplete"] == dead_letters == 1
    assert progress["SuccessfullyCompleted"] == progress["Total"] - 1 == 42
    assert aws.queue_depth(QUEUE) == 0
    statuses = load_page_statuses("api_poller", dag_run.run_id)
    assert "has no 'id'" in statuses[f"page-{POISONED_PAGE:06d}"]["reason"]
    # The poison page's raw object stays for inspection and redrive; the others are gone.
    assert [key for key in aws.keys(RAW_BUCKET) if "/raw/" in key] == [
        raw_payload_key(dag_run.run_id, f"page-{POISONED_PAGE:06d}")
    ]

    retries = sum(int(record.get("attempts") or 1) - 1 for record in statuses.values())
    faults = injected["faults_injected"]
    assert retries > 0 and sum(faults.values()) > 0
    figures = {
        "faults_injected": faults,
        "requests_served": injected["requests"],
        "retries_made_by_pages": retries,
        "records_served": TOTAL,
        "records_lost": len(lost),
        "records_duplicated": duplicated,
        "failed_to_complete": progress["FailedToComplete"],
        "dead_letters": dead_letters,
    }
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    Path(artifacts / "fault-figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
