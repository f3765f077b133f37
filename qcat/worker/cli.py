"""``qcat worker``: run one worker process until SIGTERM or SIGINT."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from qcat.cli_options import data_option
from qcat.config import resolve_data_dir
from qcat.errors import ConfigError, QcatError
from qcat.worker.settings import WORKER_SETTINGS


def load_setup_sql(module_name: str) -> list[str]:
    """The ``SETUP_SQL`` list of strings of module ``module_name``."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--setup-module {module_name}: cannot import: {e}") from None
    sql = getattr(module, "SETUP_SQL", None)
    if not isinstance(sql, list | tuple) or not all(isinstance(s, str) for s in sql):
        raise ConfigError(f"--setup-module {module_name}: SETUP_SQL must be a list of strings")
    return list(sql)


def _setting(name: str) -> dict[str, object]:
    s = WORKER_SETTINGS[name]
    return {"default": s.default, "show_default": True, "help": s.help}


@click.command("worker")
@data_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=int, default=0, show_default=True, help="Port to listen on (0: any free one)."
)
@click.option("--memory-limit", **_setting("worker_memory_limit"))  # type: ignore[arg-type]
@click.option("--threads", type=int, **_setting("worker_threads"))  # type: ignore[arg-type]
@click.option("--temp-limit", **_setting("worker_temp_limit"))  # type: ignore[arg-type]
@click.option("--max-tasks", type=int, **_setting("worker_max_tasks"))  # type: ignore[arg-type]
@click.option(
    "--setup-module",
    default=None,
    help="Python module whose SETUP_SQL (list of SQL strings, e.g. macros) runs before "
    "the lockdown.",
)
@click.option(
    "--parent-pid",
    type=int,
    default=None,
    help="Exit when the process with this id (our parent) dies (Linux).",
)
def worker(
    data: Path | None,
    host: str,
    port: int,
    memory_limit: str,
    threads: int,
    temp_limit: str,
    max_tasks: int,
    setup_module: str | None,
    parent_pid: int | None,
) -> None:
    """Run one worker: an Arrow Flight server executing chunk tasks with DuckDB.

    Prints "listening grpc://HOST:PORT" once it accepts tasks, then serves
    until SIGTERM or SIGINT. DuckDB can only read files under DATA/tables/ and
    tasks must be single SELECT statements (see docs/workers.md).

    \b
    Examples:
      qcat worker --data ./qcat-data --port 9001
      qcat worker --data /srv/qcat --host 0.0.0.0 --port 9001 --memory-limit 8GB
    """
    import pyarrow as pa

    from qcat.worker.lifeline import exit_with_parent
    from qcat.worker.server import WorkerServer

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    # A plain flag: the handler runs on the main thread between bytecodes, and an
    # Event.set() there deadlocks when it interrupts that thread's own Event.wait()
    # (both take the Event's lock), which left workers running after a SIGTERM.
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    error = None
    try:
        setup_sql = load_setup_sql(setup_module) if setup_module else []
        server = WorkerServer(
            resolve_data_dir(data),
            f"grpc://{host}:{port}",
            memory_limit=memory_limit,
            threads=threads,
            temp_limit=temp_limit,
            max_tasks=max_tasks,
            setup_sql=setup_sql,
        )
    except (OSError, pa.ArrowException) as e:  # an unusable address
        error = f"cannot listen on grpc://{host}:{port}: {e}"
    except QcatError as e:
        error = str(e)
    if error is not None:  # exit outside the handler: no traceback keeps DuckDB alive
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(f"listening grpc://{host}:{server.port}")
    sys.stdout.flush()
    while not stopping:
        time.sleep(0.2)
    # Orphaned (the czar died): no client is left to read the stopped streams out.
    orphaned = parent_pid is not None and os.getppid() != parent_pid
    if not server.close(timeout=1.0 if orphaned else 10.0):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # a stalled client must not keep a stopped worker alive
