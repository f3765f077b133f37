"""Large answers take turns at the CPU, earliest request first.

Twenty users asking for a whole CCD (192 MiB each) at once share two cores.
Served side by side, every answer advances at a twentieth of the speed and
all of them finish together at the end; served in order of arrival, the first
finishes after a twentieth of that time, the tenth after half, and none later
than before. So a large answer produces and sends each group of blocks during
a *turn*: at most ``capacity`` answers hold one at a time, and a freed turn
goes to the waiting answer that arrived first.

What a turn must not do is wait for a slow network: a client that reads more
slowly than the server writes would hold its turn while its send waits, and
stop everybody else. A turn held longer than ``patience_s`` stops counting
against the capacity (the next waiter starts at once); its holder goes on
and takes a fresh turn for its next block like everyone else.

All of this runs on the event loop's thread, which is why nothing needs a lock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Protocol

import anyio


class Turns:
    """At most ``capacity`` turns at a time, granted by ticket (arrival) order."""

    def __init__(self, capacity: int, patience_s: float) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.patience_s = patience_s
        self._tickets = itertools.count()
        self._grants = itertools.count()
        #: Grants that count against the capacity.
        self._counted: set[int] = set()
        #: (ticket, order of waiting, future resolved with the grant).
        self._waiting: list[tuple[int, int, asyncio.Future[int]]] = []
        self._order = itertools.count()

    def ticket(self) -> int:
        """A place in the order of arrival: take one when the request arrives."""
        return next(self._tickets)

    @property
    def busy(self) -> int:
        """Turns counted against the capacity now."""
        return len(self._counted)

    @property
    def waiting(self) -> int:
        """Answers waiting for a turn now."""
        return sum(1 for *_, f in self._waiting if not f.done())

    @asynccontextmanager
    async def turn(self, ticket: int) -> AsyncIterator[None]:
        """Hold a turn for the body of the ``async with``."""
        grant = await self._acquire(ticket)
        timer = asyncio.get_running_loop().call_later(self.patience_s, self._let_go, grant)
        try:
            yield
        finally:
            timer.cancel()
            self._let_go(grant)

    async def _acquire(self, ticket: int) -> int:
        if len(self._counted) < self.capacity and not self._has_waiters():
            return self._grant()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (ticket, next(self._order), future))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._let_go(future.result())  # granted just as the waiter went away
            raise

    def _has_waiters(self) -> bool:
        while self._waiting and self._waiting[0][2].done():
            heapq.heappop(self._waiting)  # cancelled waiters
        return bool(self._waiting)

    def _grant(self) -> int:
        grant = next(self._grants)
        self._counted.add(grant)
        return grant

    def _let_go(self, grant: int) -> None:
        """``grant`` no longer counts (released, or held past patience): wake the next."""
        if grant not in self._counted:
            return
        self._counted.discard(grant)
        while len(self._counted) < self.capacity and self._has_waiters():
            _, _, future = heapq.heappop(self._waiting)
            future.set_result(self._grant())


class Blocks(Protocol):
    """An answer produced block by block (a cutout, a whole file)."""

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The bytes, in blocks."""
        ...

    def close(self) -> None:
        """Release what producing them holds."""
        ...


#: Bytes of blocks that are views on a file's mapping produced in one worker-thread
#: call: producing such a block costs nothing but reading its pages in, and one
#: thread hop per 1 MiB block cost more than sending it (a whole CCD, 20 users
#: in order: 0.72 s median with a hop per MiB, 0.52-0.65 s per 8 MiB).
GROUP_BYTES = 8 << 20


async def in_turns(answer: Blocks, turns: Turns, ticket: int) -> AsyncIterator[bytes | memoryview]:
    """The answer's blocks, produced (in a worker thread) and sent during turns of
    ``ticket``; ``answer`` is closed at the end, also when the client went away."""
    blocks = answer.chunks()
    try:
        while True:
            async with turns.turn(ticket):
                group = await anyio.to_thread.run_sync(_next_group, blocks)
                if not group:
                    return
                for block in group:
                    yield block
    finally:
        answer.close()


#: Bytes of copied blocks (not views) in one group: those hold memory until sent.
GROUP_COPIED_BYTES = 1 << 20


def _next_group(blocks: Iterator[bytes | memoryview]) -> list[bytes | memoryview]:
    """The next blocks: up to :data:`GROUP_BYTES` in all, of which at most about
    :data:`GROUP_COPIED_BYTES` copied (a cutout's narrow box, a header)."""
    group: list[bytes | memoryview] = []
    size = copied = 0
    for block in blocks:
        group.append(block)
        size += len(block)
        copied += 0 if isinstance(block, memoryview) else len(block)
        if size >= GROUP_BYTES or copied >= GROUP_COPIED_BYTES:
            break
    return group
