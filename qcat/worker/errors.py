"""Errors of worker tasks, as the czar (or any client of a worker) sees them.

The client maps every Flight error a worker returns onto one of these, so
callers never handle ``pyarrow.flight`` exceptions. Every message names the
worker location and, for task errors, the task.
"""

from __future__ import annotations

from qcat.errors import QcatError


class WorkerError(QcatError):
    """Something went wrong on, or on the way to, a worker."""


class TaskError(WorkerError):
    """The worker refused or could not run a task.

    A malformed ticket, a relation file outside the tables directory, SQL that
    is not one SELECT statement, or a DuckDB error (syntax, binder, permission,
    out of memory) while running it.
    """


class TaskDataError(TaskError):
    """The task's SQL failed on a value of the data (a CAST that cannot convert, a number
    out of range): the user's query is at fault, not the worker.

    ``reason`` is DuckDB's own message, fit to show the user: it names no
    worker or task and quotes none of the task's SQL.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class TaskCancelled(WorkerError):
    """The task's query was cancelled (before or while it ran)."""


class TaskTimeout(WorkerError):
    """The task ran past its deadline and was stopped."""


class WorkerUnavailable(WorkerError):
    """The worker cannot be reached: not started, refused the connection, or died."""
