"""When and how the demo survey observes: visits, their bands, times and detectors.

A visit is one exposure of the whole focal plane. Visit numbers are
``night * 1000 + exposure-of-the-night``; each visit has one band (a fixed
function of the visit number) and one mid-exposure time, so every source on
the same ``ccdVisitId`` agrees on both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcat.demo.photometry import BANDS

SURVEY_START_MJD = 60796.0  # 2025-05-01
SURVEY_NIGHTS = 3653  # ten years
#: Evening twilight at the site, as a fraction of the UTC day.
NIGHT_START_DAY_FRACTION = 0.98
VISIT_SECONDS = 40.0  # 30 s exposure plus readout and slew
VISITS_PER_NIGHT = 900  # ten dark hours
VISIT_NUMBER_STRIDE = 1000  # visit = night * stride + exposure of the night
DETECTORS = 189
CCD_VISIT_STRIDE = 1000  # ccdVisitId = visit * stride + detector
#: Share of visits taken in each band (LSST's planned filter balance).
BAND_VISIT_SHARE = np.array([0.06, 0.09, 0.22, 0.22, 0.20, 0.21])

_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Visits:
    """Per-source observation metadata."""

    band_index: np.ndarray
    mid_point_tai: np.ndarray
    ccd_visit_id: np.ndarray


def _unit_interval_hash(values: np.ndarray) -> np.ndarray:
    """A fixed, well-mixed map of integers to ``[0, 1)`` (the splitmix64 finaliser)."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def band_of_visit(visit: np.ndarray) -> np.ndarray:
    """Index into :data:`BANDS` of the band each visit was taken in."""
    cumulative = np.cumsum(BAND_VISIT_SHARE)
    band = np.searchsorted(cumulative / cumulative[-1], _unit_interval_hash(visit), side="right")
    return np.minimum(band, len(BANDS) - 1)


def draw_visits(rng: np.random.Generator, n: int) -> Visits:
    """Draw the visit and detector of ``n`` detections, uniformly over the survey."""
    night = rng.integers(0, SURVEY_NIGHTS, n)
    exposure = rng.integers(0, VISITS_PER_NIGHT, n)
    detector = rng.integers(0, DETECTORS, n)
    visit = night * VISIT_NUMBER_STRIDE + exposure
    mid_point = (
        SURVEY_START_MJD
        + night
        + NIGHT_START_DAY_FRACTION
        + (exposure + 0.5) * (VISIT_SECONDS / _SECONDS_PER_DAY)
    )
    return Visits(
        band_index=band_of_visit(visit),
        mid_point_tai=mid_point,
        ccd_visit_id=visit * CCD_VISIT_STRIDE + detector,
    )
