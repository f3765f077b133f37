"""What travels between a worker and its clients besides tickets.

Actions (Flight DoAction) take and return JSON. Task errors travel as Flight
errors whose ``extra_info`` is JSON ``{"kind": ..., "message": ...}``, so the
client recovers the kind and a clean message (Flight's own message carries
gRPC debug text).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pyarrow.flight as flight

ACTIONS: dict[str, str] = {
    "cancel": 'Stop every task of a query; body {"query_id": ...}; returns {"stopped": N}.',
    "health": "Liveness and load: status, pid, running_tasks, rss_bytes, uptime_s.",
    "inventory": "Tables and chunks this worker can serve, from the metadata store.",
}

ErrorKind = Literal["task", "data", "denied", "cancelled", "timeout", "unavailable", "internal"]

_FLIGHT_ERRORS: dict[str, type[flight.FlightError]] = {
    "task": flight.FlightServerError,
    "data": flight.FlightServerError,
    "denied": flight.FlightUnauthorizedError,
    "cancelled": flight.FlightCancelledError,
    "timeout": flight.FlightTimedOutError,
    "unavailable": flight.FlightUnavailableError,
    "internal": flight.FlightInternalError,
}


def flight_error(kind: ErrorKind, message: str, *, reason: str | None = None) -> flight.FlightError:
    """A Flight error of the class matching ``kind``, carrying kind and message.

    ``reason`` is what a user may be shown of it (a data error's own words,
    without the worker, the task or the task's SQL); see :func:`error_reason`.
    """
    body = {"kind": kind, "message": message}
    if reason is not None:
        body["reason"] = reason
    return _FLIGHT_ERRORS[kind](message, extra_info=json.dumps(body).encode())


def decode_error(error: flight.FlightError) -> tuple[str | None, str]:
    """The (kind, message) a worker put into ``error``; kind ``None`` if it did not.

    For errors that did not come from a worker's own code (connection
    refused, a dead worker), the message is Flight's, trimmed of gRPC detail.
    """
    info: Any = getattr(error, "extra_info", b"") or b""
    try:
        body = json.loads(info) if info else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        kind = body.get("kind")
        return (kind if isinstance(kind, str) else None), body["message"]
    text = str(error)
    for marker in (". Detail:", ". gRPC client debug context:"):
        text = text.split(marker, 1)[0]
    return None, text.strip()


def error_reason(error: flight.FlightError) -> str | None:
    """The ``reason`` a worker put into ``error`` (see :func:`flight_error`), if any."""
    try:
        body = json.loads(getattr(error, "extra_info", b"") or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else None


def to_json(value: Any) -> bytes:
    """An action result body."""
    return json.dumps(value, separators=(",", ":")).encode()
