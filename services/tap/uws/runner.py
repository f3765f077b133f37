"""Run UWS jobs in the background: queue, execute, time out, abort, destroy.

The runner owns a small pool of threads (``max_running`` jobs at once; the
rest wait in QUEUED). A job's work is a callable given to the runner
(``execute(job, result_file) -> JobOutcome``), one per service whose jobs it
runs (TAP's queries, SODA's cutouts; picked by the job's ``service``), so the
runner knows nothing of ADQL, cutouts or output formats. Results are written
to a temporary file beside their final name and renamed when complete: a
result file that exists is whole.

Deadlines: a job still executing after its ``execution_duration`` is
cancelled on the workers and ends ABORTED with a message saying why. Jobs
past their destruction time are deleted with their files by a reaper thread.
A restart of the service finds jobs that were QUEUED or EXECUTING with no
thread behind them any more; :meth:`JobRunner.recover` turns them into ERROR
with a message, so no client waits forever on a job nobody runs.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qcat.errors import QcatError
from services.tap.uws.jobs import (
    ABORTED,
    ACTIVE,
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

log = logging.getLogger("qcat.uws")


@dataclass(frozen=True)
class ResultFile:
    """A further result a job wrote beside its first one (same directory)."""

    result_id: str
    file_name: str
    mime_type: str


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job produced (its result files are already written)."""

    mime_type: str
    rows: int
    overflow: bool
    #: Results after the first (``result``), in order.
    more: tuple[ResultFile, ...] = ()


#: ``execute(job, path)``: run the job, write its result to ``path``.
Execute = Callable[[Job, Path], JobOutcome]
#: ``cancel(job_id)``: stop the job's work on the workers.
Cancel = Callable[[str], None]


class JobRunner:
    """Executes jobs of a :class:`JobStore` and keeps their phases true."""

    def __init__(
        self,
        jobs: JobStore,
        jobs_dir: Path,
        execute: Execute,
        cancel: Cancel,
        *,
        max_running: int = 2,
        reap_interval_s: float = 60.0,
        executors: dict[str, tuple[Execute, Cancel]] | None = None,
    ) -> None:
        """``execute``/``cancel`` serve TAP jobs; ``executors`` other services' by name."""
        self.jobs = jobs
        self.jobs_dir = Path(jobs_dir)
        self._executors = {"tap": (execute, cancel), **(executors or {})}
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="qcat-uws")
        self._changed = threading.Condition()
        self._timers: dict[str, threading.Timer] = {}
        self._timed_out: set[str] = set()
        self._closed = threading.Event()
        self._reaper = threading.Thread(
            target=self._reap_loop, args=(reap_interval_s,), name="qcat-uws-reaper", daemon=True
        )
        self._reaper.start()

    # -- control ----------------------------------------------------------------

    def run(self, job_id: str) -> Job:
        """Queue a PENDING job (PHASE=RUN); a job already started is left as it is."""
        started, job = self.jobs.transition(job_id, [PENDING], phase=QUEUED)
        if started:
            self._notify()
            self._pool.submit(self._run, job_id)
        return job

    def abort(self, job_id: str) -> Job:
        """Abort a job that has not finished (PHASE=ABORT); a finished one stays as it is."""
        aborted, job = self.jobs.transition(
            job_id, [PENDING, *ACTIVE], phase=ABORTED, end_time=now()
        )
        if aborted:
            self._cancel_job(job)
            self._notify()
        return job

    def destroy(self, job_id: str) -> Job:
        """Abort if running, then delete the job and its files."""
        self.abort(job_id)
        job = self.jobs.delete(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self._notify()
        return job

    def wait(self, job_id: str, phase: str, timeout_s: float) -> Job:
        """Block until the job leaves ``phase`` or ``timeout_s`` passes (UWS WAIT)."""
        deadline = threading.Event()

        def expire() -> None:
            deadline.set()
            self._notify()

        timer = threading.Timer(timeout_s, expire)
        timer.start()
        try:
            with self._changed:
                while True:
                    job = self.jobs.get(job_id)
                    if job.phase != phase or deadline.is_set() or self._closed.is_set():
                        return job
                    self._changed.wait(timeout=1.0)
        finally:
            timer.cancel()

    def recover(self) -> int:
        """Turn jobs left QUEUED or EXECUTING by a previous run into ERROR; how many."""
        count = 0
        for job in self.jobs.find(phases=ACTIVE):
            failed, _ = self.jobs.transition(
                job.job_id,
                ACTIVE,
                phase=ERROR,
                end_time=now(),
                error_type="transient",
                error_message="the service restarted while this job was running; submit it again",
            )
            count += failed
            shutil.rmtree(self.job_dir(job.job_id) / "partial", ignore_errors=True)
        return count

    def reap(self) -> int:
        """Destroy every job past its destruction time; how many."""
        count = 0
        for job in self.jobs.expired(now()):
            with contextlib.suppress(JobNotFound):
                self.destroy(job.job_id)
                count += 1
        return count

    def close(self) -> None:
        """Stop running jobs (they end in ERROR at the next start) and the threads."""
        self._closed.set()
        for timer in list(self._timers.values()):
            timer.cancel()
        for job in self.jobs.find(phases=[EXECUTING]):
            self._cancel_job(job)
        self._notify()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def job_dir(self, job_id: str) -> Path:
        """Where the job's files live."""
        return self.jobs_dir / job_id

    # -- execution --------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        if self._closed.is_set():
            return
        started, job = self.jobs.transition(job_id, [QUEUED], phase=EXECUTING, start_time=now())
        if not started:  # aborted or destroyed while queued
            return
        self._notify()
        timer = threading.Timer(job.execution_duration, self._time_out, args=(job_id,))
        timer.daemon = True
        self._timers[job_id] = timer
        timer.start()
        partial = self.job_dir(job_id) / "partial"
        try:
            partial.mkdir(parents=True, exist_ok=True)
            outcome = self._executor(job)[0](job, partial / "result")
            final = self.job_dir(job_id) / "result"
            (partial / "result").replace(final)
            more = [self._keep(job_id, partial, extra) for extra in outcome.more]
            self.jobs.transition(
                job_id,
                [EXECUTING],
                phase=COMPLETED,
                end_time=now(),
                result_path=str(final.relative_to(self.jobs_dir)),
                result_mime=outcome.mime_type,
                result_size=final.stat().st_size,
                result_rows=outcome.rows,
                result_overflow=outcome.overflow,
                more_results=more or None,
            )
        except BaseException as e:  # the job's failure is reported in the job, not raised
            if job_id in self._timed_out:
                phase = ABORTED
                message = (
                    f"the job was aborted: it ran longer than its execution duration of "
                    f"{job.execution_duration} s"
                )
            else:
                phase = ERROR
                message = str(e) if isinstance(e, QcatError) else f"{type(e).__name__}: {e}"
                if not isinstance(e, QcatError):
                    log.exception("job %s failed", job_id)
            self.jobs.transition(
                job_id,
                [EXECUTING],
                phase=phase,
                end_time=now(),
                error_type="fatal",
                error_message=message,
            )
        finally:
            timer.cancel()
            self._timers.pop(job_id, None)
            self._timed_out.discard(job_id)
            shutil.rmtree(partial, ignore_errors=True)
            self._notify()

    def _keep(self, job_id: str, partial: Path, extra: ResultFile) -> dict[str, object]:
        """Move a further result to the job's directory; its ``more_results`` entry."""
        final = self.job_dir(job_id) / extra.file_name
        (partial / extra.file_name).replace(final)
        return {
            "id": extra.result_id,
            "path": str(final.relative_to(self.jobs_dir)),
            "mime": extra.mime_type,
            "size": final.stat().st_size,
        }

    def _executor(self, job: Job) -> tuple[Execute, Cancel]:
        try:
            return self._executors[job.service]
        except KeyError:
            raise QcatError(f"this service does not run {job.service!r} jobs") from None

    def _cancel_job(self, job: Job) -> None:
        with contextlib.suppress(QcatError):
            self._executor(job)[1](job.job_id)

    def _time_out(self, job_id: str) -> None:
        self._timed_out.add(job_id)
        with contextlib.suppress(JobNotFound):
            self._cancel_job(self.jobs.get(job_id))

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _reap_loop(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            try:
                self.reap()
            except Exception:  # keep reaping later; a database hiccup is not fatal
                log.exception("reaping expired jobs failed")
