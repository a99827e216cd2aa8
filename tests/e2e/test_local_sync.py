"""``local-sync --source FILE``: a source file runs end to end on the embedded stack in one command.

The e2e case runs the command (``python -m api_poller_dev.local_run``, what ``scripts/local-sync``
executes) in its own process, as a user would: moto, Airflow on SQLite, the DAG factory's DAG for
the file, ``dag.test``, against the local simulator in the source's auth kind. The other cases
check what stops a run before anything starts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from api_poller_dev import local_run

from tests.helpers import ROOT

TOTAL = 45
CURSOR_SOURCE = """\
name: local_cursor
connection_id: local_cursor_api
path: /cursor/items
records: items
primary_key: id
paginator: {type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, page_size: 10}
auth: {type: api_key_header, header: X-Partner-Key}
"""


def source_file(folder: Path, text: str = CURSOR_SOURCE) -> Path:
    path = folder / "local_cursor.yaml"
    path.write_text(text)
    return path


@pytest.mark.e2e
def test_a_source_file_runs_end_to_end_against_the_simulator(tmp_path: Path):
    state = tmp_path / "state"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), str(ROOT / "devtools")])
    command = [
        sys.executable, "-m", "api_poller_dev.local_run", "--source", str(source_file(tmp_path)),
        "--simulator", f"--total-records={TOTAL}", "--latency-ms=0", "--error-rate=0",
        "--state-dir", str(state),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [output] = re.findall(r"^output: s3://\S+ \(local copy: (.+)\)$", done.stdout, re.M)
    records = [
        json.loads(line)
        for file in sorted(Path(output).rglob("*"))
        if file.is_file()
        for line in file.read_text().splitlines()
    ]
    assert sorted(record["id"] for record in records) == list(range(TOTAL))  # every record, once
    assert "triggering api_poller__local_cursor" in done.stdout
    pages = -(-TOTAL // 10)
    assert f"written: {TOTAL} records from {pages} of {pages} pages" in done.stdout


def test_without_the_connection_in_the_environment_nothing_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_LOCAL_CURSOR_API", raising=False)
    state = tmp_path / "state"
    code = local_run.main(["--source", str(source_file(tmp_path)), "--state-dir", str(state)])
    assert code == 2
    error = capsys.readouterr().err
    assert "set AIRFLOW_CONN_LOCAL_CURSOR_API in the environment" in error
    assert "as JSON" in error and "as a URI" in error and "--simulator" in error
    assert not (state / "airflow").exists()  # nothing was started


def test_a_broken_source_file_is_named_with_its_field(tmp_path, capsys):
    broken = source_file(tmp_path, CURSOR_SOURCE.replace("type: cursor", "type: scroll"))
    code = local_run.main(["--source", str(broken), "--simulator", "--state-dir", str(tmp_path / "s")])
    assert code == 2
    error = capsys.readouterr().err
    assert "local_cursor.yaml" in error and "paginator" in error and "scroll" in error
