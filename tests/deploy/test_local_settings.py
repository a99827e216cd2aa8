"""deploy/airflow_local_settings.py: what an Airflow component imports when it starts.

Each check runs a fresh interpreter with the file in ``$AIRFLOW_HOME/config`` (where Airflow
looks for it), as a component would load it: by importing airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL_SETTINGS = ROOT / "deploy" / "airflow_local_settings.py"

# Prints which preloadable libraries are imported after airflow started, and what the
# settings module added to airflow.settings.
PROBE = """
import json, sys
import airflow, airflow.settings as settings
print(json.dumps({
    "loaded": sorted(m for m in ("boto3", "aiohttp", "s3transfer.manager") if m in sys.modules),
    "local_settings": "airflow_local_settings" in sys.modules,
    "leaked": sorted(n for n in ("importlib", "_preload", "DEFAULT_PRELOAD_MODULES") if hasattr(settings, n)),
}))
"""


def _start_airflow(tmp_path: Path, **env: str) -> dict:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    shutil.copyfile(LOCAL_SETTINGS, home / "config" / "airflow_local_settings.py")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_component_preloads_the_libraries_tasks_import(tmp_path: Path) -> None:
    started = _start_airflow(tmp_path)
    assert started["local_settings"]
    assert started["loaded"] == ["aiohttp", "boto3", "s3transfer.manager"]
    # Airflow copies a local settings module's public names into airflow.settings: none leak.
    assert started["leaked"] == []


def test_an_empty_preload_setting_preloads_nothing(tmp_path: Path) -> None:
    started = _start_airflow(tmp_path, AIRFLOW__API_POLLER__PRELOAD_MODULES="")
    assert started["local_settings"]
    assert started["loaded"] == []


def test_a_missing_library_is_skipped_not_fatal(tmp_path: Path) -> None:
    started = _start_airflow(tmp_path, AIRFLOW__API_POLLER__PRELOAD_MODULES="no_such_module_x,aiohttp")
    assert started["loaded"] == ["aiohttp"]
