"""Worker settings: every limit is a named setting with a default and help text."""

from __future__ import annotations

import os

from qcat.config import Setting

WORKER_SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "worker_memory_limit",
            "1GB",
            "DuckDB memory limit of one worker process, shared by all its running tasks; "
            "beyond it operators spill to the worker's temp directory or the task fails.",
        ),
        Setting(
            "worker_threads",
            0,
            "DuckDB threads of one worker process; 0: one per CPU core. The czar sends "
            "a worker one task per query over all its chunks, which DuckDB spreads "
            "over these threads.",
        ),
        Setting(
            "worker_temp_limit",
            "10GB",
            "Most disk one worker's DuckDB may use for spill files (in a private "
            "directory under $TMPDIR, removed when the worker stops).",
        ),
        Setting(
            "worker_max_tasks",
            8,
            "Tasks one worker runs at once; more wait (until their deadline) for a slot.",
        ),
        Setting(
            "worker_batch_rows",
            65_536,
            "Rows per Arrow record batch a worker streams back.",
        ),
        Setting(
            "worker_cancelled_memory",
            10_000,
            "How many cancelled query ids a worker remembers, to refuse their late tasks.",
        ),
    )
}


def default(name: str) -> int | float | str:
    """The default value of worker setting ``name``."""
    return WORKER_SETTINGS[name].default


def duckdb_threads(threads: int) -> int:
    """The DuckDB thread count for setting value ``threads`` (0: the CPU cores)."""
    if threads < 0:
        raise ValueError(f"threads must be 0 (one per core) or more, got {threads}")
    return threads or os.cpu_count() or 1
