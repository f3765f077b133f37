"""One batch of the demo Object table: positions, photometry, classification, flags."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from qcat.demo.flags import ObjectFlag
from qcat.demo.photometry import (
    BANDS,
    CLASSIFICATION_SNR,
    DETECTION_SNR,
    SATURATION_MAG,
    ebv_map,
    mag_from_flux,
    measure_fluxes,
    reference_band,
    true_magnitudes,
)
from qcat.demo.sky import Component, in_bright_star_halo, sample_sky
from qcat.demo.tables import OBJECT_TABLE, assemble_batch, char_array

#: objectIds of a batch lie in ``(id_base, id_base + OBJECT_ID_BLOCK)``: they
#: grow by 1-16 per row, so a batch may hold up to MAX_BATCH_ROWS rows.
OBJECT_ID_BLOCK = 1 << 36
MAX_BATCH_ROWS = OBJECT_ID_BLOCK // 16

#: Share of galaxies among background objects and among disk/bulge objects.
_GALAXY_SHARE_BACKGROUND = 0.75
_GALAXY_SHARE_MILKY_WAY = 0.03
_NOT_PRIMARY_SHARE = 0.03
_EDGE_SHARE = 0.01
_BLENDED_SHARE_BACKGROUND = 0.04
_BLENDED_SHARE_MILKY_WAY = 0.15
_ARCSEC_PER_DEG = 3600.0


def object_batch(rng: np.random.Generator, n: int, id_base: int) -> pa.RecordBatch:
    """``n`` Object rows drawn with ``rng``, objectIds increasing above ``id_base``."""
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

    # Increasing ids with gaps, like a catalog whose rejected detections were dropped.
    object_id = id_base + np.cumsum(rng.integers(1, 17, n))
    mag = mag_from_flux(flux)

    columns: dict[str, pa.Array] = {
        "objectId": pa.array(object_id, pa.int64()),
        "coord_ra": pa.array(sky.ra),
        "coord_dec": pa.array(sky.dec),
        "coord_raErr": pa.array(ra_err),
        "coord_decErr": pa.array(dec_err),
        "refExtendedness": pa.array(extendedness, mask=~classified),
        "refBand": char_array(ref, BANDS),
        "detect_isPrimary": pa.array(is_primary),
        "flags": pa.array(flags),
        "ebv": pa.array(ebv),
    }
    for k, band in enumerate(BANDS):
        columns[f"{band}_psfFlux"] = pa.array(flux[:, k])
        columns[f"{band}_psfFluxErr"] = pa.array(flux_err[:, k])
        columns[f"{band}_psfMag"] = pa.array(mag[:, k], mask=np.isnan(mag[:, k]))
    return assemble_batch(OBJECT_TABLE, columns)
