"""The demo visits: per field and band, when and how each image was taken.

Every ``(field, band, visit)`` draws from its own child of the seed, keyed by
a checksum of the field name, so a visit looks the same whatever other fields
are rendered with it. Visits of a field differ by small pointing offsets and
rotations; odd-numbered visits (the first, third, ...) are written as
multi-extension files (image, variance, mask), the others as single images.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from qcat.demo.cadence import (
    NIGHT_START_DAY_FRACTION,
    SURVEY_START_MJD,
    VISIT_NUMBER_STRIDE,
    VISIT_SECONDS,
    VISITS_PER_NIGHT,
)
from qcat.demo.images.fields import DemoField
from qcat.demo.images.photometry import EXPTIME_S, FWHM_SCATTER, NOMINAL_FWHM_PX
from qcat.demo.photometry import BANDS
from qcat.demo.sky import offset_positions

#: Pointing offsets between visits: uniform within this fraction of the width.
_DITHER_FRACTION = 0.04
#: Rotation between visits: normal with this sigma (degrees).
_ROTATION_JITTER_DEG = 0.7
#: Visits happen in the survey's first year.
_NIGHTS = 365
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class VisitPlan:
    """One demo image: its field, band, pointing, PSF, time and file layout.

    ``ra``/``dec`` is the pointing (the reference pixel), ``rotation_deg`` the
    position angle of +y east of north, ``fwhm_px`` the PSF FWHM in pixels,
    ``mjd_start`` the exposure start (MJD, TAI). ``mef`` selects the
    multi-extension layout. ``obs_id`` is the file name without ``.fits``.
    """

    field: DemoField
    band: str
    band_index: int
    number: int
    visit_id: int
    ra: float
    dec: float
    rotation_deg: float
    fwhm_px: float
    mjd_start: float
    exptime: float
    mef: bool
    size: int
    seed: int

    @property
    def obs_id(self) -> str:
        return f"{self.field.name}-{self.band}-{self.number:02d}"

    @property
    def file_name(self) -> str:
        return f"{self.obs_id}.fits"

    @property
    def seeing_arcsec(self) -> float:
        """PSF FWHM in arcsec."""
        return self.fwhm_px * self.field.design.pixel_scale_arcsec

    @property
    def mjd_end(self) -> float:
        return self.mjd_start + self.exptime / _SECONDS_PER_DAY

    def noise_seed(self) -> np.random.SeedSequence:
        """Seed of this visit's pixel noise (independent of its pointing draws)."""
        key = _visit_key(self.field.name, self.band_index, self.number)
        return np.random.SeedSequence(self.seed, spawn_key=(*key, 1))


def _visit_key(field_name: str, band_index: int, number: int) -> tuple[int, int, int]:
    """Spawn key of a visit: stable across runs and independent of other fields."""
    return (zlib.crc32(field_name.encode()), band_index, number)


def plan_visits(
    field: DemoField, bands: tuple[str, ...], visits_per_band: int, *, size: int, seed: int
) -> list[VisitPlan]:
    """The ``visits_per_band`` visits of ``field`` in each of ``bands``."""
    design = field.design
    width = 2.0 * design.half_width_deg(size)
    plans: list[VisitPlan] = []
    for band in bands:
        band_index = BANDS.index(band)
        for number in range(1, visits_per_band + 1):
            key = _visit_key(field.name, band_index, number)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*key, 0)))
            east, north = rng.uniform(-_DITHER_FRACTION, _DITHER_FRACTION, 2) * width
            ra, dec = offset_positions(
                np.array([field.ra]), np.array([field.dec]), np.array([east]), np.array([north])
            )
            rotation = design.rotation_deg + rng.normal(0.0, _ROTATION_JITTER_DEG)
            fwhm = NOMINAL_FWHM_PX * rng.uniform(*FWHM_SCATTER)
            night = int(rng.integers(0, _NIGHTS))
            exposure = int(rng.integers(0, VISITS_PER_NIGHT))
            mjd = (
                SURVEY_START_MJD
                + night
                + NIGHT_START_DAY_FRACTION
                + exposure * VISIT_SECONDS / _SECONDS_PER_DAY
            )
            plans.append(
                VisitPlan(
                    field=field,
                    band=band,
                    band_index=band_index,
                    number=number,
                    visit_id=night * VISIT_NUMBER_STRIDE + exposure,
                    ra=float(ra[0]),
                    dec=float(dec[0]),
                    rotation_deg=float(rotation),
                    fwhm_px=float(fwhm),
                    mjd_start=float(mjd),
                    exptime=EXPTIME_S,
                    mef=number % 2 == 1,
                    size=size,
                    seed=seed,
                )
            )
    return plans
