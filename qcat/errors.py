"""The qcat exception tree.

Every error a user can cause derives from :class:`QcatError` and carries a
message that names the file, row, column or parameter at fault. The CLI prints
the message and exits non-zero; it never shows a stack trace for these.
"""

from __future__ import annotations


class QcatError(Exception):
    """Base class of all errors qcat reports to its users."""


class ConfigError(QcatError):
    """A setting, option or data directory is unusable."""


class SchemaError(QcatError):
    """A Felis schema is invalid, or the input disagrees with it."""


class InputError(QcatError):
    """An input file is unreadable or holds bad values.

    ``path``, ``row`` (0-based data row) and ``column`` locate the problem when
    they are known; ``str(err)`` always includes them.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = path
        self.row = row
        self.column = column
        self.detail = message
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class IngestError(QcatError):
    """An ingest could not be completed; the published data is unchanged."""


class IntegrityError(QcatError):
    """Stored files do not match their recorded checksums or are missing."""


class NotFoundError(QcatError):
    """A named table, version or object does not exist."""
