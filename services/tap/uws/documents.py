"""UWS 1.1 XML documents: a job, a job list, results, error summary.

The documents are built with the ``vo-models`` pydantic-xml models of the UWS
schema, so their structure follows the XSD rather than hand-written strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Optional

from vo_models.uws.models import (
    ErrorSummary,
    Jobs,
    JobSummary,
    MultiValuedParameter,
    Parameter,
    Parameters,
    ResultReference,
    Results,
    ShortJobDescription,
)
from vo_models.uws.types import ErrorType, ExecutionPhase

from services.tap.uws.jobs import Job

#: Job parameters shown in the job document (TAP 1.1 section 3 plus UWS's own).
TAP_PARAMETERS = ("lang", "query", "format", "responseformat", "maxrec", "upload", "request")


class TapParameters(Parameters):
    """The parameters of a TAP job, one optional ``uws:parameter`` each."""

    lang: Optional[Parameter] = None  # noqa: UP045 (pydantic-xml needs Optional)
    query: Optional[Parameter] = None  # noqa: UP045
    format: Optional[Parameter] = None  # noqa: UP045
    responseformat: Optional[Parameter] = None  # noqa: UP045
    maxrec: Optional[Parameter] = None  # noqa: UP045
    upload: Optional[Parameter] = None  # noqa: UP045
    request: Optional[Parameter] = None  # noqa: UP045


#: Job parameters shown in a SODA job's document (SODA 1.0 section 3.3); all may repeat.
SODA_PARAMETERS = ("id", "circle", "polygon", "pos", "band", "time", "pol")
#: How a job stores a repeated parameter: its values joined by this (never in a value).
VALUE_SEPARATOR = "\n"


class SodaParameters(Parameters):
    """The parameters of a SODA job, each repeated as often as it was given."""

    id: Optional[MultiValuedParameter] = None  # noqa: UP045
    circle: Optional[MultiValuedParameter] = None  # noqa: UP045
    polygon: Optional[MultiValuedParameter] = None  # noqa: UP045
    pos: Optional[MultiValuedParameter] = None  # noqa: UP045
    band: Optional[MultiValuedParameter] = None  # noqa: UP045
    time: Optional[MultiValuedParameter] = None  # noqa: UP045
    pol: Optional[MultiValuedParameter] = None  # noqa: UP045


def result_reference(job: Job, base_url: str) -> ResultReference:
    """The ``uws:result`` of a completed job (its one result is called ``result``)."""
    return ResultReference(
        id="result",
        href=f"{base_url}/{job.job_id}/results/result",
        size=job.result_size,
        mime_type=job.result_mime,
    )


def results_of(job: Job, base_url: str) -> Results:
    """The job's results list (empty unless it completed)."""
    if job.result_path is None:
        return Results()
    more = [
        ResultReference(
            id=r["id"],
            href=f"{base_url}/{job.job_id}/results/{r['id']}",
            size=r["size"],
            mime_type=r["mime"],
        )
        for r in job.more_results or []
    ]
    return Results(results=[result_reference(job, base_url), *more])


def error_summary(job: Job) -> ErrorSummary | None:
    """The job's error summary, if it failed or was aborted with a reason."""
    if job.error_message is None:
        return None
    kind = ErrorType.TRANSIENT if job.error_type == "transient" else ErrorType.FATAL
    return ErrorSummary(message=job.error_message, type=kind, has_detail=True)


def _parameters(job: Job) -> Parameters:
    if job.service == "soda":
        return SodaParameters(
            **{
                name: [
                    Parameter(id=name, value=v) for v in job.parameters[name].split(VALUE_SEPARATOR)
                ]
                for name in SODA_PARAMETERS
                if name in job.parameters
            }
        )
    return TapParameters(
        **{
            name: Parameter(id=name, value=job.parameters[name])
            for name in TAP_PARAMETERS
            if name in job.parameters
        }
    )


def parameters_document(job: Job) -> bytes:
    """The ``uws:parameters`` of ``job``."""
    return _xml(_parameters(job).to_xml(encoding="UTF-8"))


def job_document(job: Job, base_url: str) -> bytes:
    """The ``uws:job`` document of ``job``; ``base_url`` is the job list's URL."""
    parameters = _parameters(job)
    # The model's generic type must be the parameters' own class, or their fields are lost.
    summary = JobSummary[type(parameters)](  # type: ignore[misc,operator]
        job_id=job.job_id,
        run_id=job.run_id,
        owner_id=job.owner,
        phase=ExecutionPhase(job.phase),
        quote=None,
        creation_time=_utc(job.creation_time),
        start_time=_utc(job.start_time),
        end_time=_utc(job.end_time),
        execution_duration=job.execution_duration,
        destruction=_utc(job.destruction),
        parameters=parameters,
        results=results_of(job, base_url),
        error_summary=error_summary(job),
    )
    return _xml(summary.to_xml(encoding="UTF-8"))


def job_list_document(jobs: Sequence[Job], base_url: str) -> bytes:
    """The ``uws:jobs`` list with a ``jobref`` per job."""
    refs = [
        ShortJobDescription(
            job_id=job.job_id,
            href=f"{base_url}/{job.job_id}",
            phase=ExecutionPhase(job.phase),
            run_id=job.run_id,
            owner_id=job.owner,
            creation_time=_utc(job.creation_time),
        )
        for job in jobs
    ]
    return _xml(Jobs(jobref=refs).to_xml(encoding="UTF-8"))


def results_document(job: Job, base_url: str) -> bytes:
    """The ``uws:results`` document of ``job``."""
    return _xml(results_of(job, base_url).to_xml(encoding="UTF-8"))


def _utc(value: datetime | None) -> datetime | None:
    return value


def _xml(body: bytes | str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    if not data.startswith(b"<?xml"):
        data = b'<?xml version="1.0" encoding="UTF-8"?>\n' + data
    return data
