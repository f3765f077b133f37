"""The running service: query engine, workers, settings, query log and admission control.

One :class:`Service` backs one Starlette app (``services.app.create_app``).
``Service.start`` is the embedded deployment (``qcat serve``): it starts local
worker processes and a :class:`~qcat.czar.engine.QueryEngine` over them;
``Service(...)`` wraps an engine whose workers run elsewhere. Closing the
service closes the engine and stops the workers it started.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.errors import ConfigError
from qcat.metadata.store import MetadataStore
from qcat.tap_schema import refresh_tap_schema
from qcat.worker.client import WorkerClient
from qcat.worker.errors import WorkerError
from qcat.worker.pool import LocalWorkers
from services.limits import QueryLimiter
from services.querylog import QueryLog
from services.settings import ServiceSettings
from services.sia.image_index import ImageIndex
from services.sia.soda_jobs import SODA_JOBS, soda_executor
from services.tap.async_query import job_executor
from services.tap.uws.jobs import JobStore
from services.tap.uws.runner import JobRunner
from services.turns import Turns

#: Directory (in the data directory) of the asynchronous jobs' result files.
JOBS_DIR = "jobs"
HEALTH_TIMEOUT_S = 2.0  # a worker that does not answer health within this is "down"


@dataclass(frozen=True)
class WorkerHealth:
    """One worker's answer to ``health`` (or why it gave none)."""

    location: str
    alive: bool
    pid: int | None = None
    running_tasks: int | None = None
    error: str | None = None


class Service:
    """Everything a request handler needs; thread-safe."""

    def __init__(
        self,
        data_dir: Path,
        engine: QueryEngine,
        settings: ServiceSettings,
        *,
        workers: LocalWorkers | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.engine = engine
        self.settings = settings
        self.workers = workers
        self.started_at = datetime.now(UTC)
        self.query_log = QueryLog(self.data_dir)
        self.limiter = QueryLimiter(settings.tap_client_queries, settings.tap_max_queries)
        self.metadata = MetadataStore.for_data_dir(self.data_dir)
        #: Images by ID for SODA and DataLink (the current ivoa.ObsCore, without the engine).
        self.images = ImageIndex(self.data_dir, store=self.metadata)
        all_jobs = JobStore(self.metadata)
        #: TAP's asynchronous jobs (``uws_jobs(name)`` for any service's).
        self.jobs = all_jobs.for_service("tap")
        self._uws_jobs = {"tap": self.jobs, SODA_JOBS: all_jobs.for_service(SODA_JOBS)}
        self.runner = JobRunner(
            all_jobs,
            self.data_dir / JOBS_DIR,
            job_executor(engine, settings, self.query_log, self.data_dir / JOBS_DIR),
            engine.cancel,
            max_running=settings.tap_async_running,
            executors={SODA_JOBS: (soda_executor(self.images), _no_cancel)},
        )
        # Jobs a previous run of the service left running have nobody behind them now.
        self.runner.recover()
        self._health_clients = {
            loc: WorkerClient(loc, timeout=HEALTH_TIMEOUT_S) for loc in engine.dispatcher.locations
        }
        self._closed = threading.Event()
        #: Large byte answers (cutouts, files) take turns at the CPU, earliest first.
        self.large_answers = Turns(settings.large_answer_turns, settings.large_answer_patience_s)

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        workers: int,
        worker_memory_limit: str,
        settings: ServiceSettings | None = None,
    ) -> Service:
        """Start ``workers`` local worker processes and a query engine over ``data_dir``.

        TAP_SCHEMA is brought up to date first (``qcat.tap_schema``), so it
        describes exactly the tables being served. Call it from a thread that
        lives as long as the service (the workers are tied to it, see
        :class:`~qcat.worker.pool.LocalWorkers`).
        """
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise ConfigError(
                f"{data_dir}: no such data directory; ingest a table into it "
                "(qcat ingest) or run qcat demo"
            )
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        settings = settings or ServiceSettings.defaults()
        refresh_tap_schema(data_dir)
        pool = LocalWorkers(
            data_dir,
            workers,
            memory_limit=worker_memory_limit,
            setup_sql_module=WORKER_SETUP_MODULE,
        )
        try:
            engine = QueryEngine(
                data_dir,
                pool.locations,
                timeout_s=settings.tap_sync_timeout_s,
                memory_limit=settings.serve_czar_memory_limit,
            )
            engine.warm_up()  # the first user query need not pay for one-time imports
        except BaseException:
            pool.stop()
            raise
        return cls(data_dir, engine, settings, workers=pool)

    def uws_jobs(self, service: str) -> JobStore:
        """The UWS jobs of ``service`` (``tap``, ``soda``) only."""
        return self._uws_jobs[service]

    def worker_health(self) -> list[WorkerHealth]:
        """Ask every worker for its health, in parallel (blocking; run it in a thread)."""
        clients = list(self._health_clients.values())
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(clients))) as pool:
            return list(pool.map(_health, clients))

    def close(self) -> None:
        """Close the engine and the log, stop the workers this service started (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        for client in self._health_clients.values():
            client.close()
        try:
            self.runner.close()
            self.engine.close()
        finally:
            self.metadata.close()
            self.query_log.close()
            if self.workers is not None:
                self.workers.stop()

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _no_cancel(job_id: str) -> None:
    """Cutout jobs hold no remote work to cancel; the runner's deadline suffices."""


def _health(client: WorkerClient) -> WorkerHealth:
    try:
        answer = client.health()
    except WorkerError as e:
        return WorkerHealth(client.location, False, error=str(e))
    pid = running = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        pid = int(answer["pid"])
        running = int(answer["running_tasks"])
    return WorkerHealth(client.location, answer.get("status") == "ok", pid, running)
