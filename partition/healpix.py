"""HEALPix indexing of positions: the per-row ``_healpix_29`` value.

Every partitioned row carries the NESTED HEALPix index of its position at
order 29 (``nside = 2**29``, pixels about 0.4 milliarcseconds across), the
HATS convention. Coarser pixels follow by dropping bits: in NESTED numbering
the order-``k`` parent of an order-29 index ``h`` is ``h >> 2 * (29 - k)``.
"""

from __future__ import annotations

import healpy as hp
import numpy as np

from partition.layout import HEALPIX_ORDER

NSIDE_29 = 1 << HEALPIX_ORDER


def radec_to_healpix29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """NESTED order-29 HEALPix index of each (ra, dec) in degrees, as int64.

    Callers validate the values first (:func:`check_positions`): ``ra`` in
    [0, 360] and ``dec`` in [-90, 90]. ``ra = 360`` is the same place as
    ``ra = 0`` and gets the same index.
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    # Fold 360 onto 0 here rather than trusting the library's own wrapping.
    ra = np.where(ra >= 360.0, ra - 360.0, ra)
    return np.asarray(hp.ang2pix(NSIDE_29, ra, dec, nest=True, lonlat=True), dtype=np.int64)


def _as_float(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as float64 plus a mask of null entries (masked or None)."""
    null = np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else None
    data = np.ma.getdata(values) if null is not None else values
    # None in an object array becomes NaN here, so it is reported as null below.
    floats = np.asarray(data, dtype=np.float64)
    if null is None:
        null = np.zeros(floats.shape, dtype=bool)
    return floats, null


def _problem(name: str, value: float, is_null: bool, low: float, high: float) -> str | None:
    """Why one coordinate value is unusable, or ``None`` when it is fine."""
    if is_null or np.isnan(value):
        return f"{name} is null or not a number (NaN)"
    if np.isinf(value):
        return f"{name} is infinite ({value})"
    if not low <= value <= high:
        return f"{name} = {value!r} is outside [{low:g}, {high:g}] degrees"
    return None


def check_positions(ra: np.ndarray, dec: np.ndarray) -> tuple[int, str] | None:
    """First invalid position and why, or ``None`` when all are valid.

    Valid positions are finite, not null (NaN, or masked in a masked array),
    with ``0 <= ra <= 360`` and ``-90 <= dec <= 90`` in degrees. Returns the
    0-based index of the first bad row and a message naming the coordinate
    (``dec`` is named when both are bad in that row).
    """
    ra_f, ra_null = _as_float(ra)
    dec_f, dec_null = _as_float(dec)
    if ra_f.shape != dec_f.shape:
        raise ValueError(f"ra and dec differ in shape: {ra_f.shape} and {dec_f.shape}")
    with np.errstate(invalid="ignore"):
        # NaN compares False, so the range tests alone would miss it.
        ra_ok = ~ra_null & np.isfinite(ra_f) & (ra_f >= 0.0) & (ra_f <= 360.0)
        dec_ok = ~dec_null & np.isfinite(dec_f) & (dec_f >= -90.0) & (dec_f <= 90.0)
    bad = np.flatnonzero(~(ra_ok & dec_ok))
    if len(bad) == 0:
        return None
    i = int(bad[0])
    message = _problem("dec", float(dec_f[i]), bool(dec_null[i]), -90.0, 90.0)
    if message is None:
        message = _problem("ra", float(ra_f[i]), bool(ra_null[i]), 0.0, 360.0)
    assert message is not None
    return i, message


def healpix29_to_order(h29: np.ndarray, order: int) -> np.ndarray:
    """The NESTED pixel at ``order`` (0..29) holding each order-29 index, as int64."""
    if not 0 <= order <= HEALPIX_ORDER:
        raise ValueError(f"order must be between 0 and {HEALPIX_ORDER}, got {order}")
    return np.asarray(h29, dtype=np.int64) >> (2 * (HEALPIX_ORDER - order))
