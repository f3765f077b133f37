"""Exact overlap of image footprints with the POS regions of an SIA query.

The ADQL prefilter (:mod:`services.sia.sia_adql`) keeps every image whose
footprint *might* meet a region: it tests the circle of radius ``s_fov / 2``
around ``(s_ra, s_dec)``, which holds the footprint (ObsCore contract). Here
each candidate gets the exact answer, in two steps:

1. vectorised over the candidates, from the same circle: an image whose circle
   misses the region is out, one whose circle lies wholly inside the region is
   in (its footprint is then inside too);
2. the rest, whose circle straddles the region's boundary, are tested exactly:
   the ``s_region`` polygon against the region on the sphere, with
   :func:`qcat.geometry.regions_intersect` for circles and polygons and
   :meth:`~services.sia.sia_range.SkyRange.intersects_polygon` for ranges.

Footprint polygons are parsed (and validated) once per distinct ``s_region``
text and cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from qcat.geometry import Circle, GeometryError, Polygon, regions_intersect
from qcat.geometry.regions import distance_np, signed_distance
from qcat.geometry.stcs import stcs_polygon_numbers
from qcat.geometry.vectors import unit_vectors
from services.sia.sia_params import PosRegion
from services.sia.sia_range import SLACK_DEG, SkyRange

#: Distinct footprints kept parsed.
FOOTPRINT_CACHE = 65_536


@lru_cache(maxsize=FOOTPRINT_CACHE)
def footprint_polygon(s_region: str) -> Polygon | None:
    """The polygon of an STC-S ``POLYGON [frame] ra1 dec1 ...`` string (``None`` if unusable).

    The frame and reference position (``ICRS``, ``ICRS GEOCENTER``) are skipped;
    ObsCore footprints are ICRS.
    """
    numbers = stcs_polygon_numbers(s_region)
    if numbers is None:
        return None
    try:
        return Polygon(tuple(zip(numbers[0::2], numbers[1::2], strict=True)))
    except GeometryError:
        return None


def overlaps(region: PosRegion, footprint: Polygon) -> bool:
    """Whether an image footprint and a POS region share a point (boundaries count)."""
    if isinstance(region, SkyRange):
        return region.intersects_polygon(footprint)
    return regions_intersect(region, footprint)


def overlap_mask(
    regions: Sequence[PosRegion],
    s_ra: np.ndarray,
    s_dec: np.ndarray,
    s_fov: np.ndarray,
    s_region: Sequence[str | None],
) -> np.ndarray:
    """Which images' footprints meet at least one of ``regions`` (see the module).

    Arrays are per image; NULLs are NaN (``s_region``: ``None``). An image
    without a footprint meets nothing.
    """
    n = len(s_region)
    hit = np.zeros(n, dtype=bool)
    ra = np.asarray(s_ra, dtype=np.float64)
    dec = np.asarray(s_dec, dtype=np.float64)
    radius = np.asarray(s_fov, dtype=np.float64) / 2.0
    present = np.array([bool(t) for t in s_region], dtype=bool)
    known = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(radius) & present
    for region in regions:
        undecided = ~hit & known
        if not undecided.any():
            break
        inside, outside = _circle_verdicts(region, ra, dec, radius, undecided)
        hit |= undecided & inside
        for i in np.flatnonzero(undecided & ~inside & ~outside):
            text = s_region[int(i)]
            footprint = footprint_polygon(text) if text else None
            if footprint is not None and overlaps(region, footprint):
                hit[i] = True
    # Images without a centre or size still get the exact test.
    for i in np.flatnonzero(~known & present):
        text = s_region[int(i)]
        footprint = footprint_polygon(text) if text else None
        if footprint is not None and any(overlaps(r, footprint) for r in regions):
            hit[i] = True
    return hit


def _circle_verdicts(
    region: PosRegion, ra: np.ndarray, dec: np.ndarray, radius: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(inside, outside)``: rows whose footprint circle is wholly inside / wholly outside.

    Both are conservative (a slack of 1e-9 degrees): a row in neither gets the exact test.
    """
    inside = np.zeros(len(ra), dtype=bool)
    outside = np.zeros(len(ra), dtype=bool)
    idx = np.flatnonzero(rows)
    r = radius[idx]
    if isinstance(region, Circle):
        d = distance_np(region.ra, region.dec, ra[idx], dec[idx])
        inside[idx] = d + r <= region.radius - SLACK_DEG
        outside[idx] = d - r > region.radius + SLACK_DEG
    elif isinstance(region, Polygon):
        sd = np.degrees(signed_distance(region, unit_vectors(ra[idx], dec[idx])))
        inside[idx] = sd <= -(r + SLACK_DEG)
        outside[idx] = sd > r + SLACK_DEG
    else:
        inside[idx], outside[idx] = _range_verdicts(region, ra[idx], dec[idx], r)
    return inside, outside


def _range_verdicts(
    rng: SkyRange, ra: np.ndarray, dec: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Circle-in-range and circle-misses-range tests for a :class:`SkyRange`.

    The circle spans ``dec - r .. dec + r``; when it holds no pole its RA span is
    ``ra +- asin(sin r / cos dec)`` (the meridians tangent to it). Outside: the
    declinations miss, or (for ranges not all RA) the RA spans miss.
    """
    low, high = dec - r, dec + r
    dec_in = (low >= rng.dec_min + SLACK_DEG) & (high <= rng.dec_max - SLACK_DEG)
    dec_out = (high < rng.dec_min - SLACK_DEG) | (low > rng.dec_max + SLACK_DEG)
    if rng.full_ra:
        return dec_in, dec_out
    no_pole = (high < 90.0 - SLACK_DEG) & (low > -90.0 + SLACK_DEG)
    with np.errstate(invalid="ignore"):
        ratio = np.sin(np.radians(r)) / np.cos(np.radians(dec))
        half = np.degrees(np.arcsin(np.clip(ratio, 0.0, 1.0)))
    offset = (ra - rng.ra_min) % 360.0
    ra_in = no_pole & (offset - half >= SLACK_DEG) & (offset + half <= rng.ra_width - SLACK_DEG)
    # Angular gap on the sky between the circle's RA span and the range's RA interval, in
    # RA degrees: it misses when the span ends before the interval on both sides.
    after_end = offset - rng.ra_width  # > 0: the centre is past the interval's end
    before_start = 360.0 - offset  # distance going forward to the interval's start
    ra_out = (
        no_pole & (ratio < 1.0) & (after_end - half > SLACK_DEG) & (before_start - half > SLACK_DEG)
    )
    return dec_in & ra_in, dec_out | ra_out
