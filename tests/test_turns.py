"""Turns for large answers: capacity, order of arrival, patience, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from services.turns import Turns


def test_turns_go_in_order_of_arrival_not_of_asking() -> None:
    async def main() -> list[int]:
        turns = Turns(capacity=1, patience_s=60.0)
        tickets = [turns.ticket() for _ in range(5)]
        first_holds = asyncio.Event()
        release_first = asyncio.Event()
        order: list[int] = []

        async def answer(ticket: int) -> None:
            async with turns.turn(ticket):
                order.append(ticket)
                if ticket == tickets[0]:
                    first_holds.set()
                    await release_first.wait()

        first = asyncio.create_task(answer(tickets[0]))
        await first_holds.wait()
        # The later arrivals ask for their turn last-come first.
        others = []
        for ticket in reversed(tickets[1:]):
            others.append(asyncio.create_task(answer(ticket)))
            await asyncio.sleep(0)
        assert turns.waiting == 4 and turns.busy == 1
        release_first.set()
        await asyncio.gather(first, *others)
        assert turns.busy == 0 and turns.waiting == 0
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_at_most_capacity_turns_at_once() -> None:
    async def main() -> int:
        turns = Turns(capacity=2, patience_s=60.0)
        holding = 0
        most = 0

        async def answer() -> None:
            nonlocal holding, most
            ticket = turns.ticket()
            for _ in range(3):  # a turn per block, as a stream takes them
                async with turns.turn(ticket):
                    holding += 1
                    most = max(most, holding)
                    await asyncio.sleep(0.001)
                    holding -= 1

        await asyncio.gather(*(answer() for _ in range(6)))
        assert turns.busy == 0
        return most

    assert asyncio.run(main()) == 2


def test_a_turn_held_past_patience_lets_the_next_one_start() -> None:
    async def main() -> None:
        turns = Turns(capacity=1, patience_s=0.02)
        slow_client = asyncio.Event()
        other_done = asyncio.Event()

        async def stuck() -> None:
            async with turns.turn(turns.ticket()):
                slow_client.set()
                await other_done.wait()  # its send waits on a client that does not read

        async def other() -> None:
            async with turns.turn(turns.ticket()):
                other_done.set()

        holder = asyncio.create_task(stuck())
        await slow_client.wait()
        # Without patience this would wait for `stuck`, which waits for it: a deadlock.
        await asyncio.wait_for(other(), timeout=10)
        await holder
        assert turns.busy == 0

    asyncio.run(main())


def test_a_waiter_that_goes_away_leaves_no_turn_behind() -> None:
    async def main() -> None:
        turns = Turns(capacity=1, patience_s=60.0)
        release = asyncio.Event()
        held = asyncio.Event()

        async def holder() -> None:
            async with turns.turn(turns.ticket()):
                held.set()
                await release.wait()

        async def waiter() -> None:
            async with turns.turn(turns.ticket()):
                raise AssertionError("a cancelled waiter never gets its turn")

        first = asyncio.create_task(holder())
        await held.wait()
        gone = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        assert turns.waiting == 1
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        release.set()
        await first
        assert turns.busy == 0 and turns.waiting == 0
        # The capacity is whole again: two turns in a row need no waiting.
        async with turns.turn(turns.ticket()):
            assert turns.busy == 1

    asyncio.run(main())


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Turns(capacity=0, patience_s=1.0)


def test_large_answers_are_produced_in_groups() -> None:
    """Views on a mapping come up to GROUP_BYTES at a time (one thread hop), copied
    bytes at most about GROUP_COPIED_BYTES (they hold memory until sent)."""
    from services.turns import GROUP_BYTES, GROUP_COPIED_BYTES, _next_group

    view = memoryview(bytes(GROUP_BYTES))
    mib = 1 << 20
    views = iter([b"header", *(view[i : i + mib] for i in range(0, GROUP_BYTES, mib)), b"end"])
    first = _next_group(views)
    assert first[0] == b"header" and sum(len(b) for b in first) >= GROUP_BYTES
    assert _next_group(views) == [b"end"] and _next_group(views) == []
    copies = iter([bytes(GROUP_COPIED_BYTES // 2)] * 4)
    assert [len(b) for b in _next_group(copies)] == [GROUP_COPIED_BYTES // 2] * 2
