"""The status purge through Airflow's CLI (``dags list-runs``, ``db clean``), e.g. Amazon MWAA's.

MWAA's workers cannot reach the metadata database on Airflow 3; MWAA's documentation points to
``airflow db clean`` through the environment's CLI endpoint instead.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from api_poller.operations.retention.status_purge import RunSpan, db_clean_command

# POSTs a body with headers to a URL; returns the decoded JSON answer.
PostJson = Callable[[str, bytes, dict[str, str]], Mapping[str, Any]]


class AirflowCliStatusStore:
    """Runs listed and XComs purged through Airflow's CLI.

    ``run_cli`` takes a command without the leading ``airflow`` and returns its output.
    """

    def __init__(self, run_cli: Callable[[str], str]) -> None:
        self._run_cli = run_cli

    def run_spans(self, dag_id: str) -> list[RunSpan]:
        return parse_list_runs(self._run_cli(f"dags list-runs {dag_id} -o json"))

    def purge_xcoms_before(self, dag_id: str, before: datetime, dry_run: bool) -> int:
        return parse_db_clean_rows(self._run_cli(" ".join(db_clean_command(dag_id, before, dry_run))))


def parse_list_runs(output: str) -> list[RunSpan]:
    """RunSpans from ``airflow dags list-runs <dag> -o json`` output (log lines around it are ignored)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^\[", output, re.MULTILINE):
        try:
            runs, _ = decoder.raw_decode(output, match.start())
        except ValueError:
            continue
        if isinstance(runs, list) and all(isinstance(run, dict) and "run_id" in run for run in runs):
            return [
                RunSpan.from_fields(
                    run["run_id"],
                    run.get("state"),
                    run_after=run.get("run_after"),
                    start_date=run.get("start_date"),
                    end_date=run.get("end_date"),
                )
                for run in runs
            ]
    raise RuntimeError(f"no run list in the output of 'airflow dags list-runs': {output[-1000:]!r}")


def parse_db_clean_rows(output: str) -> int:
    """Rows ``airflow db clean`` found for its one table (its "Found N rows ..." line)."""
    found = re.findall(r"Found (\d+) rows meeting deletion criteria", output)
    if len(found) != 1 or "Traceback" in output:
        raise RuntimeError(f"unexpected output of 'airflow db clean': {output[-1000:]!r}")
    return int(found[0])


class CliTokenIssuer(Protocol):
    """The part of boto3's ``mwaa`` client used here."""

    def create_cli_token(self, *, Name: str) -> Mapping[str, Any]: ...


class MwaaCli:
    """Airflow CLI commands through an Amazon MWAA environment's CLI endpoint.

    Needs ``airflow:CreateCliToken`` on the environment. Not exercised against a real MWAA
    environment here.
    """

    def __init__(self, mwaa_client: CliTokenIssuer, environment: str, post: PostJson | None = None) -> None:
        self._client = mwaa_client
        self._environment = environment
        self._post = post or _post_json

    def __call__(self, command: str) -> str:
        token = self._client.create_cli_token(Name=self._environment)
        answer = self._post(
            f"https://{token['WebServerHostname']}/aws_mwaa/cli",
            command.encode(),
            {"Authorization": f"Bearer {token['CliToken']}", "Content-Type": "text/plain"},
        )
        stdout = base64.b64decode(answer.get("stdout") or b"").decode(errors="replace")
        stderr = base64.b64decode(answer.get("stderr") or b"").decode(errors="replace")
        return f"{stdout}\n{stderr}"


def _post_json(url: str, body: bytes, headers: dict[str, str]) -> Mapping[str, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=600) as response:
        answer: Mapping[str, Any] = json.loads(response.read())
        return answer
