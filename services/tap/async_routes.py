"""``/tap/async``: UWS 1.1 jobs over HTTP (TAP 1.1 section 2.3, UWS 1.1 section 2.2).

| resource | GET | POST |
| --- | --- | --- |
| ``/async`` | job list (PHASE, AFTER, LAST) | create a job; ``PHASE=RUN`` starts it |
| ``/async/{id}`` | job document (WAIT, PHASE) | ``ACTION=DELETE``, or PHASE etc. as below |
| ``/async/{id}/phase`` | phase | ``PHASE=RUN`` or ``PHASE=ABORT`` |
| ``/async/{id}/executionduration`` | seconds | ``EXECUTIONDURATION`` (while PENDING) |
| ``/async/{id}/destruction`` | ISO 8601 | ``DESTRUCTION`` |
| ``/async/{id}/error`` | DALI error VOTable | |
| ``/async/{id}/results``, ``.../results/result`` | results list, the result | |
| ``/async/{id}/parameters``, ``quote``, ``owner`` | as UWS says | parameters (while PENDING) |

``DELETE /async/{id}`` destroys the job. Every change answers 303 to the
job (or to the list, after a delete), as UWS prescribes.

The same resources serve other services' jobs (``/soda/async``): an
:class:`AsyncKind` names the service and says how its requests are read;
each service's routes see only its own jobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from qcat.errors import NotFoundError
from services.service import Service
from services.settings import ServiceSettings
from services.tap.async_query import save_base_url, save_upload_parts
from services.tap.errors import error_message, error_response
from services.tap.params import ParameterError, Params, read_params, read_request
from services.tap.sync import client_address
from services.tap.uws.documents import (
    job_document,
    job_list_document,
    parameters_document,
    results_document,
)
from services.tap.uws.jobs import (
    ACTIVE,
    FINAL,
    PENDING,
    PHASES,
    Job,
    JobNotFound,
    JobStore,
    now,
)
from services.tap.uws.runner import JobRunner
from services.urls import base_url

XML_MEDIA_TYPE = "text/xml"
#: Parameters that describe the job itself rather than its query.
_CONTROL = {"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "ACTION"}

Endpoint = Callable[[Request], Awaitable[Response]]
#: Reads a request's parameters (upper-case names) and, for a new job, its file parts.
ReadRequest = Callable[[Request, ServiceSettings], Awaitable[tuple[Params, dict[str, bytes]]]]


async def _read_tap(request: Request, settings: ServiceSettings) -> tuple[Params, dict[str, bytes]]:
    return await read_request(
        request,
        max_chars=settings.tap_max_query_chars,
        max_upload_bytes=settings.tap_upload_max_bytes,
    )


async def _read_tap_changes(
    request: Request, settings: ServiceSettings
) -> tuple[Params, dict[str, bytes]]:
    return await read_params(request, max_chars=settings.tap_max_query_chars), {}


@dataclass(frozen=True)
class AsyncKind:
    """One service's job list: its name (the jobs' ``service``) and how requests are read.

    ``read`` reads the request creating a job, ``read_changes`` one changing a job.
    """

    name: str
    read: ReadRequest
    read_changes: ReadRequest


TAP_JOBS = AsyncKind("tap", _read_tap, _read_tap_changes)
_KIND = "qcat.uws_kind"


class _ScopedRunner:
    """The service's runner, refusing jobs of other services (as if they did not exist)."""

    def __init__(self, runner: JobRunner, jobs: JobStore) -> None:
        self._runner = runner
        self._jobs = jobs
        self.jobs_dir: Path = runner.jobs_dir

    def run(self, job_id: str) -> Job:
        self._jobs.get(job_id)
        return self._runner.run(job_id)

    def abort(self, job_id: str) -> Job:
        self._jobs.get(job_id)
        return self._runner.abort(job_id)

    def destroy(self, job_id: str) -> Job:
        self._jobs.get(job_id)
        return self._runner.destroy(job_id)

    def wait(self, job_id: str, phase: str, timeout_s: float) -> Job:
        self._jobs.get(job_id)
        return self._runner.wait(job_id, phase, timeout_s)

    def job_dir(self, job_id: str) -> Path:
        return self._runner.job_dir(job_id)


class UwsContext:
    """What a job resource works with: one service's jobs, the runner, the settings."""

    def __init__(self, service: Service, kind: AsyncKind) -> None:
        self.kind = kind
        self.settings = service.settings
        self.jobs = service.uws_jobs(kind.name)
        self.runner = _ScopedRunner(service.runner, self.jobs)


def _context(request: Request) -> UwsContext:
    return UwsContext(request.app.state.service, request.scope[_KIND])


def async_routes(kind: AsyncKind = TAP_JOBS) -> list[BaseRoute]:
    """The routes of asynchronous jobs (below ``/tap``, or another service's mount)."""

    def _handled(endpoint: Endpoint) -> Endpoint:
        return _handled_for(endpoint, kind)

    job = "/async/{job_id}"
    return [
        Route("/async", _handled(list_or_create), methods=["GET", "POST", "HEAD"]),
        Route(job, _handled(job_resource), methods=["GET", "POST", "DELETE", "HEAD"]),
        Route(f"{job}/phase", _handled(phase_resource), methods=["GET", "POST", "HEAD"]),
        Route(
            f"{job}/executionduration",
            _handled(duration_resource),
            methods=["GET", "POST", "HEAD"],
        ),
        Route(
            f"{job}/destruction", _handled(destruction_resource), methods=["GET", "POST", "HEAD"]
        ),
        Route(f"{job}/error", _handled(error_resource), methods=["GET", "HEAD"]),
        Route(f"{job}/results", _handled(results_resource), methods=["GET", "HEAD"]),
        Route(f"{job}/results/{{result_id}}", _handled(result_resource), methods=["GET", "HEAD"]),
        Route(f"{job}/parameters", _handled(parameters_resource), methods=["GET", "POST", "HEAD"]),
        Route(f"{job}/quote", _handled(quote_resource), methods=["GET", "HEAD"]),
        Route(f"{job}/owner", _handled(owner_resource), methods=["GET", "HEAD"]),
    ]


def _handled_for(endpoint: Endpoint, kind: AsyncKind) -> Endpoint:
    """Turn the failures every job resource shares into DALI errors with their status."""

    async def handle(request: Request) -> Response:
        request.scope[_KIND] = kind
        try:
            return await endpoint(request)
        except JobNotFound as e:
            return error_response(str(e), 404)
        except (ParameterError, NotFoundError) as e:
            return error_response(error_message(e), 400)
        except ClientDisconnect:
            return Response(status_code=400)

    return handle


# -- the job list ------------------------------------------------------------------------


async def list_or_create(request: Request) -> Response:
    """GET: the job list; POST: a new job (303 to it)."""
    service = _context(request)
    if request.method == "POST":
        params, parts = await service.kind.read(request, service.settings)
        job = await anyio.to_thread.run_sync(
            _create, service, params, parts, client_address(request), base_url(request)
        )
        return _see(request, job.job_id)
    phases = _phases(request)
    after = _after(request)
    last = _last(request)
    jobs = await anyio.to_thread.run_sync(
        lambda: service.jobs.find(phases=phases, after=after, last=last)
    )
    return _xml(job_list_document(jobs, _list_url(request)))


def _create(
    service: UwsContext, params: Params, parts: dict[str, bytes], owner: str, base: str
) -> Job:
    settings = service.settings
    duration = _duration(params.get("EXECUTIONDURATION"), service)
    destruction = now() + timedelta(seconds=settings.tap_retention_s)
    if "DESTRUCTION" in params:
        destruction = _destruction(params["DESTRUCTION"], service)
    query_params = {name.lower(): value for name, value in params.items() if name not in _CONTROL}
    job = service.jobs.create(
        query_params,
        owner=owner,
        run_id=params.get("RUNID"),
        execution_duration=duration,
        destruction=destruction,
    )
    save_upload_parts(service.runner.job_dir(job.job_id), parts)
    # The result is written later, by the runner, with no request at hand.
    save_base_url(service.runner.job_dir(job.job_id), base)
    phase = params.get("PHASE")
    if phase is not None:
        if phase.upper() != "RUN":
            service.jobs.delete(job.job_id)
            raise ParameterError(f"PHASE={phase} cannot be given when creating a job; use RUN")
        job = service.runner.run(job.job_id)
    return job


# -- one job ----------------------------------------------------------------------------


async def job_resource(request: Request) -> Response:
    """GET: the job (blocking with WAIT); POST: ACTION=DELETE or job changes; DELETE."""
    service = _context(request)
    job_id = request.path_params["job_id"]
    if request.method == "DELETE":
        await anyio.to_thread.run_sync(service.runner.destroy, job_id)
        return RedirectResponse(_list_url(request), status_code=303)
    if request.method == "POST":
        params = await _params(request, service)
        action = params.get("ACTION")
        if action is not None:
            if action.upper() != "DELETE":
                raise ParameterError(f"ACTION={action} is not supported; use ACTION=DELETE")
            await anyio.to_thread.run_sync(service.runner.destroy, job_id)
            return RedirectResponse(_list_url(request), status_code=303)
        await anyio.to_thread.run_sync(_change, service, job_id, params)
        return _see(request, job_id)
    job = await anyio.to_thread.run_sync(service.jobs.get, job_id)
    wait = request.query_params.get("WAIT") or _param_ci(request, "WAIT")
    if wait is not None and job.phase in (PENDING, *ACTIVE):
        seen = _param_ci(request, "PHASE")
        if seen is None or seen.upper() == job.phase:
            timeout = _wait_seconds(wait, service)
            job = await anyio.to_thread.run_sync(service.runner.wait, job_id, job.phase, timeout)
    return _xml(job_document(job, _list_url(request)))


def _change(service: UwsContext, job_id: str, params: Params) -> None:
    """Apply PHASE, EXECUTIONDURATION, DESTRUCTION and query parameters posted to a job."""
    job = service.jobs.get(job_id)
    if "EXECUTIONDURATION" in params:
        _set_duration(service, job, params["EXECUTIONDURATION"])
    if "DESTRUCTION" in params:
        service.jobs.transition(
            job_id, PHASES, destruction=_destruction(params["DESTRUCTION"], service)
        )
    query_params = {k.lower(): v for k, v in params.items() if k not in _CONTROL}
    if query_params:
        _set_parameters(service, job_id, query_params)
    if "PHASE" in params:
        _set_phase(service, job_id, params["PHASE"])


async def phase_resource(request: Request) -> Response:
    """GET: the phase as text; POST: PHASE=RUN or PHASE=ABORT."""
    service = _context(request)
    job_id = request.path_params["job_id"]
    if request.method == "POST":
        phase = await _posted(request, service, "PHASE", "POST PHASE=RUN or PHASE=ABORT")
        await anyio.to_thread.run_sync(_set_phase, service, job_id, phase)
        return _see(request, job_id)
    job = await anyio.to_thread.run_sync(service.jobs.get, job_id)
    return PlainTextResponse(job.phase)


def _set_phase(service: UwsContext, job_id: str, phase: str) -> None:
    wanted = phase.strip().upper()
    job = service.jobs.get(job_id)
    if wanted == "RUN":
        if job.phase in FINAL:
            raise ParameterError(
                f"job {job_id} is {job.phase}; a finished job cannot run again (create a new one)"
            )
        service.runner.run(job_id)
    elif wanted == "ABORT":
        if job.phase in FINAL:
            raise ParameterError(f"job {job_id} is already {job.phase}; there is nothing to abort")
        service.runner.abort(job_id)
    else:
        raise ParameterError(f"PHASE={phase} is not supported; use PHASE=RUN or PHASE=ABORT")


async def duration_resource(request: Request) -> Response:
    """GET: the execution duration in seconds; POST: EXECUTIONDURATION (while PENDING)."""
    service = _context(request)
    job_id = request.path_params["job_id"]
    if request.method == "POST":
        seconds = await _posted(request, service, "EXECUTIONDURATION", "give it in seconds")
        job = await anyio.to_thread.run_sync(service.jobs.get, job_id)
        await anyio.to_thread.run_sync(_set_duration, service, job, seconds)
        return _see(request, job_id)
    job = await anyio.to_thread.run_sync(service.jobs.get, job_id)
    return PlainTextResponse(str(job.execution_duration))


def _set_duration(service: UwsContext, job: Job, value: str) -> None:
    changed, now_job = service.jobs.transition(
        job.job_id, [PENDING], execution_duration=_duration(value, service)
    )
    if not changed:
        raise ParameterError(
            f"job {job.job_id} is {now_job.phase}; EXECUTIONDURATION can only change while "
            "it is PENDING"
        )


async def destruction_resource(request: Request) -> Response:
    """GET: the destruction time; POST: DESTRUCTION (ISO 8601, at most the retention period)."""
    service = _context(request)
    job_id = request.path_params["job_id"]
    if request.method == "POST":
        value = await _posted(request, service, "DESTRUCTION", "give an ISO 8601 time")
        when = _destruction(value, service)
        await anyio.to_thread.run_sync(
            lambda: service.jobs.transition(job_id, PHASES, destruction=when)
        )
        return _see(request, job_id)
    job = await anyio.to_thread.run_sync(service.jobs.get, job_id)
    return PlainTextResponse(_iso(job.destruction))


async def error_resource(request: Request) -> Response:
    """The job's error as a DALI error document (404 while it has none)."""
    service = _context(request)
    job = await anyio.to_thread.run_sync(service.jobs.get, request.path_params["job_id"])
    if job.error_message is None:
        return error_response(f"job {job.job_id} ({job.phase}) has no error", 404)
    return error_response(job.error_message, 200)


async def results_resource(request: Request) -> Response:
    """The ``uws:results`` list."""
    service = _context(request)
    job = await anyio.to_thread.run_sync(service.jobs.get, request.path_params["job_id"])
    return _xml(results_document(job, _list_url(request)))


async def result_resource(request: Request) -> Response:
    """A result file of a completed job, with its format's media type."""
    service = _context(request)
    job = await anyio.to_thread.run_sync(service.jobs.get, request.path_params["job_id"])
    if job.result_path is None:
        return error_response(
            f"job {job.job_id} is {job.phase}; it has a result only once COMPLETED", 404
        )
    result_id = request.path_params["result_id"]
    if result_id == "result":
        return FileResponse(service.runner.jobs_dir / job.result_path, media_type=job.result_mime)
    for more in job.more_results or []:
        if more["id"] == result_id:
            return FileResponse(service.runner.jobs_dir / more["path"], media_type=more["mime"])
    return error_response(f"job {job.job_id} has no result {result_id!r}", 404)


async def parameters_resource(request: Request) -> Response:
    """GET: the ``uws:parameters``; POST: change query parameters (while PENDING)."""
    service = _context(request)
    job_id = request.path_params["job_id"]
    if request.method == "POST":
        params = await _params(request, service)
        await anyio.to_thread.run_sync(_change, service, job_id, params)
        return _see(request, job_id)
    job = await anyio.to_thread.run_sync(service.jobs.get, job_id)
    return _xml(parameters_document(job))


def _set_parameters(service: UwsContext, job_id: str, new: dict[str, str]) -> None:
    job = service.jobs.get(job_id)
    changed, now_job = service.jobs.transition(
        job_id, [PENDING], parameters={**job.parameters, **new}
    )
    if not changed:
        raise ParameterError(
            f"job {job_id} is {now_job.phase}; its parameters can only change while it is PENDING"
        )


async def quote_resource(request: Request) -> Response:
    """No quote is estimated: an empty value (UWS allows "not known")."""
    service = _context(request)
    await anyio.to_thread.run_sync(service.jobs.get, request.path_params["job_id"])
    return PlainTextResponse("")


async def owner_resource(request: Request) -> Response:
    """Who created the job (the client address)."""
    service = _context(request)
    job = await anyio.to_thread.run_sync(service.jobs.get, request.path_params["job_id"])
    return PlainTextResponse(job.owner or "")


# -- parameters --------------------------------------------------------------------------


async def _params(request: Request, service: UwsContext) -> Params:
    params, _ = await service.kind.read_changes(request, service.settings)
    return params


async def _posted(request: Request, service: UwsContext, name: str, hint: str) -> str:
    """The one parameter a POST to a job's sub-resource must carry."""
    params = await _params(request, service)
    if name not in params:
        raise ParameterError(f"{name} is missing: {hint}")
    return params[name]


def _param_ci(request: Request, name: str) -> str | None:
    for key, value in request.query_params.multi_items():
        if key.upper() == name:
            return value
    return None


def _phases(request: Request) -> list[str]:
    phases = [v.upper() for k, v in request.query_params.multi_items() if k.upper() == "PHASE"]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ParameterError(
            f"PHASE={unknown[0]} is not a UWS phase; use one of {', '.join(PHASES)}"
        )
    return phases


def _after(request: Request) -> datetime | None:
    value = _param_ci(request, "AFTER")
    return None if value is None else _timestamp("AFTER", value)


def _last(request: Request) -> int | None:
    value = _param_ci(request, "LAST")
    if value is None:
        return None
    try:
        last = int(value)
    except ValueError:
        last = 0
    if last < 1:
        raise ParameterError(f"LAST must be a positive integer, not {value!r}")
    return last


def _duration(value: str | None, service: UwsContext) -> int:
    settings = service.settings
    if value is None:
        return min(settings.tap_execution_duration_s, settings.tap_execution_duration_max_s)
    try:
        seconds = int(value.strip())
    except ValueError:
        raise ParameterError(
            f"EXECUTIONDURATION must be a whole number of seconds, not {value!r}"
        ) from None
    if seconds < 0:
        raise ParameterError(f"EXECUTIONDURATION must not be negative, not {value!r}")
    # 0 means "no limit" in UWS; this service always has one.
    if seconds == 0 or seconds > settings.tap_execution_duration_max_s:
        return settings.tap_execution_duration_max_s
    return seconds


def _destruction(value: str, service: UwsContext) -> datetime:
    when = _timestamp("DESTRUCTION", value)
    latest = now() + timedelta(seconds=service.settings.tap_retention_s)
    return min(when, latest)


def _timestamp(name: str, value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ParameterError(
            f"{name} must be an ISO 8601 time such as 2030-01-31T12:00:00Z, not {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def _wait_seconds(value: str, service: UwsContext) -> float:
    cap = service.settings.tap_wait_max_s
    try:
        seconds = float(value)
    except ValueError:
        raise ParameterError(f"WAIT must be a number of seconds, not {value!r}") from None
    if seconds < 0:  # -1: as long as the service allows
        return cap
    return min(seconds, cap)


# -- responses -----------------------------------------------------------------------------


def _list_url(request: Request) -> str:
    path = request.url.path
    base = path[: path.index("/async") + len("/async")]
    return str(request.url.replace(path=base, query=""))


def _see(request: Request, job_id: str) -> Response:
    return RedirectResponse(f"{_list_url(request)}/{job_id}", status_code=303)


def _xml(document: bytes) -> Response:
    return Response(document, media_type=XML_MEDIA_TYPE)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
