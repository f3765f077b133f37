"""A deterministic, LSST-like demo catalog: Object and Source tables.

The same ``(n_objects, seed, batch_rows)`` always gives bit-identical output:
object batch ``i`` draws from ``SeedSequence(seed)``'s ``i``-th spawned child,
and the sources of that batch from that child's own children. Memory stays
bounded by one object batch and a slice of its sources, whatever the total.

Columns, their order and their types come from the packaged Felis schema
(demo.yaml), so the batches always match ``load_felis(schema_path())``.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qcat.demo.cadence import Visits, draw_visits
from qcat.demo.flags import ObjectFlag
from qcat.demo.photometry import (
    BANDS,
    CLASSIFICATION_SNR,
    DETECTION_SNR,
    SATURATION_MAG,
    ebv_map,
    flux_from_mag,
    mag_from_flux,
    measure_fluxes,
    reference_band,
    true_magnitudes,
)
from qcat.demo.sky import (
    Component,
    in_bright_star_halo,
    offset_positions,
    sample_sky,
)
from qcat.errors import ConfigError, SchemaError
from qcat.schema import load_felis

OBJECT_TABLE = "demo.Object"
SOURCE_TABLE = "demo.Source"
SCHEMA_FILE = "demo.yaml"

#: objectIds of batch ``i`` start above ``(i + 1) * OBJECT_ID_BLOCK``; ids grow
#: by 1-16 per row, so a batch may hold up to OBJECT_ID_BLOCK / 16 rows.
OBJECT_ID_BLOCK = 1 << 36
MAX_BATCH_ROWS = OBJECT_ID_BLOCK // 16
#: Sources are generated (and written) for this many objects at a time.
SOURCE_SLICE_OBJECTS = 100_000

#: Share of galaxies among background objects and among disk/bulge objects.
_GALAXY_SHARE_BACKGROUND = 0.75
_GALAXY_SHARE_MILKY_WAY = 0.03
_NOT_PRIMARY_SHARE = 0.03
_EDGE_SHARE = 0.01
_BLENDED_SHARE_BACKGROUND = 0.04
_BLENDED_SHARE_MILKY_WAY = 0.15
_ARCSEC_PER_DEG = 3600.0
#: A single visit is about 1.5 mag shallower than the coadd.
_VISIT_NOISE_FACTOR = 4.0
_VARIABLE_STAR_SHARE = 0.03
_BAD_PSF_SHARE = 0.02
#: Per-visit position scatter is 0.6 arcsec / S/N, kept within these bounds,
#: and never more than _MAX_JITTER_SIGMAS sigma from the object.
_JITTER_ARCSEC = (0.05, 0.2)
_MAX_JITTER_SIGMAS = 4.0
#: Dictionary-encode only the band letters: for the high-entropy numeric
#: columns dictionary encoding is wasted work (and makes writing twice as slow).
_DICTIONARY_COLUMNS = ["refBand", "band"]


def schema_path() -> Path:
    """Path of the packaged Felis schema of the demo tables (demo.yaml)."""
    resource = files("qcat.demo").joinpath(SCHEMA_FILE)
    if not isinstance(resource, Path):
        raise ConfigError(
            f"qcat.demo/{SCHEMA_FILE} is not a file on disk; install qcat as a directory, "
            "not a zip archive"
        )
    return resource


@functools.cache
def table_schema(qualified_name: str) -> pa.Schema:
    """Arrow schema of ``demo.Object`` or ``demo.Source`` from the packaged Felis file."""
    return load_felis(schema_path())[qualified_name].arrow_schema()


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
    """The spawned child ``path`` of ``SeedSequence(seed)`` (same as repeated ``spawn``)."""
    return np.random.SeedSequence(seed, spawn_key=path)


def _char_array(codes: np.ndarray, letters: tuple[str, ...]) -> pa.Array:
    """A one-character string array: ``letters[codes[k]]`` for each row."""
    dictionary = pa.array(letters, pa.string())
    indices = pa.array(codes.astype(np.int8), pa.int8())
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


def _assemble(qualified_name: str, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """Put generated columns in schema order with the schema's types."""
    schema = table_schema(qualified_name)
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        raise SchemaError(
            f"{schema_path()}: {qualified_name} columns {', '.join(missing)} are not generated"
        )
    arrays = [columns[f.name].cast(f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _object_batch(rng: np.random.Generator, n: int, id_base: int) -> pa.RecordBatch:
    """``n`` objects with ids above ``id_base``."""
    sky = sample_sky(rng, n)
    in_milky_way = sky.component != Component.BACKGROUND
    galaxy_share = np.where(in_milky_way, _GALAXY_SHARE_MILKY_WAY, _GALAXY_SHARE_BACKGROUND)
    is_galaxy = rng.random(n) < galaxy_share
    ebv = ebv_map(sky.glon, sky.glat)
    mags = true_magnitudes(rng, is_galaxy, ebv)
    flux, flux_err = measure_fluxes(rng, mags)

    snr = flux / flux_err
    ref = reference_band(snr)
    ref_snr = np.maximum(snr[np.arange(n), ref], 0.0)
    detected = ref_snr >= DETECTION_SNR
    classified = ref_snr >= CLASSIFICATION_SNR
    # Classification gets unreliable towards the detection limit.
    misclassified = rng.random(n) < 0.5 / (1.0 + (ref_snr / 10.0) ** 2)
    extendedness = (is_galaxy ^ misclassified).astype(np.float32)
    position_err_arcsec = np.hypot(0.6 / np.maximum(ref_snr, 1.0), 0.005)
    ra_err = position_err_arcsec * rng.lognormal(0.0, 0.05, n) / _ARCSEC_PER_DEG
    dec_err = position_err_arcsec * rng.lognormal(0.0, 0.05, n) / _ARCSEC_PER_DEG
    is_primary = rng.random(n) >= _NOT_PRIMARY_SHARE

    blended_share = np.where(in_milky_way, _BLENDED_SHARE_MILKY_WAY, _BLENDED_SHARE_BACKGROUND)
    flags = np.zeros(n, dtype=np.int64)
    flags[rng.random(n) < _EDGE_SHARE] |= ObjectFlag.EDGE
    flags[(mags < SATURATION_MAG).any(axis=1)] |= ObjectFlag.SATURATED
    flags[in_bright_star_halo(sky.vectors)] |= ObjectFlag.BRIGHT_STAR_HALO
    flags[rng.random(n) < blended_share] |= ObjectFlag.BLENDED
    flags[(flux <= 0.0).any(axis=1)] |= ObjectFlag.NEGATIVE_FLUX
    flags[~detected] |= ObjectFlag.NOT_DETECTED

    # Increasing, gappy ids, as when some detections are dropped downstream.
    object_id = id_base + np.cumsum(rng.integers(1, 17, n))
    mag = mag_from_flux(flux)

    columns: dict[str, pa.Array] = {
        "objectId": pa.array(object_id, pa.int64()),
        "coord_ra": pa.array(sky.ra),
        "coord_dec": pa.array(sky.dec),
        "coord_raErr": pa.array(ra_err),
        "coord_decErr": pa.array(dec_err),
        "refExtendedness": pa.array(extendedness, mask=~classified),
        "refBand": _char_array(ref, BANDS),
        "detect_isPrimary": pa.array(is_primary),
        "flags": pa.array(flags),
        "ebv": pa.array(ebv),
    }
    for k, band in enumerate(BANDS):
        columns[f"{band}_psfFlux"] = pa.array(flux[:, k])
        columns[f"{band}_psfFluxErr"] = pa.array(flux_err[:, k])
        columns[f"{band}_psfMag"] = pa.array(mag[:, k], mask=np.isnan(mag[:, k]))
    return _assemble(OBJECT_TABLE, columns)


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
    n_batches = -(-n_objects // batch_rows)
    for index, sequence in enumerate(np.random.SeedSequence(seed).spawn(n_batches)):
        rows = min(batch_rows, n_objects - index * batch_rows)
        yield _object_batch(np.random.default_rng(sequence), rows, (index + 1) * OBJECT_ID_BLOCK)


_SOURCE_INPUTS = (
    "objectId",
    "coord_ra",
    "coord_dec",
    "refExtendedness",
    *(f"{b}_psfFlux" for b in BANDS),
    *(f"{b}_psfFluxErr" for b in BANDS),
)


def _float_column(objects: pa.RecordBatch, name: str) -> np.ndarray:
    """A numeric column as float64, NULL as NaN."""
    column = objects.column(name).cast(pa.float64()).fill_null(math.nan)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _visit_fluxes(
    rng: np.random.Generator, objects: pa.RecordBatch, owner: np.ndarray, visits: Visits
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True flux, measured flux and flux error of each detection (nJy).

    The true flux is the object's coadd flux in the visit's band, except that a
    few percent of stars pulsate (sinusoidally in magnitude).
    """
    band = visits.band_index
    object_flux = np.column_stack([_float_column(objects, f"{b}_psfFlux") for b in BANDS])
    object_err = np.column_stack([_float_column(objects, f"{b}_psfFluxErr") for b in BANDS])
    centre = object_flux[owner, band]

    n_objects = objects.num_rows
    is_star = _float_column(objects, "refExtendedness") == 0.0
    variable = is_star & (rng.random(n_objects) < _VARIABLE_STAR_SHARE)
    amplitude_mag = rng.uniform(0.1, 0.8, n_objects)
    period_days = np.exp(rng.uniform(math.log(0.2), math.log(50.0), n_objects))
    phase = rng.uniform(0.0, 2.0 * math.pi, n_objects)
    varies = variable[owner]
    star = owner[varies]
    angle = 2.0 * math.pi * visits.mid_point_tai[varies] / period_days[star] + phase[star]
    centre[varies] *= 10.0 ** (-0.4 * amplitude_mag[star] * np.sin(angle))

    # Seeing and sky brightness change from visit to visit.
    visit_err = object_err[owner, band] * _VISIT_NOISE_FACTOR * rng.lognormal(0.0, 0.15, len(owner))
    measured = centre + visit_err * rng.standard_normal(len(owner))
    return centre, measured, visit_err


def _visit_positions(
    rng: np.random.Generator,
    objects: pa.RecordBatch,
    owner: np.ndarray,
    snr: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec of each detection: its object's position plus centroid noise.

    The noise is 0.6 arcsec / S/N per axis, bounded to 0.05-0.2 arcsec, and
    the Gaussian is truncated at _MAX_JITTER_SIGMAS so no detection lies 1
    arcsec or more from its object.
    """
    n = len(owner)
    sigma = np.clip(0.6 / np.maximum(snr, 1e-3), *_JITTER_ARCSEC)
    east = rng.standard_normal(n) * sigma
    north = rng.standard_normal(n) * sigma
    radius = np.hypot(east, north)
    limit = _MAX_JITTER_SIGMAS * sigma
    shrink = np.where(radius > limit, limit / np.maximum(radius, 1e-300), 1.0) / _ARCSEC_PER_DEG
    return offset_positions(
        _float_column(objects, "coord_ra")[owner],
        _float_column(objects, "coord_dec")[owner],
        east * shrink,
        north * shrink,
    )


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
    the visit's band, and a few percent of stars vary.
    """
    _require_int("seed", seed, 0)
    _require_int("first_source_id", first_source_id, 0)
    _require_mean("mean_per_object", mean_per_object)
    missing = [c for c in _SOURCE_INPUTS if c not in objects.schema.names]
    if missing:
        raise SchemaError(f"objects batch has no column {missing[0]!r}, needed for sources")

    rng = np.random.default_rng(seed)
    counts = rng.poisson(mean_per_object, objects.num_rows)
    owner = np.repeat(np.arange(objects.num_rows), counts)
    n = len(owner)
    visits = draw_visits(rng, n)
    centre, ps_flux, ps_flux_err = _visit_fluxes(rng, objects, owner, visits)
    psf_flag = (rng.random(n) < _BAD_PSF_SHARE) | (centre > flux_from_mag(SATURATION_MAG))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.abs(centre) / ps_flux_err
    ra, dec = _visit_positions(rng, objects, owner, np.where(np.isfinite(snr), snr, 0.0))

    object_id = np.asarray(objects.column("objectId").to_numpy(zero_copy_only=False))
    columns: dict[str, pa.Array] = {
        "sourceId": pa.array(first_source_id + np.arange(n, dtype=np.int64)),
        "objectId": pa.array(object_id[owner]),
        "ra": pa.array(ra),
        "dec": pa.array(dec),
        "midPointTai": pa.array(visits.mid_point_tai),
        "band": _char_array(visits.band_index, BANDS),
        "psFlux": pa.array(ps_flux, mask=np.isnan(ps_flux)),
        "psFluxErr": pa.array(ps_flux_err, mask=np.isnan(ps_flux_err)),
        "ccdVisitId": pa.array(visits.ccd_visit_id),
        "psfFlag": pa.array(psf_flag),
    }
    return _assemble(SOURCE_TABLE, columns)


def _source_slices(
    objects: pa.RecordBatch,
    *,
    seed: int,
    batch_index: int,
    first_source_id: int,
    mean_per_object: float,
) -> Iterator[pa.RecordBatch]:
    """Sources of object batch ``batch_index``, SOURCE_SLICE_OBJECTS objects at a time.

    Slice ``j`` is seeded from the batch's spawned child ``j``, so the object
    and source streams never overlap.
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
    file with the same number) and ``demo.yaml``. Earlier ``Object-*``/
    ``Source-*`` files in ``out_dir`` are removed first so the directory
    holds one consistent catalog. ``progress`` is called after each Object
    file with the number of object rows written so far.
    """
    _require_int("n_objects", n_objects, 1)
    _require_int("seed", seed, 0)
    _require_int("rows_per_file", rows_per_file, 1, MAX_BATCH_ROWS)
    _require_mean("mean_sources_per_object", mean_sources_per_object)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: output directory is a file")
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("Object-*.parquet"), *out.glob("Source-*.parquet")]:
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
        )
        next_source_id += _write_parquet_atomically(source_file, slices, table_schema(SOURCE_TABLE))
        object_files.append(object_file)
        source_files.append(source_file)
        objects_done += objects.num_rows
        if progress is not None:
            progress(objects_done)
    return DemoFiles(
        objects=object_files,
        sources=source_files,
        schema=schema_copy,
        n_objects=objects_done,
        n_sources=next_source_id - 1,
    )
