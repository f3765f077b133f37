"""SODA 1.0 / DataLink 1.1 error classes, each with its message prefix and HTTP status.

The message a client reads starts with the standard's error code
(``UsageError: CIRCLE needs 3 numbers ...``), as SODA 1.0 section 5.2 asks.
"""

from __future__ import annotations

from qcat.errors import QcatError


class SodaError(QcatError):
    """A SODA request that cannot be answered; ``str()`` is the client's message."""

    code = "Error"
    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.code}: {detail}")
        self.detail = detail


class UsageError(SodaError):
    """A parameter is malformed or out of range."""

    code = "UsageError"
    status = 400


class MultiValuedParamNotSupported(SodaError):
    """Several values of a parameter where this mode takes only one (sync)."""

    code = "MultiValuedParamNotSupported"
    status = 400


class NotFoundFault(SodaError):
    """The ID names no dataset of this service."""

    code = "NotFoundFault"
    status = 404


class NoOverlap(SodaError):
    """The cutout's constraints select nothing of the dataset."""

    code = "NoOverlap"
    status = 400
