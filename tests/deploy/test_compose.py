"""Static checks of the Docker deployment: docker-compose.yaml and the Dockerfile.

There is no Docker engine on the build machines, so the stack is never started here: the compose
file is validated and rendered with `docker-compose config` (no engine needed) and the rendered
model is checked. Works with Debian's docker-compose 1.29 (`apt-get install -y docker-compose`)
and with Compose v2 installed as `docker-compose`; skipped when the binary is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
    "flower",
)
# Long-running Airflow components: they wait for airflow-init to have migrated the database.
AIRFLOW_DAEMONS = tuple(name for name in AIRFLOW_SERVICES if name != "airflow-init")
EXPECTED_SERVICES = {*AIRFLOW_SERVICES, "postgres", "redis", "moto", "partner-api"}

# Settings every Airflow component must agree on.
SHARED_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW_CONFIG",
    "AIRFLOW_CONN_AWS_DEFAULT",
    "API_POLLER_DEFAULT_URL",
    "PYTHONPATH",
)
MOUNTED_FOLDERS = ("dags", "plugins", "include", "logs", "config")

# Variables the compose file interpolates: removed from the environment so that the defaults
# written in the file are what is checked, whatever the developer's shell or .env holds.
_INTERPOLATED_PREFIXES = ("AIRFLOW", "API_POLLER_", "PARTNER_API_", "COMPOSE_", "PYTHONPATH", "PYTHONHOME")


def _compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed, so docker-compose.yaml was not validated "
            "(Debian/Ubuntu: apt-get update && apt-get install -y docker-compose)"
        )
    return binary


def _compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    command = [
        _compose_binary(),
        "--project-directory",
        str(ROOT),
        "--env-file",
        str(env_file),
        "-f",
        str(COMPOSE_FILE),
        "--profile",
        "flower",
        *args,
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith(_INTERPOLATED_PREFIXES)}
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def services(empty_env_file: Path) -> dict[str, dict[str, Any]]:
    """The services of the model `docker-compose config` renders."""
    result = _compose("config", env_file=empty_env_file)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):  # KEY=VALUE form
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _published_ports(service: dict[str, Any]) -> Iterator[tuple[str | None, str]]:
    """(host IP or None when bound to every interface, port spec) of each published port.

    docker-compose 1.29 renders ports as "[IP:]HOST:CONTAINER[/proto]" strings, Compose v2 as
    mappings with host_ip / published / target.
    """
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            yield port.get("host_ip"), json.dumps(port, sort_keys=True)
            continue
        spec = str(port).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        yield (parts[0] if len(parts) == 3 else None), str(port)


def _mount_targets(service: dict[str, Any]) -> set[str]:
    targets = set()
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            targets.add(volume["target"])
        else:
            targets.add(str(volume).split(":")[1])
    return targets


def test_compose_file_is_valid(empty_env_file: Path) -> None:
    result = _compose("config", "-q", env_file=empty_env_file)
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"
    # Every interpolated variable has a default: nothing is silently replaced by "".
    assert "is not set" not in result.stderr, result.stderr


def test_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = EXPECTED_SERVICES - set(services)
    assert not missing, f"services missing from docker-compose.yaml: {sorted(missing)}"


def test_flower_is_behind_its_profile() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert raw["services"]["flower"].get("profiles") == ["flower"]
    for name, service in raw["services"].items():
        if name != "flower":
            assert not service.get("profiles"), f"{name} should start by default"


def test_airflow_services_share_executor_database_and_broker(services: dict[str, dict[str, Any]]) -> None:
    reference = _environment(services["airflow-apiserver"])
    assert reference["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert reference["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert reference["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert reference["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert reference["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    # include/ first (api_poller); then local_settings/ (deploy/airflow_local_settings.py).
    assert reference["PYTHONPATH"].split(":") == ["/opt/airflow/include", "/opt/airflow/local_settings"]
    for name in AIRFLOW_SERVICES:
        environment = _environment(services[name])
        for key in SHARED_SETTINGS:
            assert environment.get(key) == reference[key], f"{name}: {key} differs from the api-server's"
        assert services[name]["image"] == services["airflow-apiserver"]["image"], name


def test_airflow_urls_point_at_services_of_the_stack(services: dict[str, dict[str, Any]]) -> None:
    environment = _environment(services["airflow-apiserver"])
    hosts = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgres",
        "AIRFLOW__CELERY__RESULT_BACKEND": "postgres",
        "AIRFLOW__CELERY__BROKER_URL": "redis",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "airflow-apiserver",
        "API_POLLER_DEFAULT_URL": "partner-api",
    }
    for key, host in hosts.items():
        assert urlsplit(environment[key]).hostname == host, key
    assert (
        environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    )
    assert urlsplit(environment["API_POLLER_DEFAULT_URL"]).port == 8000

    connection = json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["conn_type"] == "aws"
    assert connection["extra"]["endpoint_url"] == "http://moto:5000"
    assert connection["extra"]["region_name"] == "us-east-1"


def test_airflow_services_mount_the_project_folders(services: dict[str, dict[str, Any]]) -> None:
    expected = {f"/opt/airflow/{folder}" for folder in MOUNTED_FOLDERS}
    for name in AIRFLOW_SERVICES:
        assert expected <= _mount_targets(services[name]), name


def test_every_published_port_binds_localhost(services: dict[str, dict[str, Any]]) -> None:
    published = [
        (name, ip, spec) for name, service in services.items() for ip, spec in _published_ports(service)
    ]
    assert any(name == "airflow-apiserver" and "8080" in spec for name, _, spec in published)
    exposed = [(name, spec) for name, ip, spec in published if ip != "127.0.0.1"]
    assert not exposed, f"ports published beyond 127.0.0.1: {exposed}"


def test_startup_order_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    def conditions(name: str) -> dict[str, str]:
        depends_on = services[name].get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on must carry conditions"
        return {dependency: spec.get("condition", "") for dependency, spec in depends_on.items()}

    for name in AIRFLOW_SERVICES:
        assert conditions(name)["postgres"] == "service_healthy", name
        assert conditions(name)["redis"] == "service_healthy", name
    for name in AIRFLOW_DAEMONS:
        assert conditions(name)["airflow-init"] == "service_completed_successfully", name
    worker = conditions("airflow-worker")
    assert worker["airflow-apiserver"] == "service_healthy"
    assert worker["moto"] == "service_healthy"
    assert worker["partner-api"] == "service_healthy"

    # A service waited for as healthy must define a healthcheck.
    for name in services:
        for dependency, condition in conditions(name).items():
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), dependency


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name != "airflow-init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_partner_api_runs_the_simulator(services: dict[str, dict[str, Any]]) -> None:
    partner_api = services["partner-api"]
    command = partner_api["command"]
    command = command.split() if isinstance(command, str) else [str(part) for part in command]
    assert command[:3] == ["python", "-m", "api_poller_dev.simulator"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"
    assert "http://localhost:8000/health" in partner_api["healthcheck"]["test"]
    assert partner_api["image"] == services["airflow-apiserver"]["image"]
    assert services["moto"]["image"] == "motoserver/moto:5.2.5"


def test_dockerfile_base_image_matches_the_locked_airflow() -> None:
    """The lock pins apache-airflow itself: the base image must be the same Airflow."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    lock = (ROOT / "requirements.txt").read_text()
    tag = re.search(r"^ARG AIRFLOW_IMAGE_TAG=(\S+)$", dockerfile, re.MULTILINE)
    pinned = re.search(r"^apache-airflow==(\S+)", lock, re.MULTILINE)
    assert tag and pinned
    assert tag.group(1).split("-")[0] == pinned.group(1)
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_IMAGE_TAG\}$", dockerfile, re.MULTILINE)
    assert "pip install --no-cache-dir --require-hashes -r" in dockerfile
