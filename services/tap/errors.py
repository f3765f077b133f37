"""DALI error documents with the HTTP status each kind of failure deserves.

| failure | status |
| --- | --- |
| bad parameter, unknown format, invalid ADQL, unknown name, unsupported query | 400 |
| unknown path under /tap | 404 |
| method not allowed | 405 |
| a worker does not answer, too many queries | 503 (with Retry-After) |
| anything else | 500, with the message but never a stack trace |
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from qcat.czar.adql import AdqlSyntaxError
from qcat.czar.errors import QueryError
from qcat.errors import QcatError
from qcat.worker.errors import WorkerUnavailable
from services.limits import Overloaded
from services.tap.formats import ResultInfo, UnknownFormat, error_document
from services.tap.params import ParameterError
from services.tap.upload import UploadError

#: DALI error documents are VOTables.
VOTABLE_MEDIA_TYPE = "application/x-votable+xml"
RETRY_AFTER_S = 5


class ServiceUnavailable(Exception):
    """Queries cannot run now (workers down); carries the message for the client."""


#: Failures caused by what the client sent.
_BAD_REQUEST = (ParameterError, UnknownFormat, AdqlSyntaxError, QueryError, UploadError)


def error_status(error: BaseException) -> int:
    """The HTTP status for ``error``."""
    if isinstance(
        error, ParameterError | UnknownFormat | AdqlSyntaxError | QueryError | UploadError
    ):
        return 400
    if isinstance(error, Overloaded | ServiceUnavailable | WorkerUnavailable):
        return 503
    return 500


def error_message(error: BaseException, query: str | None = None) -> str:
    """What the client is told: the error's own message (ADQL errors with the line quoted)."""
    if isinstance(error, AdqlSyntaxError) and query is not None:
        return f"{error}\n{error.excerpt(query)}"
    if isinstance(error, ServiceUnavailable | WorkerUnavailable):
        return f"the service cannot run queries now: {error}"
    if isinstance(error, QcatError):  # qcat's own errors are written for the user
        return str(error)
    text = str(error).strip()
    return f"internal error ({type(error).__name__}){': ' + text if text else ''}"


def error_response(
    message: str,
    status: int,
    *,
    info: ResultInfo | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A DALI error VOTable with ``status`` (503 also says when to retry)."""
    extra = dict(headers or {})
    if status == 503:
        extra.setdefault("Retry-After", str(RETRY_AFTER_S))
    return Response(
        error_document(message, info=info or ResultInfo()),
        status_code=status,
        media_type=VOTABLE_MEDIA_TYPE,
        headers=extra,
    )
