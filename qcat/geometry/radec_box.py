"""Great-circle distance from points to a right ascension / declination box.

A box ``ra_min <= ra <= ra_max, dec_min <= dec <= dec_max`` is what the
min/max statistics of a chunk's position columns give: every row of the
chunk lies in it. A child table's rows sit in their director's chunk, not in
the HEALPix pixel of their own position, so their chunks are pruned by that
box; the distance below is exact, where a circle drawn around the box is
much larger (a chunk 45 degrees wide in RA gets a circle of about 65 degrees).

The nearest point of the box to a point p:

- when p's RA is within the box's RA range, it is on p's own meridian, and
  the distance is how far p's declination is outside ``[dec_min, dec_max]``;
- otherwise it is on one of the two bounding meridians: for a box point q at
  declination d, ``cos(distance) = sin(dec) sin(d) + cos(dec) cos(d) cos(dRA)``
  grows as q's RA nears p's, so along q's parallel the nearest box point is at
  an edge. Along a meridian the same cosine is ``R cos(d - d*)`` with
  ``d* = atan2(sin(dec), cos(dec) cos(dRA))``, so the nearest point of the edge
  is at ``d*`` when it lies on the edge, else at one of the edge's ends.
"""

from __future__ import annotations

import math

import numpy as np

from qcat.geometry.regions import distance_np

#: Added to distances compared with a radius (degrees): far above float rounding.
BOX_DISTANCE_SLACK_DEG = 1e-9


def distance_to_box(
    ra: np.ndarray | float,
    dec: np.ndarray | float,
    ra_min: float,
    ra_max: float,
    dec_min: float,
    dec_max: float,
) -> np.ndarray:
    """Great-circle distance (degrees) from each point to the box; 0 inside it.

    RA is taken modulo 360 (a box from 350 to 370 holds RA 5); a box
    360 degrees wide or more spans every RA.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    along = np.maximum(0.0, np.maximum(dec_min - dec, dec - dec_max))
    width = ra_max - ra_min
    if width >= 360.0:
        return along
    inside = np.mod(ra - ra_min, 360.0) <= width
    edges = np.minimum(
        _to_meridian(ra, dec, ra_min, dec_min, dec_max),
        _to_meridian(ra, dec, ra_max, dec_min, dec_max),
    )
    return np.asarray(np.where(inside, along, edges))


def _to_meridian(
    ra: np.ndarray, dec: np.ndarray, ra_edge: float, dec_min: float, dec_max: float
) -> np.ndarray:
    """Distance from each point to the meridian arc at ``ra_edge`` between the declinations."""
    d_ra = np.radians(ra - ra_edge)
    phi = np.radians(dec)
    nearest = np.degrees(np.arctan2(np.sin(phi), np.cos(phi) * np.cos(d_ra)))
    inner = np.clip(nearest, dec_min, dec_max)  # d* when on the arc, else an end
    candidates = [distance_np(ra, dec, ra_edge, d) for d in (dec_min, dec_max)]
    candidates.append(distance_np(ra, dec, ra_edge, inner))
    return np.asarray(np.minimum.reduce(candidates))


def near_box(
    ra: np.ndarray | float,
    dec: np.ndarray | float,
    radius: float,
    bounds: tuple[float, float, float, float],
) -> bool:
    """Whether a point lies within ``radius`` degrees of the box ``bounds``
    (``ra_min, ra_max, dec_min, dec_max``); False for no points, NaN points match nothing."""
    distances = distance_to_box(ra, dec, *bounds)
    finite = distances[np.isfinite(distances)]
    reach = radius + BOX_DISTANCE_SLACK_DEG
    return bool(finite.size) and float(finite.min()) <= reach


def box_is_valid(bounds: tuple[float, float, float, float]) -> bool:
    """Whether ``bounds`` are finite with ``ra_min <= ra_max`` and ``dec_min <= dec_max``."""
    ra_min, ra_max, dec_min, dec_max = bounds
    return all(math.isfinite(v) for v in bounds) and ra_min <= ra_max and dec_min <= dec_max


def ra_arc_around(ra: np.ndarray, dec: np.ndarray, radius: float) -> tuple[float, float] | None:
    """An arc of right ascension ``(start, end)`` holding every point within ``radius``
    degrees of one of the points (NaN points ignored), going east from ``start``
    (``end < start`` when it passes RA 0); None when that is every RA (a pole
    within reach, or points all around) or there are no points.

    A circle of radius r around declination d that keeps clear of the poles
    spans ``asin(sin r / cos d)`` of RA either side of its centre; the arc is
    the shortest one holding the centres (it leaves out their largest gap),
    widened by the largest of those half-widths.
    """
    usable = np.isfinite(ra) & np.isfinite(dec)
    ra = np.sort(np.mod(ra[usable], 360.0))
    dec = dec[usable]
    if len(ra) == 0 or float(np.max(np.abs(dec))) + radius >= 90.0:
        return None
    ratio = math.sin(math.radians(radius)) / np.cos(np.radians(dec))
    half = float(np.degrees(np.arcsin(np.minimum(ratio, 1.0))).max()) + BOX_DISTANCE_SLACK_DEG
    gaps = np.r_[np.diff(ra), ra[0] + 360.0 - ra[-1]]
    widest = int(np.argmax(gaps))  # the arc starts after it and ends before it
    start, end = ra[(widest + 1) % len(ra)], ra[widest]
    if 360.0 - float(gaps[widest]) + 2.0 * half >= 360.0:
        return None
    return float(np.mod(start - half, 360.0)), float(np.mod(end + half, 360.0))
