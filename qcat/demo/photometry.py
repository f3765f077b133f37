"""Brightness of the demo survey's objects: magnitudes, colours, fluxes and errors.

Arrays of per-band values have shape ``(n, 6)`` with columns in :data:`BANDS`
order. Fluxes are in nJy on the AB system, ``mag = -2.5 log10(flux) + 31.4``.
"""

from __future__ import annotations

import numpy as np

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
AB_ZEROPOINT_NJY = 31.4

#: 5-sigma point-source depth of the coadds (AB mag), roughly a few years of LSST.
COADD_DEPTH = np.array([24.4, 25.6, 25.7, 25.2, 24.6, 23.8])
#: Extinction per unit E(B-V), A_band / E(B-V), for the LSST filters.
EXTINCTION_PER_EBV = np.array([4.81, 3.64, 2.70, 2.06, 1.58, 1.31])
#: Coadds saturate around this magnitude in every band.
SATURATION_MAG = 16.0
#: Detection threshold in signal-to-noise ratio.
DETECTION_SNR = 5.0
#: Below this signal-to-noise ratio stars and galaxies cannot be told apart.
CLASSIFICATION_SNR = 6.0
#: Bands in the order the reference band is chosen from.
REF_BAND_PRIORITY: tuple[str, ...] = ("i", "r", "z", "y", "g", "u")
_R = BANDS.index("r")


def flux_from_mag(mag: np.ndarray | float) -> np.ndarray:
    """Flux in nJy of AB magnitudes."""
    return np.power(10.0, (AB_ZEROPOINT_NJY - mag) / 2.5)


def mag_from_flux(flux: np.ndarray) -> np.ndarray:
    """AB magnitudes of fluxes in nJy; NaN where the flux is not positive."""
    positive = flux > 0.0
    mag = np.full(flux.shape, np.nan)
    mag[positive] = AB_ZEROPOINT_NJY - 2.5 * np.log10(flux[positive])
    return mag


def ebv_map(glon: np.ndarray, glat: np.ndarray) -> np.ndarray:
    """E(B-V) in mag at galactic coordinates: a cosecant-law dust sheet.

    A smooth function of position (a map, not a per-object draw), growing
    towards the plane and capped there, with gentle longitude structure.
    """
    sin_b = np.maximum(np.abs(np.sin(np.radians(glat))), 0.02)
    texture = 1.0 + 0.35 * np.sin(np.radians(3.0 * glon)) * np.cos(np.radians(4.0 * glat))
    return np.minimum(0.025 / sin_b, 1.25) * texture


def _r_band_mags(rng: np.random.Generator, n: int) -> np.ndarray:
    """Observed r magnitudes: counts rise steeply to a turnover near the limit.

    ``r = 25.6 - X`` with ``X`` log-normal gives the skewed distribution of a
    flux-limited survey: a long bright tail and a pile-up of faint objects
    just above the detection limit (r ~ 25.7).
    """
    return np.maximum(25.6 - rng.lognormal(0.2, 0.75, n), 12.0)


def _star_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Colours u-g, g-r, r-i, i-z, z-y along a stellar locus, shape ``(n, 5)``.

    ``t`` runs from hot blue stars (0) to cool M dwarfs (1); M dwarfs become
    very red in r-i, as on the real locus.
    """
    t = rng.beta(2.0, 2.0, n)
    r_i = -0.10 + 0.45 * t + 1.5 * t**6
    colours = np.column_stack(
        (
            np.minimum(0.75 + 2.0 * t, 2.7),
            -0.25 + 1.75 * t,
            r_i,
            0.45 * r_i,
            0.25 * r_i,
        )
    )
    return colours + rng.normal(0.0, 0.04, colours.shape)


def _galaxy_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Colours u-g, g-r, r-i, i-z, z-y of a red sequence and a blue cloud, shape ``(n, 5)``."""
    red = np.array([1.80, 0.85, 0.40, 0.25, 0.12])
    blue = np.array([1.00, 0.45, 0.25, 0.15, 0.08])
    is_red = rng.random(n) < 0.35
    colours = np.where(is_red[:, None], red, blue)
    return colours + rng.normal(0.0, 0.15, colours.shape)


def true_magnitudes(rng: np.random.Generator, is_galaxy: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """Noise-free, reddened AB magnitudes in all bands, shape ``(n, 6)``.

    The survey selects on observed brightness, so the r magnitude is drawn
    after extinction; the other bands follow from the intrinsic colours plus
    the reddening between each band and r.
    """
    n = len(is_galaxy)
    r = _r_band_mags(rng, n)
    colours = np.where(is_galaxy[:, None], _galaxy_colours(rng, n), _star_colours(rng, n))
    mags = np.empty((n, len(BANDS)))
    mags[:, _R] = r
    # Walk outwards from r: g = r + (g-r), u = g + (u-g), i = r - (r-i), ...
    mags[:, 1] = r + colours[:, 1]
    mags[:, 0] = mags[:, 1] + colours[:, 0]
    mags[:, 3] = r - colours[:, 2]
    mags[:, 4] = mags[:, 3] - colours[:, 3]
    mags[:, 5] = mags[:, 4] - colours[:, 4]
    return mags + ebv[:, None] * (EXTINCTION_PER_EBV - EXTINCTION_PER_EBV[_R])


def measure_fluxes(rng: np.random.Generator, mags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measured fluxes and their errors (nJy) of objects with true ``mags``.

    The error has a sky term set by the coadd depth (varying a little across
    the sky), a source photon-noise term and a 0.3% calibration floor, so the
    relative error grows towards faint magnitudes and faint objects scatter
    to negative fluxes.
    """
    n = len(mags)
    true_flux = flux_from_mag(mags)
    local_depth = rng.lognormal(0.0, 0.1, n)[:, None]
    sky_sigma = flux_from_mag(COADD_DEPTH)[None, :] / DETECTION_SNR * local_depth
    # Photon noise of the source equals the sky noise at 100 sigma.
    variance = sky_sigma**2 + sky_sigma * true_flux / 100.0 + (0.003 * true_flux) ** 2
    sigma = np.sqrt(variance)
    return true_flux + sigma * rng.standard_normal(mags.shape), sigma


def reference_band(snr: np.ndarray) -> np.ndarray:
    """Index into :data:`BANDS` of each object's reference band.

    The first band of :data:`REF_BAND_PRIORITY` with a detection, else the
    band with the highest signal-to-noise ratio.
    """
    priority = [BANDS.index(b) for b in REF_BAND_PRIORITY]
    detected = snr[:, priority] >= DETECTION_SNR
    first = np.argmax(detected, axis=1)
    chosen = np.asarray(priority)[first]
    return np.where(detected.any(axis=1), chosen, np.argmax(snr, axis=1))
