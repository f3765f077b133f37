"""Local worker processes: start N ``qcat worker`` subprocesses and stop them.

Used by the embedded deployment (``qcat serve``, ``qcat demo``) and by tests.
Each worker prints its bound location as its first stdout line; the pool then
waits until it answers ``health``. Workers are started with ``--parent-pid``
so the kernel stops them if this process dies, even by SIGKILL.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from qcat.worker.client import WorkerClient
from qcat.worker.errors import WorkerError, WorkerUnavailable

LISTENING = "listening "
STDERR_LINES = 50  # how much of a worker's stderr a start-up error quotes


class LocalWorker:
    """One ``qcat worker`` subprocess; ``location`` is known once it started."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.location: str | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr."""
        return "".join(self._stderr).rstrip()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read_stdout(self) -> None:
        # later stdout lines are dropped, but read, so the worker never blocks on a full pipe
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def wait_location(self, deadline: float) -> str:
        """Read the ``listening grpc://...`` line, waiting until ``deadline``."""
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout, deadline)
        if line is None or not line.startswith(LISTENING):
            if line == "":  # end of output: the worker is exiting
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
            what = (
                f"exited with status {self.proc.returncode}"
                if self.proc.returncode is not None
                else "did not report its location in time"
                if line is None
                else f"printed {line.strip()!r} instead of its location"
            )
            raise WorkerUnavailable(f"worker pid {self.pid} {what}:\n{self.stderr_tail()}")
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.location = line[len(LISTENING) :].strip()
        return self.location


class LocalWorkers:
    """``n`` worker processes over ``data_dir``; a context manager.

    ``setup_sql_module`` is passed as ``--setup-module`` (a module with a
    ``SETUP_SQL`` list, run before each worker's lockdown). Start-up waits at
    most ``start_timeout`` seconds for every worker to answer ``health``.
    ``threads_per_worker`` is each worker's DuckDB thread count (0: one per
    core; a worker usually runs one task per query, spread over its threads).

    Linux delivers the parent-death signal when the *thread* that started a
    worker exits, so create the pool from a thread that lives as long as the
    workers should (the main thread, or the event loop's).
    """

    def __init__(
        self,
        data_dir: Path,
        n: int,
        *,
        memory_limit: str,
        threads_per_worker: int = 0,
        setup_sql_module: str | None = None,
        max_tasks: int | None = None,
        start_timeout: float = 60.0,
        stop_grace: float = 5.0,
    ) -> None:
        if n < 1:
            raise ValueError("need at least one worker")
        self.data_dir = Path(data_dir).resolve()
        self.stop_grace = stop_grace
        self.workers: list[LocalWorker] = []
        args = [
            sys.executable,
            "-m",
            "qcat",
            "worker",
            "--data",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--memory-limit",
            memory_limit,
            "--threads",
            str(threads_per_worker),
            "--parent-pid",
            str(os.getpid()),
        ]
        if setup_sql_module:
            args += ["--setup-module", setup_sql_module]
        if max_tasks is not None:
            args += ["--max-tasks", str(max_tasks)]
        try:
            for _ in range(n):
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    bufsize=1,
                )
                self.workers.append(LocalWorker(proc))
            deadline = time.monotonic() + start_timeout
            for w in self.workers:
                w.wait_location(deadline)
            for w in self.workers:
                _wait_healthy(w, deadline)
        except BaseException:
            self.stop()
            raise

    @property
    def locations(self) -> list[str]:
        """``grpc://host:port`` of every worker, in start order."""
        return [w.location for w in self.workers if w.location is not None]

    def stop(self) -> None:
        """SIGTERM every worker; SIGKILL those still alive after ``stop_grace`` seconds."""
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.terminate()
        deadline = time.monotonic() + self.stop_grace
        for w in self.workers:
            try:
                w.proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        for w in self.workers:
            for stream in (w.proc.stdout, w.proc.stderr):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _readline(stream: IO[str], deadline: float) -> str | None:
    """One line from a pipe, or ``None`` if none came before ``deadline``."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            return None
    return stream.readline()


def _wait_healthy(w: LocalWorker, deadline: float) -> None:
    assert w.location is not None
    with WorkerClient(w.location, timeout=2.0) as client:
        while True:
            try:
                if client.health().get("status") == "ok":
                    return
            except WorkerError:
                pass
            if w.proc.poll() is not None or time.monotonic() >= deadline:
                state = (
                    f"exited with status {w.proc.returncode}"
                    if w.proc.returncode is not None
                    else "does not answer health"
                )
                raise WorkerUnavailable(f"worker {w.location} {state}:\n{w.stderr_tail()}")
            time.sleep(0.05)
