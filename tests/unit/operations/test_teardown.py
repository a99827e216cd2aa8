"""scripts/teardown stops only this checkout's processes and removes this checkout's state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_teardown_stops_only_processes_of_this_checkout_and_removes_its_state(tmp_path: Path) -> None:
    logs = tmp_path / ".local" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "test-artifacts").mkdir()
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    with open(logs / "moto.log", "wb") as log:
        ours = subprocess.Popen(sleeper, stdout=log, stderr=subprocess.STDOUT)
    theirs = subprocess.Popen(sleeper, stdout=subprocess.DEVNULL, cwd=tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "teardown"), "--root", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert ours.wait(timeout=15) is not None
        assert theirs.poll() is None  # same command, but nothing ties it to this checkout
        assert not (tmp_path / ".local").exists() and not (tmp_path / "test-artifacts").exists()
        assert f"stopped {ours.pid}" in result.stdout
    finally:
        for process in (ours, theirs):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
