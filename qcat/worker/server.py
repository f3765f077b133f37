"""The worker: an Arrow Flight server running chunk tasks on locked-down DuckDB.

DoGet takes a :class:`~qcat.worker.task.ChunkTask` ticket and streams the
result as DuckDB produces it: the record batches of DuckDB's
``RecordBatchReader`` go to the wire as they are (rows never become Python
objects), pulled lazily as the client reads. A small generator sits between
the two so that (a) the task is unregistered, its slot freed and its cursor
closed whenever the stream ends, fails or the client goes away, and (b) a
task stopped mid-stream ends with a typed Flight error (cancelled, timed out)
instead of an anonymous one with a Python traceback, which is what Flight
makes of an exception raised inside a plain ``RecordBatchStream``.

DoAction: ``cancel``, ``health``, ``inventory`` (see :data:`ACTIONS`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pyarrow as pa
import pyarrow.flight as flight

from qcat.errors import ConfigError, QcatError
from qcat.worker.cursors import CursorLease, IdleCursors
from qcat.worker.errors import TaskError
from qcat.worker.files import (
    NotInAttachedCatalog,
    resolve_task_files,
    servable_path,
    tables_root,
)
from qcat.worker.lockdown import check_single_select, open_locked_database
from qcat.worker.protocol import ACTIONS, flight_error, to_json
from qcat.worker.registry import TaskRegistry, TaskRun, TaskStopped
from qcat.worker.settings import default, duckdb_threads
from qcat.worker.task import ChunkTask

log = logging.getLogger("qcat.worker")

#: Spill directories are ``$TMPDIR/qcat-worker-<pid>-<random>``.
TEMP_PREFIX = "qcat-worker-"


class WorkerServer(flight.FlightServerBase):
    """One worker: serves chunk tasks over the Parquet files of ``data_dir``.

    Construction opens and locks down the DuckDB database (after running the
    trusted ``setup_sql``, e.g. macro definitions) and starts listening at
    ``location``; ``port`` is the bound port. :meth:`close` stops every task
    and shuts the server down.
    """

    def __init__(
        self,
        data_dir: Path,
        location: str = "grpc://127.0.0.1:0",
        *,
        memory_limit: str = str(default("worker_memory_limit")),
        threads: int = int(default("worker_threads")),
        temp_limit: str = str(default("worker_temp_limit")),
        max_tasks: int = int(default("worker_max_tasks")),
        setup_sql: Sequence[str] = (),
        batch_rows: int = int(default("worker_batch_rows")),
        cancelled_memory: int = int(default("worker_cancelled_memory")),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.memory_limit = memory_limit
        self.batch_rows = batch_rows
        _remove_stale_temp_dirs()
        self._temp_dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        self._open_locked = functools.partial(
            open_locked_database,
            tables_root(self.data_dir),
            memory_limit=memory_limit,
            threads=duckdb_threads(threads),
            temp_limit=temp_limit,
            setup_sql=tuple(setup_sql),
        )
        self._store: Any = None
        self._store_lock = threading.Lock()
        self._cursor_lock = threading.Lock()  # guards _con and _attached
        self._databases_opened = 0
        # Attached catalogs are learnt at the first task naming one (see _task_files):
        # reading the metadata store here would add a second to every worker's start.
        self._attached: tuple[Path, ...] = ()
        try:
            self._con = self._open_database(self._attached)
            self._cursors = IdleCursors(self._con)
        except duckdb.Error as e:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            raise ConfigError(f"worker DuckDB setup failed: {e}") from None
        self._tasks = TaskRegistry(max_tasks, cancelled_memory)
        self._started = time.monotonic()
        self._closed = False
        try:
            super().__init__(location)
        except BaseException:
            # Flight keeps a failed server object alive: let go of DuckDB now
            self._release()
            del self._con
            raise

    # -- DoGet: run one task -----------------------------------------------------

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> Any:
        """Run the task in ``ticket`` and stream its result."""
        try:
            task = ChunkTask.from_ticket(ticket.ticket)
        except TaskError as e:
            raise flight_error("task", str(e)) from None
        try:
            run = self._tasks.admit(task)
        except TaskStopped as e:
            raise _stopped_error(e.run) from None
        try:
            reader, lease = self._start(run)
        except BaseException as e:
            self._end(run)
            raise _task_error(run, e) from None
        return flight.GeneratorStream(reader.schema, self._stream(run, reader, lease))

    def _start(self, run: TaskRun) -> tuple[pa.RecordBatchReader, CursorLease]:
        task = run.task
        self._tasks.acquire_slot(run)
        files = self._task_files(task)
        with self._cursor_lock:
            cursors = self._cursors
        lease = cursors.take(files)  # an idle cursor already viewing these files, if any
        self._tasks.attach(run, lease.cursor)
        statement = check_single_select(lease.cursor, task.sql, run.where)
        lease.bind(files)
        self._tasks.check(run)
        reader = lease.cursor.sql(statement).to_arrow_reader(self.batch_rows)
        self._tasks.check(run)
        return reader, lease

    # -- attached catalogs -------------------------------------------------------------

    def _open_database(self, attached: tuple[Path, ...]) -> duckdb.DuckDBPyConnection:
        """A locked-down database reading ``tables/`` and the ``attached`` directories."""
        self._databases_opened += 1
        temp = self._temp_dir / f"db-{self._databases_opened}"  # spill files never shared
        temp.mkdir()
        return self._open_locked(temp_dir=temp, attached=attached)

    def _attached_dirs(self) -> tuple[Path, ...]:
        """The attached catalogs' directories, as the metadata store lists them now."""
        from qcat.metadata.store import METADATA_URL_ENV, SQLITE_FILE_NAME

        has_store = os.environ.get(METADATA_URL_ENV) or (self.data_dir / SQLITE_FILE_NAME).is_file()
        if not has_store:
            return ()  # a bare directory of tables: nothing attached, nothing to create
        return tuple(Path(d).resolve() for d in self._metadata().attached_dirs())

    def _task_files(self, task: ChunkTask) -> dict[str, list[Path]]:
        """The task's files, checked; a catalog attached since the worker started is
        learnt from the metadata store, and the database reopened to read it."""
        try:
            return resolve_task_files(self.data_dir, task, self._attached)
        except NotInAttachedCatalog:
            self._refresh_attached()  # perhaps done already by a concurrent task: look again
        return resolve_task_files(self.data_dir, task, self._attached)

    def _refresh_attached(self) -> None:
        """Re-read the attached catalogs; reopen the database if they changed.

        DuckDB's allowed directories cannot change once locked, so a new
        locked database replaces the old one for the tasks that start from
        now on; tasks running on the old one finish on it (it closes with
        their cursors).
        """
        with self._cursor_lock:
            attached = self._attached_dirs()
            if attached == self._attached:
                return
            try:
                con = self._open_database(attached)
            except duckdb.Error as e:
                raise TaskError(f"cannot open the attached catalogs {attached}: {e}") from None
            log.info("attached catalogs now %s: database reopened", [str(a) for a in attached])
            old = self._cursors
            self._con, self._attached, self._cursors = con, attached, IdleCursors(con)
        old.close()

    def _stream(
        self, run: TaskRun, reader: pa.RecordBatchReader, lease: CursorLease
    ) -> Iterator[pa.RecordBatch]:
        completed = False
        try:
            while True:
                self._tasks.check(run)
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    completed = True
                    return
                yield batch
        except GeneratorExit:  # the client went away: just clean up
            raise
        except BaseException as e:
            raise _task_error(run, e) from None
        finally:
            self._end(run, lease if completed else None)

    def _end(self, run: TaskRun, completed: CursorLease | None = None) -> None:
        """Unregister ``run``; its cursor is kept for the next task over the same files
        when the task ``completed`` and was never stopped, else closed."""
        self._tasks.finish(run)  # from here on nothing interrupts its cursor
        if completed is not None and run.stop_reason is None:
            completed.give_back()
        elif run.cursor is not None:
            run.cursor.close()

    # -- DoAction ------------------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        """The actions this worker understands."""
        return list(ACTIONS.items())

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Any:
        """Answer ``cancel``, ``health`` or ``inventory`` with one JSON result."""
        name = action.type
        try:
            if name == "cancel":
                result: Any = {"stopped": self.cancel(_query_id(action))}
            elif name == "health":
                result = self.health()
            elif name == "inventory":
                result = self.inventory()
            else:
                raise TaskError(f"unknown action {name!r}; known: {', '.join(ACTIONS)}")
        except QcatError as e:
            raise flight_error("task", f"action {name}: {e}") from None
        except Exception as e:
            log.exception("action %s failed", name)
            raise flight_error("internal", f"action {name}: {type(e).__name__}: {e}") from None
        return [flight.Result(to_json(result))]

    def cancel(self, query_id: str) -> int:
        """Stop every task of ``query_id`` (and refuse later ones); how many were stopped."""
        return self._tasks.cancel(query_id)

    def health(self) -> dict[str, Any]:
        """Liveness and load of this worker process."""
        return {
            "status": "ok",
            "pid": os.getpid(),
            "running_tasks": self._tasks.running(),
            "idle_cursors": self._cursors.idle(),
            "max_tasks": self._tasks.max_tasks,
            "rss_bytes": psutil.Process().memory_info().rss,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "memory_limit": self.memory_limit,
            "data_dir": str(self.data_dir),
        }

    def inventory(self) -> list[dict[str, Any]]:
        """The tables whose current version this worker can read, with their chunks.

        Tables without data are left out. Chunks are ``{"order", "pixel", "num_rows"}``.
        """
        store = self._metadata()
        attached = self._attached_dirs()
        out = []
        for table in store.tables():
            version = store.current_version(table.name)
            if version is None or not servable_path(version.path):
                continue
            parts = store.partitions(table.name)
            if not all(servable_path(p.path, attached) for p in parts):
                continue
            out.append(
                {
                    "table": table.name,
                    "kind": table.kind,
                    "version": version.version,
                    "num_rows": version.num_rows,
                    "path": version.path,
                    "margin_path": version.margin_path,
                    "chunks": [
                        {"order": p.order, "pixel": p.pixel, "num_rows": p.num_rows} for p in parts
                    ],
                }
            )
        return out

    def _metadata(self) -> Any:
        from qcat.metadata.store import MetadataStore

        with self._store_lock:
            if self._store is None:
                self._store = MetadataStore.for_data_dir(self.data_dir)
            return self._store

    # -- not offered -------------------------------------------------------------------

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        """Uploads are not supported by this worker yet."""
        raise flight_error("task", "DoPut is not supported by this worker")

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        """Not supported."""
        raise flight_error("task", "DoExchange is not supported by this worker")

    def get_flight_info(self, context: Any, descriptor: Any) -> Any:
        """Not supported: tickets are made by the czar, not discovered."""
        raise flight_error("task", "GetFlightInfo is not supported; send a chunk task ticket")

    def list_flights(self, context: Any, criteria: Any) -> Iterator[Any]:
        """No flights are listed: tickets are made by the czar."""
        return iter(())

    # -- shutdown --------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> bool:
        """Stop every task and stop serving; ``False`` if that took over ``timeout`` s.

        Stopped tasks end at once, but Flight only finishes a stream once its
        client reads the error; a client that stopped reading would hold the
        shutdown forever. After ``timeout`` seconds the server is left to
        finish in the background (the process is expected to exit) and DuckDB
        stays open for the streams still attached to it.
        """
        if self._closed:
            return True
        self._closed = True
        self._tasks.close()
        done = threading.Thread(target=self.shutdown, name="qcat-shutdown", daemon=True)
        done.start()
        done.join(timeout)
        if done.is_alive():
            log.warning("clients still hold streams after %.0f s; not waiting for them", timeout)
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            return False
        self._release()
        return True

    def _release(self) -> None:
        self._tasks.close()
        self._cursors.close()
        self._con.close()
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None
        shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> WorkerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_stale_temp_dirs() -> None:
    """Remove spill directories of workers that died without cleaning up (SIGKILL)."""
    for path in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = path.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _query_id(action: flight.Action) -> str:
    try:
        body = json.loads(action.body.to_pybytes()) if action.body is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("query_id"), str):
        raise TaskError('body must be JSON {"query_id": "..."}')
    query_id: str = body["query_id"]
    return query_id


def _stopped_error(run: TaskRun) -> flight.FlightError:
    reason = run.stop_reason
    if reason == "cancelled":
        return flight_error("cancelled", f"{run.where} was cancelled")
    if reason == "timeout":
        when = datetime.fromtimestamp(run.task.deadline, UTC).strftime("%H:%M:%S.%f")[:-3]
        late = time.time() - run.started
        return flight_error(
            "timeout",
            f"{run.where} exceeded its deadline ({when} UTC, {late:.2f} s after it arrived)",
        )
    return flight_error("unavailable", f"{run.where}: the worker is shutting down")


#: DuckDB errors caused by a value the query met, not by the worker or its SQL.
DATA_ERRORS = (duckdb.ConversionException, duckdb.OutOfRangeException)


def _task_error(run: TaskRun, e: BaseException) -> flight.FlightError:
    """The Flight error a client sees for exception ``e`` of task ``run``."""
    if run.stop_reason is not None:  # an interrupt shows up as whatever DuckDB raised
        return _stopped_error(run)
    if isinstance(e, flight.FlightError):
        return e
    if isinstance(e, TaskError):
        return flight_error("task", str(e))
    if isinstance(e, DATA_ERRORS):
        reason = _without_sql(_clean(e))
        return flight_error("data", f"{run.where}: {_clean(e)}", reason=reason)
    if isinstance(e, duckdb.PermissionException):
        return flight_error("denied", f"{run.where}: {_clean(e)}")
    if isinstance(e, duckdb.Error | pa.ArrowException | OSError):
        return flight_error("task", f"{run.where}: {_clean(e)}")
    log.error("%s failed", run.where, exc_info=e)
    return flight_error("internal", f"{run.where}: internal error {type(e).__name__}: {e}")


def _clean(e: BaseException) -> str:
    return str(e).strip()


def _without_sql(message: str) -> str:
    """DuckDB's message without the ``LINE n: ...`` excerpt of the task's SQL it may quote
    (SQL the czar wrote, which means nothing to the user who wrote the ADQL)."""
    return message.split("\nLINE ", 1)[0].strip()
