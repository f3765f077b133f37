"""Idle cursors of a worker's database, kept with the views of the task they ran.

Each task runs on a cursor of its own (a DuckDB connection to the worker's
one database) with a temporary view per relation naming the task's files.
Creating the view binds ``read_parquet`` to the files, about 0.9 ms for a
wide table, which is a tenth of a small cone's task. Tasks over the same
files (the same chunk, asked again by the next user) take an idle cursor
whose views name exactly those files and skip that step.

Only a cursor whose task ended normally comes back; one that was stopped,
failed or abandoned mid-stream is closed, so no interrupt, error or open
result crosses from one task to the next.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import duckdb

from qcat.worker.lockdown import bind_relations

#: The task's relations as a key: each name with its files, in a fixed order.
Relations = tuple[tuple[str, tuple[str, ...]], ...]

#: Idle cursors kept per worker; the least recently used go first.
IDLE_CURSORS = 32


def relations_key(relations: dict[str, list[Path]]) -> Relations:
    """``relations`` (name -> files) as a hashable key."""
    return tuple(sorted((name, tuple(map(str, files))) for name, files in relations.items()))


class CursorLease:
    """A task's cursor, and whether its views exist already."""

    def __init__(
        self, pool: IdleCursors, key: Relations, cursor: duckdb.DuckDBPyConnection, bound: bool
    ) -> None:
        self.pool = pool
        self.key = key
        self.cursor = cursor
        self.bound = bound

    def bind(self, relations: dict[str, list[Path]]) -> None:
        """Create the task's views unless the cursor has them."""
        if not self.bound:
            bind_relations(self.cursor, relations)
            self.bound = True

    def give_back(self) -> None:
        """Keep the cursor for the next task over the same files (its task ended
        normally); one whose views were never made is closed."""
        if self.bound:
            self.pool.give_back(self.key, self.cursor)
        else:
            self.cursor.close()


class IdleCursors:
    """Cursors of one database, idle, by the relations their views name."""

    def __init__(self, con: duckdb.DuckDBPyConnection, capacity: int = IDLE_CURSORS) -> None:
        self.con = con
        self.capacity = capacity
        self._lock = threading.Lock()
        self._idle: OrderedDict[Relations, list[duckdb.DuckDBPyConnection]] = OrderedDict()
        self._count = 0
        self._closed = False

    def take(self, relations: dict[str, list[Path]]) -> CursorLease:
        """A cursor for a task over ``relations``: an idle one with its views, or a new one."""
        key = relations_key(relations)
        with self._lock:
            stack = self._idle.get(key)
            if stack:
                cursor = stack.pop()
                self._count -= 1
                if not stack:
                    del self._idle[key]
                return CursorLease(self, key, cursor, bound=True)
            cursor = self.con.cursor()
        return CursorLease(self, key, cursor, bound=False)

    def give_back(self, key: Relations, cursor: duckdb.DuckDBPyConnection) -> None:
        """Keep ``cursor`` idle (closing the least recently used beyond the capacity)."""
        evicted: list[duckdb.DuckDBPyConnection] = []
        with self._lock:
            if self._closed:
                evicted.append(cursor)
            else:
                self._idle.setdefault(key, []).append(cursor)
                self._idle.move_to_end(key)
                self._count += 1
                while self._count > self.capacity:
                    oldest, stack = next(iter(self._idle.items()))
                    evicted.append(stack.pop(0))
                    self._count -= 1
                    if not stack:
                        del self._idle[oldest]
        for c in evicted:
            c.close()

    def idle(self) -> int:
        """How many cursors wait for a task."""
        with self._lock:
            return self._count

    def close(self) -> None:
        """Close every idle cursor; cursors given back later are closed too."""
        with self._lock:
            self._closed = True
            idle = [c for stack in self._idle.values() for c in stack]
            self._idle.clear()
            self._count = 0
        for c in idle:
            c.close()
