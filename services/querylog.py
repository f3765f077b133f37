"""The structured query log: one JSON object per TAP query.

Each entry goes to the Python logger ``qcat.queries`` (so an operator's logging
setup can ship it anywhere) and is appended as one line to
``<data>/logs/queries.jsonl``. Fields: ``time`` (UTC start, ISO 8601),
``query_id``, ``client`` (address), ``endpoint``, ``lang``, ``format``,
``maxrec``, ``query`` (the ADQL), ``status`` (HTTP), ``outcome`` (``completed``,
``overflow``, ``failed``, ``rejected``, ``disconnected``), ``rows`` (returned),
``duration_s`` and ``error`` (the message, or null).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

LOGGER_NAME = "qcat.queries"
LOG_FILE = Path("logs") / "queries.jsonl"

logger = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class QueryLogEntry:
    """Who ran what, when, for how long, and how it ended."""

    time: str
    query_id: str | None
    client: str
    endpoint: str
    lang: str | None
    format: str | None
    maxrec: int | None
    query: str | None
    status: int
    outcome: str
    rows: int | None
    duration_s: float
    error: str | None

    def to_json(self) -> str:
        """The entry as one line of JSON."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


class QueryLog:
    """Appends entries to ``<data_dir>/logs/queries.jsonl`` and the ``qcat.queries`` logger."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def record(self, entry: QueryLogEntry) -> None:
        """Write ``entry`` (thread-safe; one line, flushed at once)."""
        line = entry.to_json()
        logger.info(line)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        """Close the file; later entries only reach the logger."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
