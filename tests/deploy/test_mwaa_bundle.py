"""The Amazon MWAA bundle (scripts/build-mwaa-bundle) works in an MWAA-like layout.

The bundle is built, unpacked the way MWAA lays it out (``$AIRFLOW_HOME/dags`` synced from S3,
``plugins.zip`` unzipped into ``$AIRFLOW_HOME/plugins``) and checked in a separate Python process
that sees nothing of the repository: PYTHONPATH holds only those two folders, the working
directory is elsewhere, AIRFLOW_HOME is thrown away afterwards, and startup.sh is sourced first,
as MWAA does.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from api_poller_dev.mwaa_bundle import (
    CONSTRAINT_URL,
    EXTRA_REQUIREMENTS,
    MWAA_PROVIDED_MODULES,
    PACKAGE,
    parse_settings,
    startup_script_text,
    third_party_imports,
)

from api_poller.settings import ENV_PREFIX, PollerSettings

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-mwaa-bundle"

# Runs inside the MWAA-like layout; prints one JSON document.
CHECK_SCRIPT = r"""
import importlib, inspect, json, os, pkgutil, sys, traceback
from pathlib import Path

dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
plugins = Path(os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"])
report = {"sys_path": sys.path}

from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import list_py_file_paths

found = list_py_file_paths(dags, safe_mode=False)
report["dag_files"] = sorted(str(Path(path).relative_to(dags)) for path in found)
bag = DagBag(dag_folder=str(dags))
report["import_errors"] = {str(k): str(v) for k, v in bag.import_errors.items()}
report["dag_ids"] = sorted(bag.dag_ids)
report["dag_tasks"] = sorted(bag.dags["api_poller"].task_ids) if "api_poller" in bag.dags else []

import api_poller
report["api_poller_file"] = api_poller.__file__

from airflow.plugins_manager import AirflowPlugin
report["plugin_modules"], report["plugin_import_errors"], report["plugin_classes"] = [], {}, []
for module in pkgutil.iter_modules([str(plugins)]):
    report["plugin_modules"].append(module.name)
    try:
        imported = importlib.import_module(module.name)
    except Exception:
        report["plugin_import_errors"][module.name] = traceback.format_exc()
        continue
    report["plugin_classes"] += [
        value.name for value in vars(imported).values()
        if inspect.isclass(value) and issubclass(value, AirflowPlugin) and value is not AirflowPlugin
        and value.__module__ == module.name
    ]

from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
report["loaded_plugins"] = sorted(p.name for p in plugins_manager._get_plugins()[0])
report["manager_import_errors"] = {str(k): str(v) for k, v in plugins_manager.get_import_errors().items()}
apps, _ = plugins_manager.get_fastapi_plugins()
report["fastapi_apps"] = [app.get("url_prefix") for app in apps]
report["settings"] = {k: v for k, v in os.environ.items() if k.startswith("API_POLLER_")}
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "mwaa"
    result = subprocess.run(
        [str(BUILD_SCRIPT), "--out", str(out), "--setting", "RAW_BUCKET=acme-api-poller-raw"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "plugins.zip" in result.stdout
    return out


@pytest.fixture(scope="module")
def mwaa_report(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Unpack the bundle like MWAA does and inspect it from a process that sees nothing else."""
    home = tmp_path_factory.mktemp("mwaa-home")  # stands for /usr/local/airflow
    subprocess.run(["cp", "-a", str(bundle / "dags"), str(home / "dags")], check=True)
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        archive.extractall(home / "plugins")
    (home / "plugins").mkdir(exist_ok=True)
    workdir = tmp_path_factory.mktemp("cwd")
    (workdir / "check.py").write_text(CHECK_SCRIPT)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PYTHONPATH": os.pathsep.join([str(home / "dags"), str(home / "plugins")]),
        "PYTHONNOUSERSITE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = f'source {bundle / "startup.sh"} && exec "{sys.executable}" check.py'
    result = subprocess.run(
        ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-5000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))
    report["home"] = str(home)
    return report


def test_bundle_has_the_four_mwaa_artifacts(bundle: Path) -> None:
    assert sorted(path.name for path in bundle.iterdir()) == [
        "dags",
        "plugins.zip",
        "requirements.txt",
        "startup.sh",
    ]


def test_dags_folder_holds_the_dags_and_the_whole_product_package(bundle: Path) -> None:
    dags = bundle / "dags"
    for dag_file in (ROOT / "dags").glob("*.py"):
        assert (dags / dag_file.name).read_bytes() == dag_file.read_bytes()
    shipped = {path.relative_to(dags / PACKAGE) for path in (dags / PACKAGE).rglob("*") if path.is_file()}
    source = {
        path.relative_to(ROOT / "include" / PACKAGE)
        for path in (ROOT / "include" / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    # The whole product package, nothing else: the development tools live outside it.
    assert shipped == source
    assert not any("api_poller_dev" in str(path) for path in dags.rglob("*"))
    assert not list(dags.rglob("__pycache__")) and not list(dags.rglob("*.pyc"))
    ignored = [
        line for line in (dags / ".airflowignore").read_text().splitlines() if not line.startswith("#")
    ]
    assert f"{PACKAGE}/" in ignored


def test_plugins_zip_holds_the_plugins_folder_at_its_root(bundle: Path) -> None:
    expected = sorted(path.name for path in (ROOT / "plugins").glob("*.py"))
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        names = archive.namelist()
    assert sorted(name for name in names if name.endswith(".py")) == expected
    assert all("/" not in name or not name.startswith("plugins/") for name in names)
    assert not any("__pycache__" in name for name in names)


def test_building_twice_gives_identical_plugins_zip(bundle: Path, tmp_path: Path) -> None:
    subprocess.run([str(BUILD_SCRIPT), "--out", str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / "plugins.zip").read_bytes() == (bundle / "plugins.zip").read_bytes()


def test_requirements_start_with_the_mwaa_constraint_line(bundle: Path) -> None:
    lines = (bundle / "requirements.txt").read_text().splitlines()
    assert lines[0] == f'--constraint "{CONSTRAINT_URL}"'
    assert CONSTRAINT_URL.endswith("/constraints-3.3.1/constraints-3.12.txt")
    packages = [line for line in lines[1:] if line.strip() and not line.startswith("#")]
    assert packages == list(EXTRA_REQUIREMENTS)


def test_the_bundle_imports_only_what_mwaa_ships(bundle: Path) -> None:
    """Every third-party import ships with MWAA or is in requirements.txt (EXTRA_REQUIREMENTS)."""
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        plugin_modules = {Path(name).stem for name in archive.namelist() if name.endswith(".py")}
    found = third_party_imports([bundle / "dags", ROOT / "plugins"], local={PACKAGE, *plugin_modules})
    unexpected = {
        module: sorted(files)
        for module, files in found.items()
        if module not in MWAA_PROVIDED_MODULES and module not in EXTRA_REQUIREMENTS
    }
    assert not unexpected, f"imports MWAA does not ship (add them to EXTRA_REQUIREMENTS): {unexpected}"


def test_startup_script_is_executable_valid_bash_and_sets_the_settings(bundle: Path) -> None:
    script = bundle / "startup.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(script)], check=True)
    exported = subprocess.run(
        ["bash", "-c", f"source {script} && env"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    ).stdout
    values = dict(line.split("=", 1) for line in exported.splitlines() if line.startswith(ENV_PREFIX))
    assert values[f"{ENV_PREFIX}CREATE_RESOURCES"] == "false"
    assert values[f"{ENV_PREFIX}RAW_BUCKET"] == "acme-api-poller-raw"  # from --setting
    assert values[f"{ENV_PREFIX}PROCESSED_BUCKET"].startswith("<")  # placeholder
    known = {ENV_PREFIX + field.upper() for field in PollerSettings.__dataclass_fields__}
    assert set(values) <= known


def test_settings_must_be_known_and_valid() -> None:
    assert parse_settings(["API_POLLER_QUEUE_NAME=q", "raw_bucket=b"]) == {
        "queue_name": "q",
        "raw_bucket": "b",
    }
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_settings(["NO_SUCH_SETTING=1"])
    with pytest.raises(ValueError, match="not a valid int"):
        parse_settings(["HTTP_ATTEMPTS=many"])
    assert "export API_POLLER_SCHEDULE=@daily" in startup_script_text({"schedule": "@daily"})


def test_dags_folder_parses_in_the_mwaa_layout(mwaa_report: dict) -> None:
    assert mwaa_report["import_errors"] == {}
    assert "api_poller" in mwaa_report["dag_ids"]
    assert mwaa_report["dag_tasks"], "the api_poller DAG has no tasks"
    # The library is imported from the dags folder (not from the repository) ...
    assert mwaa_report["api_poller_file"] == str(Path(mwaa_report["home"]) / "dags" / PACKAGE / "__init__.py")
    repository_folders = {str(ROOT / name) for name in ("", "include", "dags", "plugins", "tests")}
    assert not repository_folders & set(mwaa_report["sys_path"]), mwaa_report["sys_path"]
    # ... and .airflowignore keeps Airflow from parsing it for DAGs.
    assert mwaa_report["dag_files"] == sorted(path.name for path in (ROOT / "dags").glob("*.py"))


def test_plugins_import_and_load_in_the_mwaa_layout(mwaa_report: dict) -> None:
    expected = sorted(path.stem for path in (ROOT / "plugins").glob("*.py"))
    assert sorted(mwaa_report["plugin_modules"]) == expected
    assert mwaa_report["plugin_import_errors"] == {}
    assert mwaa_report["manager_import_errors"] == {}
    for plugin in mwaa_report["plugin_classes"]:
        assert plugin in mwaa_report["loaded_plugins"]
