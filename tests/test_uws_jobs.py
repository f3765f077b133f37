"""UWS jobs: the store, the runner's phases and deadlines, and the XML documents."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from qcat.errors import QcatError
from qcat.metadata.store import MetadataStore
from services.tap.uws.documents import job_document, job_list_document, results_document
from services.tap.uws.jobs import (
    ABORTED,
    ARCHIVED,
    COMPLETED,
    ERROR,
    EXECUTING,
    PENDING,
    QUEUED,
    Job,
    JobNotFound,
    JobStore,
    now,
)
from services.tap.uws.runner import JobOutcome, JobRunner
from tests.xsd import assert_schema_valid

BASE = "http://127.0.0.1:8080/tap/async"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    with MetadataStore.for_data_dir(tmp_path / "data") as s:
        yield s


def new_job(jobs: JobStore, query: str = "SELECT 1", *, duration: int = 60) -> Job:
    return jobs.create(
        {"lang": "ADQL", "query": query},
        owner="127.0.0.1",
        run_id=None,
        execution_duration=duration,
        destruction=now() + timedelta(days=1),
    )


class FakeQueries:
    """Stands in for the query engine: writes ``rows`` lines, or blocks until cancelled."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.release = threading.Event()

    def execute(self, job: Job, path: Path) -> JobOutcome:
        query = job.parameters["query"]
        if query == "block":
            if not self.release.wait(30):
                raise AssertionError("never cancelled")
            raise QcatError("query cancelled")
        if query == "fail":
            raise QcatError("line 1, column 8: unknown column 'nope'")
        path.write_text(f"result of {query}\n")
        return JobOutcome("text/plain", rows=1, overflow=False)

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        self.release.set()


def test_store_round_trip_and_filters(store: MetadataStore) -> None:
    jobs = JobStore(store)
    a, b, c = (new_job(jobs, f"SELECT {i}") for i in range(3))
    assert jobs.get(a.job_id) == a
    assert jobs.transition(b.job_id, [PENDING], phase=ARCHIVED)[0]
    moved, now_c = jobs.transition(c.job_id, [EXECUTING], phase=COMPLETED)
    assert not moved and now_c.phase == PENDING  # compare-and-set refused
    assert [j.job_id for j in jobs.find()] == [a.job_id, c.job_id]  # ARCHIVED left out
    assert [j.job_id for j in jobs.find(phases=[ARCHIVED])] == [b.job_id]
    assert [j.job_id for j in jobs.find(last=1)] == [c.job_id]
    assert [j.job_id for j in jobs.find(after=a.creation_time)] == [c.job_id]
    jobs.delete(a.job_id)
    with pytest.raises(JobNotFound, match=a.job_id):
        jobs.get(a.job_id)


def _runner(store: MetadataStore, tmp_path: Path, fake: FakeQueries) -> JobRunner:
    return JobRunner(JobStore(store), tmp_path / "jobs", fake.execute, fake.cancel)


def test_a_job_runs_to_completion_with_its_result_file(
    store: MetadataStore, tmp_path: Path
) -> None:
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        job = new_job(runner.jobs, "SELECT 42")
        assert runner.run(job.job_id).phase == QUEUED
        done = _wait_final(runner, job.job_id)
        assert done.phase == COMPLETED, done
        assert done.result_path is not None and done.result_rows == 1
        assert (runner.jobs_dir / done.result_path).read_text() == "result of SELECT 42\n"
        assert done.start_time is not None and done.end_time is not None
        # Running a finished job again changes nothing.
        assert runner.run(job.job_id).phase == COMPLETED
    finally:
        runner.close()


def test_a_failing_job_reports_its_error(store: MetadataStore, tmp_path: Path) -> None:
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        job = new_job(runner.jobs, "fail")
        runner.run(job.job_id)
        failed = _wait_final(runner, job.job_id)
        assert failed.phase == ERROR
        assert failed.error_message == "line 1, column 8: unknown column 'nope'"
        assert failed.result_path is None
    finally:
        runner.close()


def test_execution_duration_is_enforced(store: MetadataStore, tmp_path: Path) -> None:
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        job = new_job(runner.jobs, "block", duration=1)
        t0 = time.monotonic()
        runner.run(job.job_id)
        ended = _wait_final(runner, job.job_id)
        assert ended.phase == ABORTED
        assert "execution duration of 1 s" in (ended.error_message or "")
        assert fake.cancelled == [job.job_id]
        assert time.monotonic() - t0 < 10
    finally:
        runner.close()


def test_abort_stops_a_running_job(store: MetadataStore, tmp_path: Path) -> None:
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        job = new_job(runner.jobs, "block")
        runner.run(job.job_id)
        runner.wait(job.job_id, QUEUED, 10)
        assert runner.abort(job.job_id).phase == ABORTED
        assert fake.cancelled == [job.job_id]
        time.sleep(0.2)  # the job's thread ends without overwriting ABORTED
        assert runner.jobs.get(job.job_id).phase == ABORTED
    finally:
        runner.close()


def test_restart_turns_running_jobs_into_errors(store: MetadataStore, tmp_path: Path) -> None:
    jobs = JobStore(store)
    running = new_job(jobs)
    jobs.transition(running.job_id, [PENDING], phase=EXECUTING, start_time=now())
    pending = new_job(jobs)
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        assert runner.recover() == 1
        after = jobs.get(running.job_id)
        assert after.phase == ERROR and "restarted" in (after.error_message or "")
        assert jobs.get(pending.job_id).phase == PENDING
    finally:
        runner.close()


def test_expired_jobs_are_destroyed_with_their_files(store: MetadataStore, tmp_path: Path) -> None:
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        job = new_job(runner.jobs)
        runner.run(job.job_id)
        _wait_final(runner, job.job_id)
        assert runner.job_dir(job.job_id).exists()
        runner.jobs.transition(job.job_id, [COMPLETED], destruction=now() - timedelta(seconds=1))
        assert runner.reap() == 1
        assert not runner.job_dir(job.job_id).exists()
        with pytest.raises(JobNotFound):
            runner.jobs.get(job.job_id)
    finally:
        runner.close()


def test_wait_returns_at_its_timeout(store: MetadataStore, tmp_path: Path) -> None:
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        job = new_job(runner.jobs)
        t0 = time.monotonic()
        assert runner.wait(job.job_id, PENDING, 0.5).phase == PENDING
        assert 0.4 < time.monotonic() - t0 < 5
    finally:
        runner.close()


def test_documents_validate_against_the_uws_schema(store: MetadataStore, tmp_path: Path) -> None:
    fake = FakeQueries()
    runner = _runner(store, tmp_path, fake)
    try:
        ok = new_job(runner.jobs, "SELECT 'a < b & c'")
        bad = new_job(runner.jobs, "fail")
        for job in (ok, bad):
            runner.run(job.job_id)
        jobs = [_wait_final(runner, j.job_id) for j in (ok, bad)]
        pending = new_job(runner.jobs)
        for job in [*jobs, pending]:
            assert_schema_valid(job_document(job, BASE))
            assert_schema_valid(results_document(job, BASE))
        assert_schema_valid(job_list_document(runner.jobs.find(), BASE))
        assert f'{BASE}/{ok.job_id}/results/result"'.encode() in job_document(jobs[0], BASE)
        assert b"unknown column" in job_document(jobs[1], BASE)
    finally:
        runner.close()


def _wait_final(runner: JobRunner, job_id: str) -> Job:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = runner.jobs.get(job_id)
        if job.phase not in (PENDING, QUEUED, EXECUTING):
            return job
        runner.wait(job_id, job.phase, 1.0)
    raise AssertionError(f"job {job_id} never finished")
