"""Pixel data of a demo image: sky, PSF-convolved sources, noise, variance and mask.

Sources are circular Gaussians integrated over each pixel (exactly, through
the error function), so a star's light centroid is the position it was drawn
at. Galaxies get a wider Gaussian. Noise is Gaussian with the Poisson
variance of sky plus sources plus read noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qcat.demo.images.photometry import READ_NOISE, SATURATION, sigma_from_fwhm

#: Mask planes (bit values), named in the mask header as ``MP_<name>`` = bit number.
MASK_PLANES: dict[str, int] = {"SAT": 1, "EDGE": 4, "DET": 5}
#: Pixels within this many pixels of the border are flagged EDGE.
_EDGE_PIXELS = 3
#: Sources are drawn out to this many sigma.
_STAMP_SIGMAS = 5.0
#: Galaxies' intrinsic Gaussian sigma spans this range (arcsec).
_GALAXY_SIGMA_ARCSEC = (0.8, 4.0)
#: Pixels where sources add this many sky sigmas are flagged DET (detected).
_DETECTION_SIGMAS = 3.0


@dataclass(frozen=True)
class Sources:
    """Sources to draw: 0-based pixel positions, total counts, Gaussian sigma (pixels)."""

    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray
    sigma: np.ndarray


@dataclass(frozen=True)
class Planes:
    """The three planes of an image: counts, their variance and a bit mask."""

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.asarray(sign * (1.0 - poly * np.exp(-a * a)))


def _pixel_profile(first: int, count: int, centre: float, sigma: float) -> np.ndarray:
    """Share of a 1-D Gaussian falling in pixels ``first .. first + count - 1``.

    Pixel ``i`` covers ``[i - 0.5, i + 0.5]`` (0-based pixel centres).
    """
    edges = np.arange(first, first + count + 1, dtype=np.float64) - 0.5
    cdf = _erf((edges - centre) / (math.sqrt(2.0) * sigma))
    return np.asarray(0.5 * np.diff(cdf))


def galaxy_sigma_px(object_id: np.ndarray, pixel_scale_arcsec: float) -> np.ndarray:
    """Intrinsic size of galaxies (pixels), a fixed function of their objectId."""
    # A multiplicative hash spreads ids over [0, 1): the same galaxy is as
    # large in every image.
    unit = ((object_id.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(11)).astype(
        np.float64
    ) / float(1 << 53)
    low, high = _GALAXY_SIGMA_ARCSEC
    return (low + (high - low) * unit) / pixel_scale_arcsec


def source_sigma(
    fwhm_px: float, extended: np.ndarray, object_id: np.ndarray, pixel_scale_arcsec: float
) -> np.ndarray:
    """Gaussian sigma (pixels) of each source's image: the PSF, widened for galaxies."""
    psf = sigma_from_fwhm(fwhm_px)
    galaxy = galaxy_sigma_px(object_id, pixel_scale_arcsec)
    return np.where(extended, np.hypot(psf, galaxy), psf)


def source_model(size: int, sources: Sources) -> np.ndarray:
    """Noise-free counts of ``sources`` on a ``size`` x ``size`` image (float64)."""
    model = np.zeros((size, size))
    for x, y, total, sigma in zip(sources.x, sources.y, sources.counts, sources.sigma, strict=True):
        radius = math.ceil(_STAMP_SIGMAS * sigma) + 1
        x0 = max(math.floor(x) - radius, 0)
        x1 = min(math.floor(x) + radius + 1, size)
        y0 = max(math.floor(y) - radius, 0)
        y1 = min(math.floor(y) + radius + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        profile_x = _pixel_profile(x0, x1 - x0, x, sigma)
        profile_y = _pixel_profile(y0, y1 - y0, y, sigma)
        model[y0:y1, x0:x1] += total * np.outer(profile_y, profile_x)
    return model


def render_planes(size: int, sky: float, sources: Sources, rng: np.random.Generator) -> Planes:
    """Image, variance and mask of ``sources`` on a flat ``sky`` (counts per pixel).

    The image is the model plus Gaussian noise of the model's Poisson variance
    and the read noise, clipped at the saturation level; the variance plane is
    that noise's variance.
    """
    stars = source_model(size, sources)
    variance = stars + (sky + READ_NOISE**2)
    noise = rng.standard_normal((size, size), dtype=np.float32)
    image = (stars + sky + np.sqrt(variance) * noise).astype(np.float32)
    saturated = image >= SATURATION
    np.minimum(image, np.float32(SATURATION), out=image)

    mask = np.zeros((size, size), dtype=np.int32)
    mask[saturated] |= 1 << MASK_PLANES["SAT"]
    edge = np.ones((size, size), dtype=bool)
    edge[_EDGE_PIXELS:-_EDGE_PIXELS, _EDGE_PIXELS:-_EDGE_PIXELS] = False
    mask[edge] |= 1 << MASK_PLANES["EDGE"]
    sky_sigma = math.sqrt(sky + READ_NOISE**2)
    mask[stars > _DETECTION_SIGMAS * sky_sigma] |= 1 << MASK_PLANES["DET"]
    return Planes(image=image, variance=variance.astype(np.float32), mask=mask)
