"""Cost per million records: the poller's AWS requests, counted in real runs, next to the serverless sample.

    .venv/bin/python bench/cost.py                  # count two real runs (~1-2 min), write the table
    .venv/bin/python bench/cost.py --render-only    # re-price the last counts (bench/results/cost.json)

It runs, each in a child process, ``local-sync``'s job on the embedded stack (``dag.test`` against
the partner-API simulator and moto's server) while ``harness.aws_requests`` counts every request the
tasks' botocore clients send: the seed DAG on the seed's workload (10,000 records, 100 a page,
0-1000 ms latency, 10% errors) and a source DAG (an offset source, basic auth) on the same
workload. It scales the counts to 1,000,000 records (10,000 pages of 100), prices them at
``PRICES`` and writes ``bench/results/cost.md`` (the table docs/cost.md shows) and ``cost.json``.
The serverless sample's column is computed from its documented flow (``harness.cost_model``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.config import RESULTS, ROOT

sys.path[:0] = [str(ROOT / "include"), str(ROOT / "devtools")]

from harness.console import log  # noqa: E402
from harness.cost_model import (  # noqa: E402
    RECORDS,
    STATUS_WRITES_PER_PAGE,
    TRANSITIONS_PER_PAGE,
    Line,
    ServerlessAssumptions,
    one_page_batches,
    pages_per_million,
    poller_lines,
    scale_counts,
    serverless_lines,
    total_requests,
    total_usd,
)

from api_poller.names import PUBLISH_TASK, STATUS_TASK_IDS  # noqa: E402 - include/ is on the path now

# Public us-east-1 prices in USD, as published June 2025 (taken without network access, from the
# AWS pricing pages as last read: check them at aws.amazon.com/<service>/pricing before relying on
# them). docs/cost.md lists the same table.
PRICES_AS_PUBLISHED = "June 2025"
PRICES: dict[str, float] = {
    "s3_put_class_per_1k": 0.005,  # S3 Standard PUT, COPY, POST, LIST, per 1,000 requests
    "s3_get_class_per_1k": 0.0004,  # S3 Standard GET, SELECT, HEAD and all other, per 1,000
    "sqs_per_million": 0.40,  # SQS standard queue, per million requests (a 64 KB chunk each)
    "sfn_standard_per_1k_transitions": 0.025,  # Step Functions standard workflows, per 1,000
    "lambda_per_million_requests": 0.20,  # Lambda, per million invocations
    "lambda_per_gb_second": 0.0000166667,  # Lambda x86 compute, per GB-second
    "dynamodb_per_million_wru": 0.625,  # DynamoDB on-demand, per million write request units
    "apigw_http_per_million": 1.00,  # API Gateway HTTP API, per million requests
    "eventbridge_per_million": 1.00,  # EventBridge custom events, per million
    "mwaa_small_per_hour": 0.49,  # Amazon MWAA environment mw1.small, per hour
    "mwaa_medium_per_hour": 0.74,  # mw1.medium
    "mwaa_large_per_hour": 0.99,  # mw1.large
}
PRICE_TABLE = [
    ("S3 Standard PUT, COPY, POST, LIST requests", "per 1,000", "s3_put_class_per_1k"),
    ("S3 Standard GET, SELECT, HEAD requests", "per 1,000", "s3_get_class_per_1k"),
    ("S3 DELETE requests", "-", None),
    ("SQS standard requests (each 64 KB chunk; a batch of 10 is one)", "per million", "sqs_per_million"),
    ("Step Functions standard-workflow state transitions", "per 1,000", "sfn_standard_per_1k_transitions"),
    ("Lambda invocations", "per million", "lambda_per_million_requests"),
    ("Lambda compute (x86)", "per GB-second", "lambda_per_gb_second"),
    ("DynamoDB on-demand write request units", "per million", "dynamodb_per_million_wru"),
    ("API Gateway HTTP API requests", "per million", "apigw_http_per_million"),
    ("EventBridge custom events", "per million", "eventbridge_per_million"),
    ("Amazon MWAA environment, mw1.small", "per hour", "mwaa_small_per_hour"),
    ("Amazon MWAA environment, mw1.medium", "per hour", "mwaa_medium_per_hour"),
    ("Amazon MWAA environment, mw1.large", "per hour", "mwaa_large_per_hour"),
]
HOURS_PER_MONTH = 730

PAGE_SIZE = 100
SEED_RECORDS = 10_000
# The seed's workload but for its size: 100 records a page, 0-1000 ms latency, 10% errors.
WORKLOAD = [f"--page-size={PAGE_SIZE}", "--latency-ms=0-1000", "--error-rate=0.1", "--seed=42"]
# The tasks that handle pages (their requests grow with the pages); the others run once a job.
PAGE_TASKS = STATUS_TASK_IDS
# A source's publish step reads every page's records (GET, and a LIST per 1,000 pages); its parts,
# manifest, pointer and marker are a few PUTs a job (one part per target size, 128 MB by default).
PAGE_OPERATIONS_OF = {PUBLISH_TASK: frozenset({"s3.GetObject", "s3.ListObjectsV2"})}
SOURCE_FILE = """\
# An offset source with a total, basic auth, against the simulator (see docs/sources.md).
name: cost_orders
connection_id: cost_orders_api
path: /offset/items
records: data.items
primary_key: id
paginator: {type: offset, page_size: 100, total_path: meta.total}
auth: {type: basic}
"""
RUNS = {"seed": "the seed DAG (api_poller)", "source": "a source DAG (offset paginator, basic auth)"}
WORK = RESULTS / "work" / "cost"
DOC = ROOT / "docs" / "cost.md"
DOC_START, DOC_END = "<!-- cost:start -->", "<!-- cost:end -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--render-only", action="store_true", help="re-price bench/results/cost.json, run nothing"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where cost.md and cost.json go")
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"which DAGs to count, of {','.join(RUNS)} (default: both)"
    )
    parser.add_argument(
        "--total-records", type=int, default=SEED_RECORDS, help="records per counted run (seed: 10000)"
    )
    parser.add_argument("--count", choices=sorted(RUNS), help=argparse.SUPPRESS)  # a child's one run
    parser.add_argument("--counts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.runs.split(",")) - set(RUNS)
    if unknown:
        parser.error(f"--runs: no such run {', '.join(sorted(unknown))} (choose from {', '.join(RUNS)})")
    return args


# -- a child: one counted run ------------------------------------------------------------------


def count_one_run(name: str, records: int, counts_file: Path) -> int:
    """Run local-sync's job once, counting its AWS requests by task; write them to ``counts_file``."""
    from api_poller_dev import local_run
    from harness.aws_requests import airflow_task_label, counting_aws_requests

    state_dir = WORK / name
    argv = ["--state-dir", str(state_dir), "--json", f"--total-records={records}", *WORKLOAD]
    if name == "source":
        source = state_dir / "cost_orders.yaml"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(SOURCE_FILE)
        argv += ["--source", str(source), "--simulator"]
    started = time.monotonic()
    with counting_aws_requests(airflow_task_label) as counter:
        exit_code = local_run.main(argv)
    counts_file.write_text(
        json.dumps(
            {
                "run": name,
                "exit_code": exit_code,
                "seconds": round(time.monotonic() - started, 1),
                "pages": -(-records // PAGE_SIZE),
                "by_task": counter.by_label(),
            }
        )
    )
    return exit_code


def counted_run(name: str, records: int) -> dict[str, Any]:
    """One counted run in a child process (Airflow reads its configuration once a process)."""
    counts_file = WORK / f"{name}.json"
    counts_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "devtools")])}
    command = [sys.executable, str(Path(__file__)), "--count", name, "--counts-file", str(counts_file),
               f"--total-records={records}"]  # fmt: skip
    log(f"counting {RUNS[name]}: {records:,} records on the embedded stack (output in {WORK / name})")
    with open(WORK / f"{name}.out", "w") as output:
        subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT, check=False)
    run: dict[str, Any] = json.loads(counts_file.read_text())
    if run["exit_code"] != 0:
        raise SystemExit(f"the {name} run did not complete (exit {run['exit_code']}): see {WORK / name}/logs")
    log(f"{name}: {sum(sum(ops.values()) for ops in run['by_task'].values())} requests in {run['seconds']} s")
    return run


# -- pricing and the table ---------------------------------------------------------------------


def split_counts(by_task: dict[str, dict[str, int]]) -> tuple[dict[str, int], dict[str, int]]:
    """(requests of the page-handling tasks, requests made once a job), by operation. Requests
    made outside any task (the local run's own copy of the output) are not the job's."""
    per_page: dict[str, int] = {}
    per_job: dict[str, int] = {}
    for task, operations in by_task.items():
        if task.startswith("("):
            continue
        for operation, count in operations.items():
            grows = task in PAGE_TASKS or operation in PAGE_OPERATIONS_OF.get(task, ())
            target = per_page if grows else per_job
            target[operation] = target.get(operation, 0) + count
    return per_page, per_job


def poller_requests(run: dict[str, Any], pages: int) -> dict[str, float]:
    per_page, per_job = split_counts(run["by_task"])
    return scale_counts(per_page, per_job, run["pages"], pages)


def poller_cost(run: dict[str, Any], pages: int) -> list[Line]:
    return poller_lines(poller_requests(run, pages), PRICES)


def worst_batching_cost(run: dict[str, Any], pages: int) -> list[Line]:
    return poller_lines(one_page_batches(poller_requests(run, pages), pages), PRICES)


def fmt_usd(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def fmt_price(key: str | None) -> str:
    return "free" if key is None else f"{PRICES[key]:.10f}".rstrip("0").rstrip(".")


def fmt_quantity(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.2f}"


def line_rows(lines: list[Line]) -> list[str]:
    return [
        f"| {line.service} | {line.item} | {fmt_quantity(line.quantity)} "
        f"{line.unit if line.unit == 'GB-s' else line.unit + 's'} | {fmt_usd(line.usd)} |"
        for line in lines
    ]


def totals_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Requests and USD per million records: each counted DAG, then the serverless sample."""
    pages = pages_per_million(PAGE_SIZE)
    rows = [
        "| design | billed requests per 1M records | USD per 1M records | USD, one page a batch |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, run in runs.items():
        lines, worst = poller_cost(run, pages), worst_batching_cost(run, pages)
        requests, usd, worst_usd = total_requests(lines), fmt_usd(total_usd(lines)), fmt_usd(total_usd(worst))
        rows.append(f"| airflow-api-poller, {RUNS[name]} | {requests:,.0f} | {usd} | {worst_usd} |")
    serverless = serverless_lines(pages, PRICES, ServerlessAssumptions())
    rows.append(
        f"| serverless sample (Step Functions, Lambda, DynamoDB, ...) | {total_requests(serverless):,.0f} | "
        f"{fmt_usd(total_usd(serverless))} | - |"
    )
    return rows


def update_doc(rows: list[str]) -> None:
    """The totals in docs/cost.md, between its markers."""
    text = DOC.read_text()
    start, end = text.index(DOC_START) + len(DOC_START), text.index(DOC_END)
    DOC.write_text(text[:start] + "\n" + "\n".join(rows) + "\n" + text[end:])


def markdown(runs: dict[str, dict[str, Any]], taken_at: str) -> str:
    pages = pages_per_million(PAGE_SIZE)
    assume = ServerlessAssumptions()
    serverless = serverless_lines(pages, PRICES, assume)
    out = [
        f"# Cost per {RECORDS:,} records (generated by `bench/cost.py`, {taken_at})",
        "",
        f"{RECORDS:,} records at {PAGE_SIZE} a page = {pages:,} pages. Prices: public us-east-1, as "
        f"published {PRICES_AS_PUBLISHED}, without free tiers, storage or data transfer.",
        "",
        "## Totals",
        "",
        *totals_table(runs),
    ]
    serverless_usd = total_usd(serverless)
    poller_usd = max(total_usd(worst_batching_cost(run, pages)) for run in runs.values())
    monthly = PRICES["mwaa_small_per_hour"] * HOURS_PER_MONTH
    out += [
        "",
        "Requests: every billed unit that is a request (S3, SQS, Lambda, API Gateway), a state",
        "transition, an event or a DynamoDB write; Lambda GB-seconds are priced but not counted.",
        "One page a batch: the poller's SQS and S3 batch calls (send, receive, delete) if every one",
        "carried a single page, as when pages trickle in (the counted runs batch better; see docs/cost.md).",
        "",
        f"The per-record difference pays for an MWAA mw1.small environment (${monthly:,.2f} a month) from "
        f"{monthly / (serverless_usd - poller_usd):,.0f} million records a month (one page a batch).",
        "",
    ]
    for name, run in runs.items():
        out += [
            f"## airflow-api-poller: {RUNS[name]}",
            "",
            f"Counted in a real run of {run['pages']} pages ({run['seconds']} s; botocore's `before-send` "
            f"events of every client the tasks created, retries included), scaled to {pages:,} pages: the "
            f"requests of {', '.join(PAGE_TASKS)} and the page reads of {PUBLISH_TASK} "
            f"x {pages // run['pages']}, those of the other tasks once.",
            "",
            "| service | operation | per 1M records | USD |",
            "| --- | --- | ---: | ---: |",
            *line_rows(poller_cost(run, pages)),
            "",
            "Counted, by task: " + "; ".join(
                f"{task}: " + ", ".join(f"{op} {count}" for op, count in ops.items())
                for task, ops in sorted(run["by_task"].items())
                if not task.startswith("(")
            ) + ".",
            "",
        ]  # fmt: skip
    out += [
        "## The serverless sample, from its documented flow",
        "",
        f"Per page: {TRANSITIONS_PER_PAGE} state transitions, 1 FetchPayload invocation per attempt "
        f"({assume.error_rate:.0%} transient errors, up to {assume.max_attempts} attempts), "
        f"{STATUS_WRITES_PER_PAGE} DynamoDB writes "
        "(one per status change), 1 SQS message, 1 S3 PUT and DELETE; ProcessPayload per batch of "
        f"{assume.process_batch_size}. Lambda at {assume.lambda_memory_gb * 1024:.0f} MB, "
        f"{assume.fetch_seconds} s a fetch attempt, {assume.process_seconds_per_page} s a processed page.",
        "",
        "| service | item | per 1M records | USD |",
        "| --- | --- | ---: | ---: |",
        *line_rows(serverless),
        "",
        "## Fixed costs (not per record)",
        "",
        "| what | USD per hour | USD per month (730 h) |",
        "| --- | ---: | ---: |",
    ]
    for size in ("small", "medium", "large"):
        hourly = PRICES[f"mwaa_{size}_per_hour"]
        monthly = hourly * HOURS_PER_MONTH
        out.append(f"| Amazon MWAA environment mw1.{size} | ${hourly:.2f} | ${monthly:,.2f} |")
    out += [
        "",
        "## Prices used",
        "",
        "| price | unit | USD |",
        "| --- | --- | ---: |",
        *[f"| {label} | {unit} | {fmt_price(key)} |" for label, unit, key in PRICE_TABLE],
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.count:
        return count_one_run(args.count, args.total_records, args.counts_file)
    results_json = args.out / "cost.json"
    if args.render_only:
        report = json.loads(results_json.read_text())
    else:
        report = {
            "taken_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "runs": {name: counted_run(name, args.total_records) for name in args.runs.split(",")},
        }
        args.out.mkdir(parents=True, exist_ok=True)
        results_json.write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report["runs"], report["taken_at"])
    (args.out / "cost.md").write_text(table)
    if args.out == RESULTS and set(report["runs"]) == set(RUNS):
        update_doc(totals_table(report["runs"]))  # the doc shows the default run's totals
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
