"""Progress reporting: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO


class Progress(Protocol):
    """Receives the progress of one long step."""

    def advance(self, n: int) -> None:
        """``n`` more units (rows) are done."""


class _Silent:
    def advance(self, n: int) -> None:
        pass


class _LogLines:
    """Plain lines, at most one every ``every`` seconds, with rows/s and ETA."""

    def __init__(self, stream: TextIO, label: str, total: int | None, every: float) -> None:
        self.stream, self.label, self.total, self.every = stream, label, total, every
        self.done = 0
        self.start = self.last = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,} rows, {rate:,.0f} rows/s"
        if self.total:
            left = max(self.total - self.done, 0)
            eta = left / rate if rate > 0 else float("inf")
            text += f", {100 * self.done / self.total:.0f}%, ETA {eta:,.0f} s"
        return text


class _RichBar:
    def __init__(self, bar: object, task: object) -> None:
        self.bar, self.task = bar, task

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)  # type: ignore[attr-defined]


@contextmanager
def progress(
    label: str,
    total: int | None = None,
    *,
    stream: TextIO | None = None,
    enabled: bool = True,
    every: float = 5.0,
) -> Iterator[Progress]:
    """Report the progress of one step of ``total`` rows (unknown when ``None``)."""
    out = stream if stream is not None else sys.stderr
    if not enabled:
        yield _Silent()
        return
    if out.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with RichProgress(*columns, transient=False) as bar:
            task = bar.add_task(label, total=total, rate="")

            class _Rate(_RichBar):
                def advance(self, n: int) -> None:
                    super().advance(n)
                    t = bar.tasks[0]
                    speed = t.finished_speed or t.speed or 0.0
                    bar.update(task, rate=f"{speed:,.0f} rows/s")

            yield _Rate(bar, task)
        return
    log = _LogLines(out, label, total, every)
    yield log
    out.write(log.line(time.monotonic()) + " (done)\n")
    out.flush()
