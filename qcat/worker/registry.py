"""The tasks a worker is running: admission, slots, cancel and deadlines.

Every task is registered from the moment its ticket is accepted until its
stream ends (or the client goes away). Stopping a task, by cancel or by its
deadline, records why and interrupts its DuckDB cursor; a watchdog thread
fires deadlines and repeats the interrupt every ``REINTERRUPT_S`` until the
task ends, because DuckDB forgets an interrupt that lands between two of the
task's statements (view creation, then the query).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Literal

import duckdb

from qcat.worker.task import ChunkTask

StopReason = Literal["cancelled", "timeout", "shutdown"]

REINTERRUPT_S = 0.1


class TaskStopped(Exception):
    """Raised inside the worker when a task was stopped; carries the reason."""

    def __init__(self, run: TaskRun) -> None:
        self.run = run
        super().__init__(run.stop_reason)


class TaskRun:
    """One registered task; its state is guarded by the registry's lock."""

    def __init__(self, task: ChunkTask) -> None:
        self.task = task
        self.started = time.time()
        self.cursor: duckdb.DuckDBPyConnection | None = None
        self.stop_reason: StopReason | None = None
        self.has_slot = False
        self.finished = False

    @property
    def where(self) -> str:
        """The task, as error messages name it."""
        return f"task {self.task.task_id} of query {self.task.query_id}"

    def _interrupt(self) -> None:
        if self.cursor is not None:
            self.cursor.interrupt()


class TaskRegistry:
    """Running tasks of one worker, at most ``max_tasks`` holding a slot at once."""

    def __init__(self, max_tasks: int, cancelled_memory: int = 10_000) -> None:
        if max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        self.max_tasks = max_tasks
        self._cancelled_memory = cancelled_memory
        self._cond = threading.Condition()
        self._runs: set[TaskRun] = set()
        self._slots_used = 0
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._closed = False
        self._watchdog = threading.Thread(target=self._watch, name="qcat-deadlines", daemon=True)
        self._watchdog.start()

    # -- life cycle of one task ----------------------------------------------

    def admit(self, task: ChunkTask) -> TaskRun:
        """Register ``task``; raise :class:`TaskStopped` if it is already dead."""
        run = TaskRun(task)
        with self._cond:
            if self._closed:
                run.stop_reason = "shutdown"
            elif task.query_id in self._cancelled:
                run.stop_reason = "cancelled"
            elif time.time() >= task.deadline:
                run.stop_reason = "timeout"
            if run.stop_reason is not None:
                raise TaskStopped(run)
            self._runs.add(run)
            self._cond.notify_all()  # the watchdog recomputes its next wake-up
        return run

    def acquire_slot(self, run: TaskRun) -> None:
        """Wait for one of the ``max_tasks`` slots; raise if stopped meanwhile."""
        with self._cond:
            while self._slots_used >= self.max_tasks and run.stop_reason is None:
                self._cond.wait()
            self._check(run)
            self._slots_used += 1
            run.has_slot = True

    def attach(self, run: TaskRun, cursor: duckdb.DuckDBPyConnection) -> None:
        """Give ``run`` its cursor, so stopping it interrupts DuckDB."""
        with self._cond:
            run.cursor = cursor
            self._check(run)

    def check(self, run: TaskRun) -> None:
        """Raise :class:`TaskStopped` if ``run`` was stopped."""
        with self._cond:
            self._check(run)

    def finish(self, run: TaskRun) -> None:
        """Unregister ``run`` and free its slot (idempotent)."""
        with self._cond:
            if run.finished:
                return
            run.finished = True
            self._runs.discard(run)
            if run.has_slot:
                run.has_slot = False
                self._slots_used -= 1
            self._cond.notify_all()

    # -- stopping --------------------------------------------------------------

    def cancel(self, query_id: str) -> int:
        """Stop every task of ``query_id`` and refuse its later ones; how many stopped."""
        with self._cond:
            self._cancelled[query_id] = None
            self._cancelled.move_to_end(query_id)
            while len(self._cancelled) > self._cancelled_memory:
                self._cancelled.popitem(last=False)
            stopped = [r for r in self._runs if r.task.query_id == query_id]
            for r in stopped:
                self._stop(r, "cancelled")
            self._cond.notify_all()
            return len(stopped)

    def close(self) -> None:
        """Stop every task and refuse new ones (worker shutdown)."""
        with self._cond:
            self._closed = True
            for r in self._runs:
                self._stop(r, "shutdown")
            self._cond.notify_all()

    def running(self) -> int:
        """How many tasks are registered (waiting for a slot, running or streaming)."""
        with self._cond:
            return len(self._runs)

    def _check(self, run: TaskRun) -> None:
        if run.stop_reason is not None:
            raise TaskStopped(run)

    def _stop(self, run: TaskRun, reason: StopReason) -> None:
        if run.stop_reason is None:
            run.stop_reason = reason
        run._interrupt()

    def _watch(self) -> None:
        """Fire deadlines; keep interrupting stopped tasks until they end."""
        with self._cond:
            while True:
                now = time.time()
                wait: float | None = None
                for r in self._runs:
                    if r.stop_reason is None and now >= r.task.deadline:
                        self._stop(r, "timeout")
                        self._cond.notify_all()  # wakes it if it waits for a slot
                    if r.stop_reason is not None:
                        r._interrupt()
                        wait = REINTERRUPT_S
                    else:
                        left = r.task.deadline - now
                        wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
