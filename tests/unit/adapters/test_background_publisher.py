"""Page statuses are published off the task's own thread, in order, and nothing is lost."""

from __future__ import annotations

import threading

import pytest

from api_poller.adapters.status_publishing import BackgroundPublisher
from api_poller.core.lifecycle import PageState, Publication, StatusRecorder


def summary(tag: str) -> dict:
    return {"v": 2, "tag": tag}


def test_publications_that_queue_up_go_out_as_one_in_order() -> None:
    gate = threading.Event()
    seen: list[Publication] = []

    def slow_publish(publication: Publication) -> None:
        gate.wait(5)
        seen.append(publication)

    publisher = BackgroundPublisher(slow_publish)
    publisher(Publication(summary("a"), {0: {"page-000001": {"state": "Started"}}}))
    publisher(Publication(summary("b"), {0: {"page-000001": {"state": "Enqueued"}}, 1: {"page-000250": {}}}))
    publisher(Publication(summary("c"), {2: {"page-000500": {}}}))
    gate.set()
    publisher.drain()
    # The first may have gone alone; whatever queued behind it went as one, the last versions winning.
    last = seen[-1]
    assert last.summary == summary("c")
    chunks = {chunk: records for publication in seen for chunk, records in publication.chunks.items()}
    assert chunks[0] == {"page-000001": {"state": "Enqueued"}} and set(chunks) == {0, 1, 2}
    assert len(seen) <= 2


def test_a_forced_flush_returns_once_the_publication_is_out() -> None:
    published: list[Publication] = []
    release = threading.Event()

    def publish(publication: Publication) -> None:
        release.wait(5)
        published.append(publication)

    publisher = BackgroundPublisher(publish)
    recorder = StatusRecorder(publisher, interval=60.0, drain=publisher.drain)
    recorder.mark("page-000001", PageState.STARTED)  # handed over at once, not yet out
    assert published == []
    threading.Timer(0.2, release.set).start()
    recorder.flush()
    assert len(published) == 1


def test_an_error_of_the_publisher_fails_the_task_at_its_next_step() -> None:
    def broken(publication: Publication) -> None:
        raise RuntimeError("the XCom could not be pushed")

    publisher = BackgroundPublisher(broken)
    recorder = StatusRecorder(publisher, interval=0.0, drain=publisher.drain)
    recorder.mark("page-000001", PageState.STARTED)
    with pytest.raises(RuntimeError, match="could not be pushed"):
        recorder.flush()


def test_statuses_go_off_thread_only_over_a_task_process_s_own_comms(monkeypatch) -> None:
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import CommsDecoder
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms

    from api_poller.adapters.status_publishing import supervisor_comms_are_thread_safe

    monkeypatch.delattr(task_runner, "SUPERVISOR_COMMS", raising=False)
    assert not supervisor_comms_are_thread_safe()  # not in a task at all
    monkeypatch.setattr(
        task_runner, "SUPERVISOR_COMMS", object.__new__(InProcessSupervisorComms), raising=False
    )
    assert not supervisor_comms_are_thread_safe()  # dag.test: a global swapped per request
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", object.__new__(CommsDecoder), raising=False)
    assert supervisor_comms_are_thread_safe()  # a task process: a socket behind a lock
