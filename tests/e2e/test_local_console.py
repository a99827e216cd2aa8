"""What ``local-sync`` prints when its stdout is not a terminal: plain lines or, with ``--json``,
JSON lines; a summary that says what was written, what failed and why, where the output and the
logs are; Airflow's own logs in the log file, not on stdout; the exit code says whether the job
was complete.

Each case runs the command (``python -m api_poller_dev.local_run``, what ``scripts/local-sync``
executes) in its own process with stdout a pipe, as a CI job would, on a small workload.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SMALL = ["--total-records=300", "--page-size=50", "--latency-ms=0", "--error-rate=0.1"]


def local_sync(state: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), str(ROOT / "devtools")])
    command = [sys.executable, "-m", "api_poller_dev.local_run", *SMALL, "--state-dir", str(state), *flags]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=540)


@pytest.mark.e2e
def test_a_pipe_gets_plain_progress_lines_and_a_summary(tmp_path: Path):
    done = local_sync(tmp_path / "state")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "\x1b[" not in done.stdout  # no control codes for a pipe
    assert re.search(r"^progress: 6/6 pages done .* failures 0$", done.stdout, re.M)
    assert re.search(r"^job \S+ \(api_poller\): complete in ", done.stdout, re.M)
    assert "written: 300 records from 6 of 6 pages" in done.stdout
    [s3, copy] = re.findall(r"^output: (s3://\S+) \(local copy: (.+)\)$", done.stdout, re.M)[0]
    assert s3.startswith("s3://") and len(list(Path(copy).iterdir())) == 6
    [log] = re.findall(r"^logs: less (.+)$", done.stdout, re.M)
    assert f"Airflow's logs: {log}" in done.stdout  # said at the start too
    log_text = Path(log).read_text()
    assert "Filling up the DagBag" in log_text and "[airflow." in log_text  # Airflow's own log lines
    assert "[airflow." not in done.stdout + done.stderr  # and nowhere else


@pytest.mark.e2e
def test_json_prints_one_object_per_line_ending_with_the_summary(tmp_path: Path):
    done = local_sync(tmp_path / "state", "--json")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"info", "progress", "summary"} <= {event["event"] for event in events}
    summary = events[-1]
    assert summary["event"] == "summary" and summary["complete"] is True
    assert summary["records"] == 300 and summary["pages_written"] == 6 and summary["failures"] == []
    assert summary["s3_location"].startswith("s3://") and Path(summary["log_path"]).is_file()


@pytest.mark.e2e
def test_a_job_with_a_failed_page_exits_non_zero_and_says_why(tmp_path: Path):
    done = local_sync(tmp_path / "state", "--poison-pages=1")

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^job \S+ \(api_poller\): NOT complete", done.stdout, re.M)
    assert "written: 250 records from 5 of 6 pages" in done.stdout
    assert re.search(r"^failed pages: 1$", done.stdout, re.M)
    [reason] = re.findall(r"^  1 x (.+) \(pages \S+\)$", done.stdout, re.M)
    assert "id" in reason  # the poisoned records lack their id
