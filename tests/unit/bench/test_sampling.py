"""The benchmark's /proc readings: which process is which component, CPU ticks, RSS, CPU per run."""

from __future__ import annotations

import pytest

from bench.harness.sampling import (
    MEASURED_SCRIPTS,
    component_of,
    cpu_used,
    machine_busy_ticks,
    process_cpu_ticks,
    rss_bytes,
)

TASKS = "Airflow tasks (LocalExecutor workers + task processes)"


def test_cpu_ticks_are_read_after_the_command_even_when_it_holds_spaces_and_parentheses() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime ...
    line = "4242 (python (bench) x) S 1 4242 4242 0 -1 4194304 900 0 3 0 120 30 400 50 20 0 9 0 77"
    assert process_cpu_ticks(line) == (150, 450)


def test_the_machine_is_busy_for_every_tick_but_idle_and_iowait() -> None:
    proc_stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n"
    assert machine_busy_ticks(proc_stat) == 100 + 5 + 50 + 3 + 2


def test_rss_is_read_in_bytes_and_a_process_without_it_is_an_error() -> None:
    assert rss_bytes("Name:\tpython\nVmPeak:\t 9000 kB\nVmRSS:\t    2048 kB\n") == 2 * 2**20
    with pytest.raises(ValueError):
        rss_bytes("Name:\tkworker/0:1\nState:\tI (idle)\n")  # kernel threads and zombies have none


@pytest.mark.parametrize(
    ("command_line", "component"),
    [
        ("/x/.venv/bin/python bench/run.py --quick", "this benchmark"),
        ("/x/.venv/bin/python bench/moto_server.py -H 127.0.0.1 -p 5000", "moto"),
        ("/x/.venv/bin/python -m api_poller_dev.simulator --seed=42", "simulator"),
        ("airflow worker -- LocalExecutor: 0194c2a0-6b1f-7c3e-9a1b-1234567890ab", TASKS),
        ("/x/.venv/bin/python /x/.venv/bin/airflow scheduler --skip-serve-logs", "Airflow scheduler"),
        ("airflow dag-processor", "Airflow dag-processor"),
        ("postgres: 16/main: airflow api_poller_bench 127.0.0.1(5123) idle", "PostgreSQL"),
        ("/usr/bin/bash", None),
    ],
)  # fmt: skip
def test_processes_are_counted_under_their_component(command_line: str, component: str | None) -> None:
    assert component_of(command_line) == component


def test_cpu_used_counts_each_component_since_the_first_snapshot() -> None:
    before = {
        "busy_s": 1000.0,
        "pids": {
            10: ("moto", 5.0),
            11: ("Airflow scheduler", 2.0),
            12: ("simulator", 9.0),
            -1: (MEASURED_SCRIPTS, 1.0),
        },
    }
    after = {
        "busy_s": 1012.34,
        "pids": {
            10: ("moto", 7.5),  # ran 2.5 s meanwhile
            11: ("Airflow scheduler", 2.5),
            12: ("PostgreSQL", 3.0),  # the pid was reused by another component: from zero
            13: ("Airflow scheduler", 1.0),  # started meanwhile: from zero
            -1: (MEASURED_SCRIPTS, 5.5),
        },
    }
    used = cpu_used(before, after)
    assert used["machine_busy_s"] == 12.3
    assert used["by_component_s"] == {
        MEASURED_SCRIPTS: 4.5,
        "PostgreSQL": 3.0,
        "moto": 2.5,
        "Airflow scheduler": 1.5,  # 0.5 + 1.0
    }
    assert list(used["by_component_s"])[:1] == [MEASURED_SCRIPTS]  # the busiest first
