"""Shared fixtures: small demo catalogs and a way to run the qcat CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from qcat.demo.generator import object_batches, schema_path, source_batches
from qcat.schema import TableSpec, load_felis


@dataclass(frozen=True)
class DemoTables:
    """A small demo catalog held in memory."""

    objects: pa.Table
    sources: pa.Table
    object_spec: TableSpec
    source_spec: TableSpec
    schema: Path


def make_demo(n_objects: int, seed: int = 7) -> DemoTables:
    """Generate ``n_objects`` objects and their sources."""
    obj = pa.Table.from_batches(list(object_batches(n_objects, seed=seed, batch_rows=n_objects)))
    src = source_batches(obj.to_batches()[0], seed=seed, first_source_id=1)
    specs = load_felis(schema_path())
    return DemoTables(
        obj,
        pa.Table.from_batches([src]),
        specs["demo.Object"],
        specs["demo.Source"],
        schema_path(),
    )


@pytest.fixture(scope="session")
def demo_small() -> DemoTables:
    """About 3000 objects and 30000 sources."""
    return make_demo(3000)


RunQcat = Callable[..., subprocess.CompletedProcess[str]]


def qcat_cli(
    *args: str | Path, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run ``qcat ARGS`` as a separate process, as an operator would."""
    env = dict(os.environ)
    env.pop("QCAT_DATA", None)
    proc = subprocess.run(
        [sys.executable, "-m", "qcat", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kwargs,  # type: ignore[arg-type]
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"qcat {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}"
        )
    return proc


def ingest_demo_table(data: Path, demo: DemoTables, table: str, path: Path, threshold: int) -> None:
    """``qcat ingest`` one demo table, partitions holding at most ``threshold`` rows."""
    qcat_cli(
        "ingest",
        "--data",
        data,
        "--schema",
        demo.schema,
        "--table",
        table,
        "--threshold",
        str(threshold),
        "--quiet",
        path,
    )


@pytest.fixture
def run_qcat() -> RunQcat:
    """Run ``qcat ARGS`` as a separate process, as an operator would."""
    return qcat_cli
