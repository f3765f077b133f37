"""The declination extent of a POS region, for ObsCore's ``s_dec_min``/``s_dec_max`` bounds.

An image can only overlap a region when their declination intervals overlap,
so ``s_dec_max >= lo AND s_dec_min <= hi`` (with ``[lo, hi]`` the region's
extent) never drops an overlapping image. Those are comparisons of columns
with constants, which DuckDB checks against each Parquet row group's
statistics; ObsCore is sorted by ``s_dec_min`` (docs/images.md), so most row
groups are skipped without being decoded.

* a circle ``(ra, dec, r)``: ``[dec - r, dec + r]`` clipped to the poles (a
  cap reaching past a pole holds it);
* a range: its dec bounds;
* a polygon: the extremes of its edges (a great-circle arc is highest at its
  circle's point nearest the north pole when that point is on the arc, else at
  an end), and +-90 when the polygon holds a pole.
"""

from __future__ import annotations

import numpy as np

from qcat.geometry import Circle, Polygon
from qcat.geometry.vectors import arc_normal, cross, dot
from services.sia.sia_params import PosRegion
from services.sia.sia_range import SLACK_DEG, SkyRange

_NORTH = np.array([[0.0, 0.0, 1.0]])
_SOUTH = -_NORTH


def region_dec_range(region: PosRegion) -> tuple[float, float]:
    """``(lo, hi)`` in degrees: every point of ``region`` has ``lo <= dec <= hi``.

    Widened by the overlap test's slack (the exact test counts footprints
    closer than ``SLACK_DEG`` as meeting) plus as much again for rounding;
    ``-90``/``90`` mean no bound.
    """
    if isinstance(region, Circle):
        lo, hi = region.dec - region.radius, region.dec + region.radius
    elif isinstance(region, SkyRange):
        lo, hi = region.dec_min, region.dec_max
    else:
        lo, hi = polygon_dec_range(region)
    pad = 2.0 * SLACK_DEG
    return max(lo - pad, -90.0), min(hi + pad, 90.0)


def polygon_dec_range(polygon: Polygon) -> tuple[float, float]:
    """The lowest and highest declination (degrees) of ``polygon``, exactly."""
    shape = polygon.shape
    a = shape.vectors
    b = np.roll(a, -1, axis=0)
    n = arc_normal(a, b)
    # The circle's point nearest the north pole: z minus its component along n.
    top = _NORTH - n[:, 2:3] * n
    reach = np.linalg.norm(top, axis=1)  # the z of that point, once normalised
    unit_top = top / np.maximum(reach, 1e-300)[:, None]
    z_hi = np.maximum(a[:, 2], b[:, 2])
    z_lo = np.minimum(a[:, 2], b[:, 2])
    z_hi = np.where(_on_arc(unit_top, a, b, n), np.maximum(z_hi, reach), z_hi)
    z_lo = np.where(_on_arc(-unit_top, a, b, n), np.minimum(z_lo, -reach), z_lo)
    hi = 90.0 if shape.contains(_NORTH)[0] else _dec(float(z_hi.max()))
    lo = -90.0 if shape.contains(_SOUTH)[0] else _dec(float(z_lo.min()))
    return lo, hi


def _on_arc(p: np.ndarray, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Whether each ``p[i]`` (on the great circle of ``a[i] -> b[i]``) lies on that arc."""
    return np.asarray((dot(cross(a, p), n) >= 0.0) & (dot(cross(p, b), n) >= 0.0))


def _dec(z: float) -> float:
    return float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0))))
