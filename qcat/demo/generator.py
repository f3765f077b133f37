"""Deterministic demo catalog generation: seeding, batching and Parquet files.

The same ``(n_objects, seed, batch_rows)`` always gives bit-identical output:
object batch ``i`` draws from ``SeedSequence(seed)``'s ``i``-th spawned child,
and the sources of that batch from that child's own children. Memory stays
bounded by one object batch and a slice of its sources, whatever the total.
What the rows look like is decided in :mod:`qcat.demo.objects` and
:mod:`qcat.demo.sources`; their columns come from the packaged Felis schema
(demo.yaml), so batches always match ``load_felis(schema_path())``.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qcat.demo.objects import MAX_BATCH_ROWS, OBJECT_ID_BLOCK, object_batch
from qcat.demo.sources import source_batch
from qcat.demo.tables import SCHEMA_FILE, SOURCE_TABLE, schema_path, table_schema
from qcat.errors import ConfigError

__all__ = [
    "SOURCE_SLICE_OBJECTS",
    "DemoFiles",
    "object_batches",
    "schema_path",
    "source_batches",
    "table_schema",
    "write_demo_files",
]

#: Sources are generated (and written) for this many objects at a time.
SOURCE_SLICE_OBJECTS = 100_000
#: Dictionary-encode only the band letters: for the high-entropy numeric
#: columns dictionary encoding is wasted work (and makes writing twice as slow).
_DICTIONARY_COLUMNS = ["refBand", "band"]


@dataclass(frozen=True)
class DemoFiles:
    """What :func:`write_demo_files` wrote."""

    objects: list[Path]
    sources: list[Path]
    schema: Path
    n_objects: int
    n_sources: int


def _require_int(name: str, value: int, minimum: int, maximum: int | None = None) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``minimum <= value <= maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")


def _require_mean(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def _batch_seed(seed: int, *path: int) -> np.random.SeedSequence:
    """The spawned child ``path`` of ``SeedSequence(seed)``.

    ``SeedSequence(seed, spawn_key=(i,))`` is exactly ``SeedSequence(seed).spawn(n)[i]``,
    built directly so no list of all children is needed.
    """
    return np.random.SeedSequence(seed, spawn_key=path)


def object_batches(
    n_objects: int, *, seed: int = 1, batch_rows: int = 1_000_000
) -> Iterator[pa.RecordBatch]:
    """Generate ``n_objects`` Object rows in batches of at most ``batch_rows``.

    Batches have exactly the columns of ``demo.Object`` in schema order.
    objectIds increase through the batches. Raises :class:`ConfigError` for
    an invalid parameter (checked at the call, not at the first batch).
    """
    _require_int("n_objects", n_objects, 1)
    _require_int("seed", seed, 0)
    _require_int("batch_rows", batch_rows, 1, MAX_BATCH_ROWS)
    return _object_batches(n_objects, seed, batch_rows)


def _object_batches(n_objects: int, seed: int, batch_rows: int) -> Iterator[pa.RecordBatch]:
    for index, start in enumerate(range(0, n_objects, batch_rows)):
        rng = np.random.default_rng(_batch_seed(seed, index))
        rows = min(batch_rows, n_objects - start)
        yield object_batch(rng, rows, (index + 1) * OBJECT_ID_BLOCK)


def source_batches(
    objects: pa.RecordBatch,
    *,
    seed: int,
    first_source_id: int,
    mean_per_object: float = 10.0,
) -> pa.RecordBatch:
    """Single-visit detections of ``objects``, a batch with the demo.Object columns.

    Each object gets Poisson(``mean_per_object``) sources, with sourceIds
    ``first_source_id, first_source_id + 1, ...`` in object order. A source's
    position scatters 0.05-0.2 arcsec (by signal-to-noise) around its object
    and stays within 1 arcsec; its flux scatters around the object's flux in
    the visit's band, and a few percent of stars vary. The same arguments
    give the same batch.
    """
    _require_int("seed", seed, 0)
    _require_int("first_source_id", first_source_id, 0)
    _require_mean("mean_per_object", mean_per_object)
    return source_batch(np.random.default_rng(seed), objects, first_source_id, mean_per_object)


def _source_slices(
    objects: pa.RecordBatch,
    *,
    seed: int,
    batch_index: int,
    first_source_id: int,
    mean_per_object: float,
    progress: Callable[[int], None] | None,
) -> Iterator[pa.RecordBatch]:
    """Sources of object batch ``batch_index``, SOURCE_SLICE_OBJECTS objects at a time.

    Slice ``j`` is seeded from the batch's spawned child ``j``, so the object
    and source streams never overlap. ``progress`` hears of a slice's objects
    once the consumer has taken its sources.
    """
    next_id = first_source_id
    for slice_index, start in enumerate(range(0, objects.num_rows, SOURCE_SLICE_OBJECTS)):
        state = _batch_seed(seed, batch_index, slice_index).generate_state(2, np.uint64)
        sources = source_batches(
            objects.slice(start, SOURCE_SLICE_OBJECTS),
            seed=int(state[0]) << 64 | int(state[1]),
            first_source_id=next_id,
            mean_per_object=mean_per_object,
        )
        next_id += sources.num_rows
        yield sources
        if progress is not None:
            progress(min(SOURCE_SLICE_OBJECTS, objects.num_rows - start))


def _write_parquet_atomically(
    path: Path, batches: Iterator[pa.RecordBatch], schema: pa.Schema
) -> int:
    """Write ``batches`` to ``path`` (zstd) via a temporary name; return the row count.

    Each batch is compressed and written on a background thread while the
    next one is generated (both release the GIL), with at most one batch in
    flight so memory stays bounded.
    """
    partial = path.with_name(f".{path.name}.partial")
    rows = 0
    try:
        with (
            ThreadPoolExecutor(max_workers=1) as pool,
            pq.ParquetWriter(
                partial, schema, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS
            ) as writer,
        ):
            in_flight: Future[None] | None = None
            for batch in batches:
                if in_flight is not None:
                    in_flight.result()
                in_flight = pool.submit(writer.write_batch, batch)
                rows += batch.num_rows
            if in_flight is not None:
                in_flight.result()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def write_demo_files(
    out_dir: Path,
    n_objects: int,
    *,
    seed: int = 1,
    mean_sources_per_object: float = 10.0,
    rows_per_file: int = 1_000_000,
    progress: Callable[[int], None] | None = None,
) -> DemoFiles:
    """Write the demo catalog as Parquet files plus its Felis schema into ``out_dir``.

    Writes ``Object-00000.parquet``, ... (``rows_per_file`` objects each),
    ``Source-00000.parquet``, ... (the sources of the objects in the Object
    file with the same number) and ``demo.yaml``. Earlier ``Object-NNNNN``/
    ``Source-NNNNN`` files in ``out_dir`` are removed first so the directory
    holds one consistent catalog. ``progress(n)`` is called each time ``n``
    more objects (at most SOURCE_SLICE_OBJECTS) are done, sources included.
    """
    _require_int("n_objects", n_objects, 1)
    _require_int("seed", seed, 0)
    _require_int("rows_per_file", rows_per_file, 1, MAX_BATCH_ROWS)
    _require_mean("mean_sources_per_object", mean_sources_per_object)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: output directory is a file")
    out.mkdir(parents=True, exist_ok=True)
    for table in ("Object", "Source"):
        for stale in out.glob(f"{table}-[0-9][0-9][0-9][0-9][0-9].parquet"):
            stale.unlink()
    schema_copy = out / SCHEMA_FILE
    shutil.copyfile(schema_path(), schema_copy)

    object_files: list[Path] = []
    source_files: list[Path] = []
    objects_done = 0
    next_source_id = 1
    for index, objects in enumerate(object_batches(n_objects, seed=seed, batch_rows=rows_per_file)):
        object_file = out / f"Object-{index:05d}.parquet"
        _write_parquet_atomically(object_file, iter([objects]), objects.schema)

        source_file = out / f"Source-{index:05d}.parquet"
        slices = _source_slices(
            objects,
            seed=seed,
            batch_index=index,
            first_source_id=next_source_id,
            mean_per_object=mean_sources_per_object,
            progress=progress,
        )
        next_source_id += _write_parquet_atomically(source_file, slices, table_schema(SOURCE_TABLE))
        object_files.append(object_file)
        source_files.append(source_file)
        objects_done += objects.num_rows
    return DemoFiles(
        objects=object_files,
        sources=source_files,
        schema=schema_copy,
        n_objects=objects_done,
        n_sources=next_source_id - 1,
    )
