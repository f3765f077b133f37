"""How bright things look on the demo camera: sky, zero points, noise, saturation.

Numbers are per band in :data:`qcat.demo.photometry.BANDS` order. Counts are
ADU with a gain of 1 electron/ADU. A visit reaches a little deeper than the
demo catalog (whose depth is that of a coadd), so most catalog objects show;
the zero points follow from that depth and the sky, so a source of magnitude
``m`` gives ``10 ** (-0.4 * (m - zero_point))`` counts in total.
"""

from __future__ import annotations

import math

import numpy as np

from qcat.demo.photometry import COADD_DEPTH

EXPTIME_S = 30.0
GAIN = 1.0
READ_NOISE = 3.0
#: Pixels at or above this many counts are saturated (clipped and masked).
SATURATION = 200_000.0
#: Sky background per pixel (counts), rising to the red as on a real site.
SKY_COUNTS = np.array([40.0, 150.0, 250.0, 350.0, 450.0, 600.0])
#: 5-sigma point-source depth of one visit at the nominal seeing (AB mag): a
#: little deeper than the catalog, u most so the reddened disk stars still show.
VISIT_DEPTH = COADD_DEPTH + np.array([1.0, 0.2, 0.2, 0.2, 0.2, 0.2])
#: PSF FWHM in pixels at the nominal seeing; visits scatter by these factors.
NOMINAL_FWHM_PX = 2.8
FWHM_SCATTER = (0.8, 1.2)
#: Anchor stars stay this many magnitudes fainter than saturating at the best seeing.
_ANCHOR_SATURATION_MARGIN = 0.3
_SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def sigma_from_fwhm(fwhm: float) -> float:
    """Gaussian sigma of a FWHM (same units)."""
    return fwhm * _SIGMA_PER_FWHM


def zero_points() -> np.ndarray:
    """Magnitude giving one count per exposure, per band.

    The 5-sigma limit of an optimally weighted PSF measurement on sky noise
    is ``5 sqrt(NEA * (sky + read_noise**2))`` counts, with noise-equivalent
    area ``NEA = 4 pi sigma**2``.
    """
    nea = 4.0 * math.pi * sigma_from_fwhm(NOMINAL_FWHM_PX) ** 2
    return VISIT_DEPTH + 2.5 * np.log10(5.0 * np.sqrt(nea * (SKY_COUNTS + READ_NOISE**2)))


def saturation_mags(fwhm_px: float) -> np.ndarray:
    """Per band, the magnitude of a point source whose peak pixel reaches :data:`SATURATION`.

    Uses the peak of the continuous Gaussian, ``counts / (2 pi sigma**2)``,
    which is a little above any pixel's value, so the limit is conservative.
    """
    peak_share = 1.0 / (2.0 * math.pi * sigma_from_fwhm(fwhm_px) ** 2)
    return zero_points() - 2.5 * np.log10((SATURATION - SKY_COUNTS) / peak_share)


def anchor_bright_limits() -> np.ndarray:
    """Per band, the brightest magnitude an anchor star may have (never saturated)."""
    best_fwhm = NOMINAL_FWHM_PX * FWHM_SCATTER[0]
    return saturation_mags(best_fwhm) + _ANCHOR_SATURATION_MARGIN


def counts(mags: np.ndarray, zero_point: float) -> np.ndarray:
    """Total counts of sources of AB magnitudes ``mags`` (NaN stays NaN)."""
    return np.power(10.0, -0.4 * (mags - zero_point))
