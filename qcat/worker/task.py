"""A chunk task: one SELECT statement over named sets of partition files.

The czar builds tasks and sends them to workers as Flight tickets (JSON);
the worker binds each relation to its files and runs the SQL. This module is
shared by both sides and depends on nothing heavier than the standard library.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from qcat.worker.errors import TaskError

#: A relation name the worker may bind as a temporary view.
RELATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_FIELDS = ("query_id", "task_id", "sql", "relations", "deadline")


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work for one worker.

    ``relations`` maps each relation name used in ``sql`` to its Parquet
    files, given relative to the data directory (``tables/...``), or
    absolute for the files of an attached HATS catalog. ``deadline``
    is an absolute ``time.time()``; the worker stops the task at that moment.
    Construction validates the shape (types, relation names, path syntax) and
    raises :class:`TaskError` naming the field at fault; whether the files
    exist is checked by the worker that holds them.
    """

    query_id: str
    task_id: str
    sql: str
    relations: dict[str, list[str]]
    deadline: float

    def __post_init__(self) -> None:
        for name in ("query_id", "task_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TaskError(f"task field {name!r} must be a non-empty string, got {value!r}")
        if not isinstance(self.sql, str) or not self.sql.strip():
            raise TaskError(f"task {self.task_id}: 'sql' must be a non-empty string")
        if isinstance(self.deadline, bool) or not isinstance(self.deadline, int | float):
            raise TaskError(f"task {self.task_id}: 'deadline' must be a number (time.time())")
        if not math.isfinite(self.deadline):
            raise TaskError(f"task {self.task_id}: 'deadline' must be finite")
        if not isinstance(self.relations, dict):
            raise TaskError(f"task {self.task_id}: 'relations' must map names to file lists")
        for name, files in self.relations.items():
            _check_relation(self.task_id, name, files)

    def to_ticket(self) -> bytes:
        """The task as a Flight ticket: compact UTF-8 JSON."""
        body = {
            "query_id": self.query_id,
            "task_id": self.task_id,
            "sql": self.sql,
            "relations": {k: list(v) for k, v in self.relations.items()},
            "deadline": float(self.deadline),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_ticket(cls, data: bytes) -> ChunkTask:
        """Decode and validate a ticket made by :meth:`to_ticket`.

        Raises :class:`TaskError` naming the problem (bad JSON, missing or
        unknown fields, wrong types, bad relation names or paths).
        """
        try:
            body: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TaskError(f"ticket is not a JSON chunk task: {e}") from None
        if not isinstance(body, dict):
            raise TaskError("ticket must be a JSON object")
        missing = [f for f in _FIELDS if f not in body]
        unknown = sorted(set(body) - set(_FIELDS))
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown {', '.join(unknown)}")
            raise TaskError(f"ticket fields: {'; '.join(parts)}")
        return cls(**{f: body[f] for f in _FIELDS})


def _check_relation(task_id: str, name: object, files: object) -> None:
    if not isinstance(name, str) or not RELATION_NAME.fullmatch(name):
        raise TaskError(
            f"task {task_id}: relation name {name!r} must match {RELATION_NAME.pattern}"
        )
    if not isinstance(files, list) or not files:
        raise TaskError(f"task {task_id}: relation {name!r} needs a non-empty list of files")
    for path in files:
        check_task_path(task_id, name, path)


def check_task_path(task_id: str, relation: str, path: object) -> PurePosixPath:
    """``path`` as a POSIX path without ``..`` that names a Parquet file.

    Relative paths are inside the data directory; absolute ones may only name
    files of an attached catalog, which the worker checks against its
    metadata. Raises :class:`TaskError` naming the task, relation and path.
    """
    where = f"task {task_id}: relation {relation!r}: file {path!r}"
    if not isinstance(path, str) or not path:
        raise TaskError(f"{where} must be a non-empty string")
    if "\\" in path or "\x00" in path:
        raise TaskError(f"{where} holds a backslash or NUL character")
    pure = PurePosixPath(path)
    if ".." in pure.parts:
        raise TaskError(f"{where} must not contain '..'")
    if pure.suffix != ".parquet":
        raise TaskError(f"{where} is not a .parquet file")
    return pure
