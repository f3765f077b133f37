"""Admission control: how many queries run at once, per client and in total.

A query that would exceed either limit is refused at once (HTTP 503 with a
DALI error) rather than queued: a synchronous client is waiting on the line,
and refusing tells it to come back instead of holding a connection open.
"""

from __future__ import annotations

import threading
from collections import Counter

from qcat.errors import QcatError


class Overloaded(QcatError):
    """The service is running as many queries as it allows; try again later."""


class QuerySlot:
    """One admitted query; :meth:`release` (idempotent) gives the place back."""

    def __init__(self, limiter: QueryLimiter, client: str) -> None:
        self._limiter = limiter
        self.client = client
        self._released = False

    def release(self) -> None:
        """Give the place back (once; later calls do nothing)."""
        if not self._released:
            self._released = True
            self._limiter._release(self.client)


class QueryLimiter:
    """At most ``per_client`` running queries per client address, ``total`` over all."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()

    def acquire(self, client: str) -> QuerySlot:
        """Admit one query of ``client``, or raise :class:`Overloaded` naming the limit."""
        with self._lock:
            if self._running[client] >= self.per_client:
                raise Overloaded(
                    f"client {client} already runs {self._running[client]} queries "
                    f"(limit tap_client_queries={self.per_client}); wait for one to finish"
                )
            if sum(self._running.values()) >= self.total:
                raise Overloaded(
                    f"the service already runs {self.total} queries "
                    f"(limit tap_max_queries={self.total}); try again shortly"
                )
            self._running[client] += 1
        return QuerySlot(self, client)

    def running(self, client: str | None = None) -> int:
        """Queries running now, of ``client`` or of everyone."""
        with self._lock:
            return self._running[client] if client is not None else sum(self._running.values())

    def _release(self, client: str) -> None:
        with self._lock:
            self._running[client] -= 1
            if self._running[client] <= 0:
                del self._running[client]
