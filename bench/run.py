"""Benchmark: the api_poller DAG on a real Airflow vs a plain asyncio script vs dlt's rest_api source.

One command starts moto's server, PostgreSQL-backed Airflow (LocalExecutor) and, per measured run,
a fresh partner-API simulator (same seed, so every system sees the same latencies and errors);
it measures each system on each workload and writes bench/results/results.{json,md} and a plot.
See bench/README.md. The parts are in bench/harness/ (runners, sampling, rendering, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import signal
import subprocess
import sys
import urllib.error
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from harness.config import (
    ALL_SYSTEMS,
    BENCH,
    DEFAULT_WORKLOADS,
    DLT_WORKLOADS,
    MAIN_PYTHON,
    PAGE_SIZE,
    RESULTS,
    ROOT,
    TUNED_SYSTEM,
    WORKLOAD_PAGES,
    simulator_args,
)

sys.path[:0] = [str(ROOT / "include"), str(ROOT / "devtools")]

from harness.console import log  # noqa: E402 - the harness imports api_poller (include/)
from harness.rendering import add_to, summarize_runs, write_report  # noqa: E402
from harness.runners import run_airflow, run_asyncio, run_dlt  # noqa: E402
from harness.sampling import cpu_snapshot, cpu_used  # noqa: E402
from harness.services import (  # noqa: E402
    DEPLOYMENT_SETTINGS,
    airflow_stack,
    ensure_venv,
    http_json,
    moto,
    reset_moto,
    warm_up,
)

if TYPE_CHECKING:
    from api_poller_dev.local_airflow import AirflowServer


# What --airflow-env / --tuned-env may set: the product's settings and Airflow's own configuration.
SETTING_PREFIXES = ("API_POLLER_", "AIRFLOW__")


def _main_venv() -> None:
    """Re-run under the project's venv (Airflow, moto, boto3, aiohttp, psutil) if started elsewhere."""
    import importlib.util

    if importlib.util.find_spec("airflow") is not None:
        return
    # By prefix: the venv's python is often a link to the very interpreter that started this.
    if MAIN_PYTHON.exists() and Path(sys.prefix).resolve() != MAIN_PYTHON.parents[1].resolve():
        os.execv(str(MAIN_PYTHON), [str(MAIN_PYTHON), __file__, *sys.argv[1:]])
    raise SystemExit("bench: the project venv is missing; run scripts/bootstrap (bench/run does it)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--workloads",
        default=",".join(DEFAULT_WORKLOADS),
        help=f"comma-separated, of {','.join(WORKLOAD_PAGES)}",
    )
    parser.add_argument("--quick", action="store_true", help="the seed workload only")
    parser.add_argument(
        "--systems", default=",".join(ALL_SYSTEMS), help="comma-separated: asyncio,airflow,dlt"
    )
    parser.add_argument("--concurrency", type=int, default=25, help="requests in flight (all systems)")
    parser.add_argument(
        "--fetch-tasks", type=int, default=0, help="job conf fetch_tasks (0: the DAG's automatic choice)"
    )
    parser.add_argument("--parallelism", type=int, default=16, help="Airflow [core] parallelism")
    parser.add_argument("--latency-ms", default="0-1000")
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--record-bytes", type=int, default=0,
        help="pad each record to about this size (the simulator's --record-bytes; 0: ~150 B)",
    )  # fmt: skip
    parser.add_argument(
        "--airflow-env", action="append", default=[], metavar="API_POLLER_X=V",
        help="a product or Airflow setting (AIRFLOW__SECTION__KEY) for the benchmark's Airflow (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--tuned-env", action="append", default=[], metavar="API_POLLER_X=V",
        help=f"also run a second Airflow ('{TUNED_SYSTEM}') with these product or Airflow settings",
    )  # fmt: skip
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per system on workloads up to 1,000 pages (median reported)",
    )
    parser.add_argument(
        "--stock-moto", action="store_true", help="moto as is (its SQS is quadratic in the queue depth)"
    )
    parser.add_argument("--timeout-factor", type=float, default=1.0, help="scales every per-run timeout")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up DAG run")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="SECONDS",
        help="py-spy record task processes, scheduler and api-server during the largest Airflow run",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--add-to", type=Path, metavar="RESULTS_JSON",
        help="add this invocation's runs to an earlier results.json (e.g. to finish a partial run)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    if args.add_to:
        args.add_to = args.add_to.resolve()
    args.workloads = ["seed"] if args.quick else [w for w in args.workloads.split(",") if w]
    unknown = [w for w in args.workloads if w not in WORKLOAD_PAGES]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOAD_PAGES)}")
    args.systems = [s for s in args.systems.split(",") if s]
    if bad := [s for s in args.systems if s not in ALL_SYSTEMS]:
        parser.error(f"unknown systems {bad}; choose from {list(ALL_SYSTEMS)}")
    for option in ("airflow_env", "tuned_env"):
        env = {}
        for item in getattr(args, option):
            key, sep, value = item.partition("=")
            if not sep or not key.startswith(SETTING_PREFIXES):
                parser.error(
                    f"--{option.replace('_', '-')} takes API_POLLER_NAME=VALUE or AIRFLOW__SECTION__KEY=VALUE"
                )
            env[key] = value
        setattr(args, option, env)
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure(
    system: str,
    url: str,
    base_url: str,
    endpoint: str,
    pages: int,
    args: argparse.Namespace,
    run_dir: Path,
    *,
    airflows: dict[str, AirflowServer],
    dlt_python: Path | None,
    profile_seconds: int,
) -> dict[str, Any]:
    """One measured run of ``system``, with the CPU it cost; an error is a result, not a crash."""
    cpu_before = cpu_snapshot()
    try:
        if system == "asyncio":
            result = run_asyncio(url, endpoint, pages, args, run_dir)
        elif system == "dlt":
            assert dlt_python is not None  # installed whenever dlt is measured
            result = run_dlt(dlt_python, base_url, pages, args, run_dir)
        else:
            result = run_airflow(airflows[system], url, pages, args, run_dir, profile_seconds)
    except (subprocess.TimeoutExpired, RuntimeError, urllib.error.URLError) as error:
        result = {"wall_s": None, "status": f"error: {error}", "peak_rss_mb": None}
    result["cpu"] = cpu_used(cpu_before, cpu_snapshot())
    return result


def main(argv: list[str] | None = None) -> int:
    _main_venv()
    args = parse_args(argv)
    from api_poller_dev.local_airflow import postgres_reachable
    from api_poller_dev.local_stack import simulator_server

    # SIGTERM (e.g. a timeout around this command) unwinds like Ctrl-C: every server is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    if ("airflow" in args.systems or args.tuned_env) and not postgres_reachable():
        raise SystemExit("bench: PostgreSQL is not reachable on 127.0.0.1:5432")

    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    work = args.out / "work" / started_at.replace(":", "")
    work.mkdir(parents=True, exist_ok=True)
    tools_python = ensure_venv(BENCH / ".venv", BENCH / "requirements.txt")
    dlt_python = None
    if "dlt" in args.systems and any(w in DLT_WORKLOADS for w in args.workloads):
        dlt_python = ensure_venv(BENCH / ".venv-dlt", BENCH / "requirements-dlt.txt")
    import airflow as airflow_package

    systems = [s for s in ALL_SYSTEMS if s in args.systems]
    if args.tuned_env:
        systems.append(TUNED_SYSTEM)
    settings: dict[str, Any] = {
        "concurrency": args.concurrency,
        "fetch_tasks": args.fetch_tasks,
        "parallelism": args.parallelism,
        "latency_ms": args.latency_ms,
        "error_rate": args.error_rate,
        "seed": args.seed,
        "record_bytes": args.record_bytes,
        "page_size": PAGE_SIZE,
        "airflow_env": args.airflow_env,
        "airflow_bench_settings": DEPLOYMENT_SETTINGS,
        "tuned_env": args.tuned_env,
        "airflow_version": airflow_package.__version__,
        "dlt": "dlt rest_api source, filesystem destination on local disk (jsonl)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "workdir": str(work.relative_to(ROOT) if work.is_relative_to(ROOT) else work),
        "repeat": args.repeat,
        "moto": "stock" if args.stock_moto else "with bench/moto_server.py's SQS fixes",
    }
    report: dict[str, Any] = {"started_at": started_at, "settings": settings, "table": [], "runs": []}
    if args.add_to:
        report = add_to(args.add_to, {**settings, "started_at": started_at})
    largest = max(args.workloads, key=lambda workload: WORKLOAD_PAGES[workload])
    log(f"workloads {args.workloads}, systems {systems}; work files in {work}")

    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto(work, args.stock_moto))
        airflows: dict[str, AirflowServer] = {}
        for system, env in (("airflow", args.airflow_env), (TUNED_SYSTEM, args.tuned_env)):
            if system not in systems:
                continue
            airflows[system] = stack.enter_context(airflow_stack(system, work, endpoint, args, env))
            if not args.no_warmup:
                warm_up(airflows[system], endpoint, work)
        for workload in args.workloads:
            pages = WORKLOAD_PAGES[workload]
            repeats = args.repeat if pages <= 1000 else 1
            # Repeats interleave the systems, so load from elsewhere on the machine hits them alike.
            for repeat, system in itertools.product(range(1, repeats + 1), systems):
                if system == "dlt" and workload not in DLT_WORKLOADS:
                    continue
                run_dir = work / f"{workload}-{system}-{repeat}"
                run_dir.mkdir(parents=True, exist_ok=True)
                reset_moto(endpoint)
                load = round(os.getloadavg()[0], 2)
                log(f"{system} on {workload} ({pages} pages), #{repeat}, load {load} ...")
                profiled = workload == largest and system == "airflow" and repeat == 1
                with simulator_server(run_dir, simulator_args(pages, args)) as base_url:
                    result = measure(
                        system,
                        f"{base_url}/payload",
                        base_url,
                        endpoint,
                        pages,
                        args,
                        run_dir,
                        airflows=airflows,
                        dlt_python=dlt_python,
                        profile_seconds=args.profile if profiled else 0,
                    )
                    result["simulator"] = http_json(f"{base_url}/stats")
                run = {"system": system, "workload": workload, "pages": pages, "repeat": repeat, **result}
                run["invocation"] = started_at
                run["load_average_1m_at_start"] = load
                report["runs"].append(run)
                log(f"{system} on {workload}: {run['status']} in {run['wall_s']} s")
                report["table"] = summarize_runs(report["runs"])
                write_report(report, args.out, tools_python, final=False)
    # (With --add-to, ``settings`` is this invocation's entry in "more_invocations".)
    settings["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    measured = {(r["system"], r["workload"]) for r in report["runs"]}
    full = all(
        (system, workload) in measured
        for workload in DEFAULT_WORKLOADS
        for system in ALL_SYSTEMS
        if system != "dlt" or workload in DLT_WORKLOADS
    )
    table = write_report(report, args.out, tools_python, final=True, readme=full)
    print(table)
    return 0 if all(r["status"] == "success" for r in report["runs"]) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupt:
        log(f"interrupted ({interrupt}); every server was stopped, partial results are in results.json")
        sys.exit(130)
