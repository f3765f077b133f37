"""UWS jobs kept in the metadata store, so they survive a restart of the service.

A job is a row of ``uws_job``, tagged with the service it belongs to
(``tap``, ``soda``): a :class:`JobStore` made for one service sees only that
service's jobs, one made for none (the runner's) sees all. Phase changes are compare-and-set updates
(:meth:`JobStore.transition`): two threads racing to move one job (the runner
finishing it while a client aborts it) cannot both win, and the loser learns
the phase the job actually has.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from qcat.errors import NotFoundError
from qcat.metadata.database import read_transaction, write_transaction
from qcat.metadata.store import MetadataStore
from qcat.metadata.tables import uws_job

PENDING = "PENDING"
QUEUED = "QUEUED"
EXECUTING = "EXECUTING"
COMPLETED = "COMPLETED"
ERROR = "ERROR"
ABORTED = "ABORTED"
UNKNOWN = "UNKNOWN"
HELD = "HELD"
SUSPENDED = "SUSPENDED"
ARCHIVED = "ARCHIVED"

#: Every phase UWS 1.1 defines (the PHASE filter of the job list accepts these).
PHASES = (
    PENDING,
    QUEUED,
    EXECUTING,
    COMPLETED,
    ERROR,
    ABORTED,
    UNKNOWN,
    HELD,
    SUSPENDED,
    ARCHIVED,
)
#: Phases of a job that is waiting for or using the workers.
ACTIVE = (QUEUED, EXECUTING)
#: Phases a job never leaves (except by being destroyed).
FINAL = (COMPLETED, ERROR, ABORTED, ARCHIVED)


class JobNotFound(NotFoundError):
    """No job has this id (it never existed or was destroyed)."""


@dataclass(frozen=True)
class Job:
    """One UWS job as stored."""

    job_id: str
    run_id: str | None
    owner: str | None
    phase: str
    parameters: dict[str, str]
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    execution_duration: int
    destruction: datetime
    error_type: str | None = None
    error_message: str | None = None
    result_path: str | None = None
    result_mime: str | None = None
    result_size: int | None = None
    result_rows: int | None = None
    result_overflow: bool | None = None
    service: str = "tap"
    #: Results after the first: ``[{"id", "path", "mime", "size"}]``.
    more_results: list[dict[str, Any]] | None = None


_FIELDS = tuple(f.name for f in fields(Job))


def now() -> datetime:
    """The current time, timezone-aware UTC (what every job timestamp uses)."""
    return datetime.now(UTC)


class JobStore:
    """Create, read, change and destroy jobs in the metadata database.

    ``service`` limits the store to that service's jobs (``None``: every job).
    """

    def __init__(self, store: MetadataStore, service: str | None = None) -> None:
        self._store = store
        self._engine = store.engine
        self.service = service

    def for_service(self, service: str) -> JobStore:
        """The same database seen through ``service``'s jobs only."""
        return JobStore(self._store, service)

    def _mine(self, query: Any) -> Any:
        return query if self.service is None else query.where(uws_job.c.service == self.service)

    def create(
        self,
        parameters: Mapping[str, str],
        *,
        owner: str | None,
        run_id: str | None,
        execution_duration: int,
        destruction: datetime,
    ) -> Job:
        """A new job of this store's service (TAP's without one) in phase PENDING."""
        job = Job(
            job_id=uuid.uuid4().hex,
            run_id=run_id,
            owner=owner,
            phase=PENDING,
            parameters=dict(parameters),
            creation_time=now(),
            start_time=None,
            end_time=None,
            execution_duration=execution_duration,
            destruction=destruction,
            service=self.service or "tap",
        )
        with write_transaction(self._engine) as conn:
            conn.execute(insert(uws_job).values(**_row(job)))
        return job

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; :class:`JobNotFound` when there is none."""
        with read_transaction(self._engine) as conn:
            row = conn.execute(
                self._mine(select(uws_job).where(uws_job.c.job_id == job_id))
            ).first()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}: it does not exist or was destroyed")
        return _job(row._mapping)

    def find(
        self,
        *,
        phases: Iterable[str] = (),
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[Job]:
        """Jobs filtered as UWS 1.1 job lists are (PHASE, AFTER, LAST).

        Without a PHASE filter, ARCHIVED jobs are left out. With LAST, the
        ``last`` most recently created jobs, newest first; otherwise oldest first.
        """
        query = self._mine(select(uws_job))
        wanted = list(phases)
        if wanted:
            query = query.where(uws_job.c.phase.in_(wanted))
        else:
            query = query.where(uws_job.c.phase != ARCHIVED)
        if after is not None:
            query = query.where(uws_job.c.creation_time > after)
        if last is not None:
            query = query.order_by(uws_job.c.creation_time.desc()).limit(last)
        else:
            query = query.order_by(uws_job.c.creation_time)
        with read_transaction(self._engine) as conn:
            return [_job(r._mapping) for r in conn.execute(query)]

    def transition(
        self, job_id: str, from_phases: Iterable[str], **changes: Any
    ) -> tuple[bool, Job]:
        """Apply ``changes`` if the job's phase is one of ``from_phases``.

        Returns whether it did and the job as it now is. Raises
        :class:`JobNotFound` for an unknown job.
        """
        allowed = list(from_phases)
        with write_transaction(self._engine) as conn:
            updated = conn.execute(
                self._mine(
                    update(uws_job).where(uws_job.c.job_id == job_id, uws_job.c.phase.in_(allowed))
                ).values(**changes)
            ).rowcount
        return updated == 1, self.get(job_id)

    def delete(self, job_id: str) -> Job:
        """Remove the job's row (its files are the caller's); the job as it was."""
        job = self.get(job_id)
        with write_transaction(self._engine) as conn:
            conn.execute(self._mine(delete(uws_job).where(uws_job.c.job_id == job_id)))
        return job

    def expired(self, at: datetime) -> list[Job]:
        """Jobs whose destruction time is at or before ``at``."""
        with read_transaction(self._engine) as conn:
            rows = conn.execute(self._mine(select(uws_job).where(uws_job.c.destruction <= at)))
            return [_job(r._mapping) for r in rows]


def _row(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in _FIELDS}


def _job(row: Any) -> Job:
    values = {name: row[name] for name in _FIELDS}
    for name in ("creation_time", "start_time", "end_time", "destruction"):
        # SQLite hands timestamps back without their zone; they were stored as UTC.
        value = values[name]
        if value is not None and value.tzinfo is None:
            values[name] = value.replace(tzinfo=UTC)
    return Job(**values)
