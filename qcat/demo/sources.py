"""One batch of the demo Source table: single-visit detections of given objects."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from qcat.demo.cadence import Visits, draw_visits
from qcat.demo.photometry import BANDS, SATURATION_MAG, flux_from_mag
from qcat.demo.sky import offset_positions
from qcat.demo.tables import SOURCE_TABLE, assemble_batch, char_array
from qcat.errors import SchemaError

#: Object columns the sources are derived from.
SOURCE_INPUTS: tuple[str, ...] = (
    "objectId",
    "coord_ra",
    "coord_dec",
    "refExtendedness",
    *(f"{b}_psfFlux" for b in BANDS),
    *(f"{b}_psfFluxErr" for b in BANDS),
)
_ARCSEC_PER_DEG = 3600.0
#: A single visit is about 1.5 mag shallower than the coadd.
_VISIT_NOISE_FACTOR = 4.0
_VARIABLE_STAR_SHARE = 0.03
_BAD_PSF_SHARE = 0.02
#: Per-visit position scatter is 0.6 arcsec / S/N, kept within these bounds,
#: and never more than _MAX_JITTER_SIGMAS sigma from the object.
_JITTER_ARCSEC = (0.05, 0.2)
_MAX_JITTER_SIGMAS = 4.0


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


def source_batch(
    rng: np.random.Generator,
    objects: pa.RecordBatch,
    first_source_id: int,
    mean_per_object: float,
) -> pa.RecordBatch:
    """Poisson(``mean_per_object``) detections per object, sourceIds from ``first_source_id``.

    ``objects`` needs the :data:`SOURCE_INPUTS` columns; :class:`SchemaError`
    names the first one missing.
    """
    missing = [c for c in SOURCE_INPUTS if c not in objects.schema.names]
    if missing:
        raise SchemaError(f"objects batch has no column {missing[0]!r}, needed for sources")
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
        "band": char_array(visits.band_index, BANDS),
        "psFlux": pa.array(ps_flux, mask=np.isnan(ps_flux)),
        "psFluxErr": pa.array(ps_flux_err, mask=np.isnan(ps_flux_err)),
        "ccdVisitId": pa.array(visits.ccd_visit_id),
        "psfFlag": pa.array(psf_flag),
    }
    return assemble_batch(SOURCE_TABLE, columns)
