"""``qcat serve`` as its own process, for the HTTP benchmarks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def start_qcat_serve(
    data: Path, workers: int, settings: Sequence[str] = ()
) -> tuple[subprocess.Popen[str], str]:
    """Start ``qcat serve`` on a free port of 127.0.0.1 (with ``--set`` for each of
    ``settings``, ``NAME=VALUE``); return the process and its base URL
    (``http://127.0.0.1:PORT``) once it listens. The caller terminates the process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "qcat", "serve", "--data", str(data), "--port", "0"]
    for assignment in settings:
        command += ["--set", assignment]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+)/tap", line)
        if found:
            return proc, found.group(1)
    raise SystemExit("qcat serve did not start")
