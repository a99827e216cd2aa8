"""Build the Amazon MWAA deployment bundle: ``dags/``, ``plugins.zip``, ``requirements.txt``, ``startup.sh``.

MWAA puts only its dags folder and its plugins folder on the Python path, so the bundle ships the
``api_poller`` library inside the dags folder (listed in ``.airflowignore``: it holds no DAG) and
the imports stay ``import api_poller...`` as everywhere else. Modules that only serve local runs
and tests (the partner-API simulator, the embedded local stack, this builder) are left out.

    scripts/build-mwaa-bundle [--out dist/mwaa] [--setting RAW_BUCKET=my-raw-bucket ...]

Only the standard library is used here, so any Python 3.11+ can build the bundle.
"""

from __future__ import annotations

import argparse
import ast
import shlex
import shutil
import sys
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from api_poller.settings import ENV_PREFIX, PollerSettings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "api_poller"

# The newest MWAA image (see docs/deployment.md for the other supported versions).
MWAA_AIRFLOW_VERSION = "3.3.1"
MWAA_PYTHON_VERSION = "3.12"


def constraint_url(
    airflow_version: str = MWAA_AIRFLOW_VERSION, python_version: str = MWAA_PYTHON_VERSION
) -> str:
    """Airflow's constraints file for an Airflow and Python version (what MWAA installs against)."""
    return (
        "https://raw.githubusercontent.com/apache/airflow/"
        f"constraints-{airflow_version}/constraints-{python_version}.txt"
    )


CONSTRAINT_URL = constraint_url()
# Packages to install on top of MWAA's image, pinned by the constraint line (Airflow's constraints
# pin pyarrow): pyarrow, for Parquet snapshots (api_poller.output). Everything else the DAG, the
# library and the plugin import ships with MWAA already (MWAA_PROVIDED_MODULES).
EXTRA_REQUIREMENTS: tuple[str, ...] = ("pyarrow",)
# Third-party modules the bundle may import, and the MWAA-installed distribution providing each.
MWAA_PROVIDED_MODULES: Mapping[str, str] = {
    "airflow": "apache-airflow (+ apache-airflow-providers-amazon, -http)",
    "aiohttp": "apache-airflow-providers-http dependency",
    "boto3": "apache-airflow-providers-amazon dependency",
    "botocore": "apache-airflow-providers-amazon dependency",
    "fastapi": "apache-airflow dependency (api-server)",
    "starlette": "apache-airflow dependency (api-server)",
    "pydantic": "apache-airflow dependency",
    "sqlalchemy": "apache-airflow dependency",
    "yaml": "apache-airflow dependency (PyYAML; source files)",
    "pendulum": "apache-airflow dependency",
    "msgspec": "apache-airflow dependency (core and task SDK require msgspec>=0.19)",
}

# Settings written to startup.sh with a placeholder: they name the deployment's own resources.
RESOURCE_SETTINGS = ("raw_bucket", "processed_bucket", "queue_name", "dead_letter_queue_name")
# Settings written to startup.sh with their value (the rest are listed, commented, with defaults).
EXPORTED_SETTINGS = ("aws_conn_id", *RESOURCE_SETTINGS, "create_resources")
MWAA_SETTING_DEFAULTS = {"create_resources": "false"}

_SKIPPED_NAMES = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
# Fixed timestamp in plugins.zip: an unchanged plugins folder gives a byte-identical zip (and so no
# needless new S3 object version, which would make MWAA update the environment).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    root: Path

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    @property
    def plugins_zip(self) -> Path:
        return self.root / "plugins.zip"

    @property
    def requirements(self) -> Path:
        return self.root / "requirements.txt"

    @property
    def startup_script(self) -> Path:
        return self.root / "startup.sh"

    @property
    def entries(self) -> tuple[Path, ...]:
        return self.dags, self.plugins_zip, self.requirements, self.startup_script


def _shipped_files(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` (sorted), without hidden files or folders, caches and compiled files."""
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") or part in _SKIPPED_NAMES for part in parts):
            continue
        if path.suffix in _SKIPPED_SUFFIXES:
            continue
        if path.is_file():
            yield path


def _copy_tree(source: Path, target: Path) -> None:
    for path in _shipped_files(source):
        relative = path.relative_to(source)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)


def write_dags_folder(project: Path, dags: Path) -> None:
    """The DAG files, the library package beside them, and an .airflowignore naming the library."""
    _copy_tree(project / "dags", dags)
    _copy_tree(project / "include" / PACKAGE, dags / PACKAGE)
    own_ignore = project / "dags" / ".airflowignore"
    (dags / ".airflowignore").write_text(
        "# Not DAG files: the api_poller library the DAG imports, shipped in the dags folder so that\n"
        "# MWAA can import it (only the dags and plugins folders are on its Python path).\n"
        f"{PACKAGE}/\n" + (own_ignore.read_text() if own_ignore.is_file() else "")
    )


def write_plugins_zip(project: Path, target: Path) -> list[str]:
    """Zip the contents of ``plugins/`` (at the zip's root, as MWAA expects); returns the names."""
    folder = project / "plugins"
    names = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _shipped_files(folder) if folder.is_dir() else ():
            relative = path.relative_to(folder).as_posix()
            if relative.lower().startswith("readme"):
                continue
            info = zipfile.ZipInfo(relative, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
            names.append(relative)
    return names


def requirements_text(
    airflow_version: str = MWAA_AIRFLOW_VERSION,
    python_version: str = MWAA_PYTHON_VERSION,
) -> str:
    lines = [
        f'--constraint "{constraint_url(airflow_version, python_version)}"',
        f"# Amazon MWAA {airflow_version} (Python {python_version}) already ships every package",
        "# the api_poller DAG and plugin import (Airflow, the Amazon and HTTP providers and their",
        "# dependencies) but pyarrow (Parquet snapshots), installed at the constraints' version.",
        *EXTRA_REQUIREMENTS,
    ]
    return "\n".join(lines) + "\n"


def startup_script_text(overrides: Mapping[str, str] | None = None) -> str:
    """MWAA's startup script: the API_POLLER_* settings of the deployment, as environment variables."""
    overrides = dict(overrides or {})
    defaults = PollerSettings()
    lines = [
        "#!/usr/bin/env bash",
        "# Amazon MWAA startup script of airflow-api-poller (built by scripts/build-mwaa-bundle).",
        "# MWAA runs it on every component (scheduler, workers, web server) before Airflow starts;",
        "# it sets the DAG's deployment settings. Replace the <...> placeholders with the names of",
        "# your buckets and queues (outputs of deploy/aws/api-poller-resources.yaml), or build with",
        "#   scripts/build-mwaa-bundle --setting RAW_BUCKET=my-raw-bucket ...",
        "",
        "# The api_poller library lives in the dags folder; the api-server (plugin) imports it too.",
        'export PYTHONPATH="${AIRFLOW_HOME:-/usr/local/airflow}/dags${PYTHONPATH:+:${PYTHONPATH}}"',
        "# Two malloc arenas, not one per thread: bounds the memory a task's threads keep (the",
        "# process step's 16 workers with 5 MB pages; see docs/deployment.md).",
        "export MALLOC_ARENA_MAX=2",
        "",
    ]
    for name in EXPORTED_SETTINGS:
        if name in overrides:
            value = overrides.pop(name)
        elif name in RESOURCE_SETTINGS:
            value = f"<{name.replace('_', '-')}>"
        else:
            value = MWAA_SETTING_DEFAULTS.get(name, _render(getattr(defaults, name)))
        lines.append(_export(name, value))
    lines += [_export(name, value) for name, value in sorted(overrides.items())]
    lines += ["", "# Other settings (defaults shown; see README.md's settings table):"]
    for field in fields(PollerSettings):
        if field.name not in EXPORTED_SETTINGS and field.name not in overrides:
            default = _render(getattr(defaults, field.name))
            lines.append("# " + _export(field.name, default))
    return "\n".join(lines) + "\n"


def _export(name: str, value: str) -> str:
    return f"export {ENV_PREFIX}{name.upper()}={shlex.quote(value)}"


def _render(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_settings(assignments: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (NAME with or without the API_POLLER_ prefix) -> {field name: value}."""
    known = {field.name for field in fields(PollerSettings)}
    result = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        field_name = name.strip().upper().removeprefix(ENV_PREFIX).lower()
        if not sep or field_name not in known:
            raise ValueError(
                f"--setting {assignment!r}: expected NAME=VALUE with NAME one of "
                + ", ".join(sorted(f.upper() for f in known))
            )
        result[field_name] = value
    load_settings({ENV_PREFIX + name.upper(): value for name, value in result.items()})  # validates
    return result


def build_bundle(
    out: Path,
    *,
    project: Path = PROJECT_ROOT,
    settings: Mapping[str, str] | None = None,
    airflow_version: str = MWAA_AIRFLOW_VERSION,
    python_version: str = MWAA_PYTHON_VERSION,
) -> Bundle:
    """Write the bundle into ``out`` (replacing a previous bundle there) and return it."""
    bundle = Bundle(Path(out))
    bundle.root.mkdir(parents=True, exist_ok=True)
    for entry in bundle.entries:
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.exists():
            entry.unlink()
    write_dags_folder(project, bundle.dags)
    write_plugins_zip(project, bundle.plugins_zip)
    bundle.requirements.write_text(
        requirements_text(airflow_version=airflow_version, python_version=python_version)
    )
    bundle.startup_script.write_text(startup_script_text(settings))
    bundle.startup_script.chmod(0o755)
    return bundle


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def third_party_imports(folders: Iterable[Path], local: Iterable[str] = ()) -> dict[str, set[str]]:
    """Top-level modules imported by the .py files under ``folders`` that are neither the standard
    library nor ``local`` (the bundle's own packages): {module: {importing files}}."""
    ignored = set(sys.stdlib_module_names) | {"__future__", *local}
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            # Imports only type checkers see (``if TYPE_CHECKING:``) never run on MWAA.
            typing_only = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.If) and _is_type_checking(node.test)
                for statement in node.body
                for inner in ast.walk(statement)
            }
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in ignored:
                        found.setdefault(top, set()).add(str(path.relative_to(folder)))
    return found


def describe(bundle: Bundle) -> str:
    constraint = bundle.requirements.read_text().splitlines()[0]
    exports = [line for line in bundle.startup_script.read_text().splitlines() if line.startswith("export ")]
    placeholders = [line.split("=", 1)[0].removeprefix("export ") for line in exports if "='<" in line]
    with zipfile.ZipFile(bundle.plugins_zip) as archive:
        plugins = archive.namelist()
    dags = sorted(
        path.relative_to(bundle.dags).as_posix() for path in bundle.dags.rglob("*") if path.is_file()
    )
    return "\n".join(
        [
            f"MWAA bundle in {bundle.root}:",
            f"  dags/             {len(dags)} files: "
            + ", ".join(d for d in dags if "/" not in d)
            + f", {PACKAGE}/ ({sum(d.startswith(PACKAGE + '/') for d in dags)} files)",
            f"  plugins.zip       {', '.join(plugins) or '(empty)'}",
            f"  requirements.txt  {constraint}",
            "  startup.sh        API_POLLER_* settings"
            + (f" (placeholders to replace: {', '.join(placeholders)})" if placeholders else ""),
            "Upload: see docs/deployment.md (Amazon MWAA).",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/build-mwaa-bundle",
        description="Build the Amazon MWAA bundle: dags/ (DAG + api_poller library), plugins.zip, "
        "requirements.txt and startup.sh.",
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "dist" / "mwaa", help="default: dist/mwaa")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an API_POLLER_* setting for startup.sh, e.g. RAW_BUCKET=my-raw-bucket (repeatable)",
    )
    parser.add_argument(
        "--airflow-version",
        default=MWAA_AIRFLOW_VERSION,
        help=f"the MWAA environment's Airflow version (default {MWAA_AIRFLOW_VERSION})",
    )
    parser.add_argument(
        "--python-version",
        default=MWAA_PYTHON_VERSION,
        help=f"its Python version, for the constraints file (default {MWAA_PYTHON_VERSION})",
    )
    args = parser.parse_args(argv)
    try:
        settings = parse_settings(args.setting)
    except ValueError as error:
        parser.error(str(error))
    bundle = build_bundle(
        args.out, settings=settings, airflow_version=args.airflow_version, python_version=args.python_version
    )
    print(describe(bundle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
