"""What an asynchronous TAP job does when it runs: the query, written to its result file.

The same parameter checks as ``/sync`` apply (they run when the job starts,
so a job with a bad parameter ends in ERROR with the message, as UWS
expects); the result is encoded by the same writers, into a file instead of
a response.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from qcat.czar.engine import QueryEngine
from qcat.czar.uploads import UploadTable
from qcat.errors import QcatError
from services.querylog import QueryLog, QueryLogEntry
from services.settings import ServiceSettings
from services.tap.errors import error_message, error_status
from services.tap.formats import ResultInfo, write_result
from services.tap.params import SyncQuery, sync_query, uploads_of
from services.tap.uws.jobs import Job
from services.tap.uws.runner import Execute, JobOutcome

ENDPOINT = "tap/async"


class JobFailed(QcatError):
    """A job's query failed; the message is what the client reads in the error summary."""


#: Directory (in a job's directory) holding the multipart parts its UPLOAD refers to.
UPLOAD_PARTS = "uploads"


def save_upload_parts(job_dir: Path, parts: dict[str, bytes]) -> None:
    """Keep a new job's uploaded parts until it runs (file names: the part names in hex)."""
    if not parts:
        return
    directory = job_dir / UPLOAD_PARTS
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in parts.items():
        (directory / name.encode().hex()).write_bytes(data)


#: File (in a job's directory) holding the service's base URL when the job was created.
BASE_URL_FILE = "base_url"


def save_base_url(job_dir: Path, base_url: str) -> None:
    """Keep the base URL the job was created under: its result's relative URLs use it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / BASE_URL_FILE).write_text(base_url, encoding="utf-8")


def saved_base_url(job_dir: Path) -> str | None:
    """The base URL saved by :func:`save_base_url` (``None`` for jobs from before it)."""
    try:
        return (job_dir / BASE_URL_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _saved_upload_parts(job_dir: Path) -> dict[str, bytes]:
    directory = job_dir / UPLOAD_PARTS
    if not directory.is_dir():
        return {}
    return {bytes.fromhex(p.name).decode(): p.read_bytes() for p in directory.iterdir()}


def job_executor(
    engine: QueryEngine, settings: ServiceSettings, log: QueryLog, jobs_dir: Path
) -> Execute:
    """The ``execute`` callable of the service's job runner (jobs live in ``jobs_dir``)."""

    def execute(job: Job, path: Path) -> JobOutcome:
        return _execute(engine, settings, log, job, path, jobs_dir / job.job_id)

    return execute


def _execute(
    engine: QueryEngine,
    settings: ServiceSettings,
    log: QueryLog,
    job: Job,
    path: Path,
    job_dir: Path,
) -> JobOutcome:
    t0 = time.monotonic()
    params = {name.upper(): value for name, value in job.parameters.items()}
    outcome: JobOutcome | None = None
    status, error = 200, None
    request = None
    try:
        request = sync_query(params, settings)
        uploads = uploads_of(request, _saved_upload_parts(job_dir), settings)
        outcome = _write_result(engine, request, job.job_id, path, uploads, saved_base_url(job_dir))
        return outcome
    except Exception as e:
        status, error = error_status(e), error_message(e, params.get("QUERY"))
        raise JobFailed(error) from None
    finally:
        log.record(
            QueryLogEntry(
                time=datetime.now(UTC).isoformat(timespec="milliseconds"),
                query_id=job.job_id,
                client=job.owner or "unknown",
                endpoint=ENDPOINT,
                lang=request.lang if request else params.get("LANG"),
                format=request.format.name if request else params.get("RESPONSEFORMAT"),
                maxrec=request.maxrec if request else None,
                query=params.get("QUERY"),
                status=status,
                outcome=_outcome(outcome, error),
                rows=outcome.rows if outcome else None,
                duration_s=round(time.monotonic() - t0, 6),
                error=error,
            )
        )


def _write_result(
    engine: QueryEngine,
    request: SyncQuery,
    job_id: str,
    path: Path,
    uploads: list[UploadTable],
    base_url: str | None = None,
) -> JobOutcome:
    result = engine.execute(request.query, query_id=job_id, uploads=uploads)
    counter = _RowCounter()
    try:
        reader = pa.RecordBatchReader.from_batches(
            result.reader.schema, counter.count(result.reader)
        )
        info = ResultInfo(query=request.query, query_id=job_id)
        with path.open("wb") as out:
            for piece in write_result(
                request.format,
                reader,
                result.columns,
                maxrec=request.maxrec,
                info=info,
                base_url=base_url,
            ):
                out.write(piece)
    finally:
        result.close()
    overflow = counter.rows > request.maxrec or request.maxrec == 0
    return JobOutcome(request.format.mime_type, min(counter.rows, request.maxrec), overflow)


def _outcome(outcome: JobOutcome | None, error: str | None) -> str:
    if error is not None or outcome is None:
        return "failed"
    return "overflow" if outcome.overflow else "completed"


class _RowCounter:
    """Counts the rows that pass through a stream of batches."""

    def __init__(self) -> None:
        self.rows = 0

    def count(self, batches: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.rows += batch.num_rows
            yield batch
