"""Brute-force point-in-region tests, independent of :mod:`qcat.geometry.sql`.

For tests only: slow-ish, vectorised numpy and astropy, sharing no formula
with the SQL or with :mod:`qcat.geometry.polygon`.

* Circles: astropy's ``SkyCoord.separation`` against the radius.
* Boxes: straight from the ADQL/STC wording. In the frame of the box centre
  ``c`` with east ``e`` and north ``n``, the east and west sides are great
  circles through the poles ``+-n`` of the east arm, so a point is between
  them when its "longitude" ``atan2(p.e, p.c)`` about ``n`` is within half the
  width; likewise ``atan2(p.n, p.c)`` about ``e`` within half the height.
* Polygons: winding numbers. Seen from a point ``p``, each edge sweeps an
  azimuth angle; the sum is ``+-2 pi`` when the edges separate ``p`` from its
  antipode (stereographic projection from ``-p`` makes this a planar winding
  number) and 0 when they do not. The sign says on which side ``p`` lies.
  Points with winding 0 are settled by counting edge crossings on the arc to
  an anchor point whose side is known. The smaller side is found by summing
  signed triangle areas from an apex (L'Huilier's formula on ra/dec).
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from qcat.geometry.regions import Box, Circle, Point, Polygon, Region


def _xyz(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Unit vectors, via astropy's own spherical-to-cartesian conversion."""
    c = SkyCoord(ra=np.asarray(ra) * u.deg, dec=np.asarray(dec) * u.deg, frame="icrs")
    return np.asarray(c.cartesian.xyz.value).T.reshape(-1, 3)


def inside_np(ra: np.ndarray, dec: np.ndarray, region: Region) -> np.ndarray:
    """Whether each position (degrees) lies in ``region`` (boundary inclusive)."""
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if isinstance(region, Circle):
        return _separation_deg(ra, dec, region.ra, region.dec) <= region.radius
    if isinstance(region, Point):
        return _separation_deg(ra, dec, region.ra, region.dec) <= 0.0
    if isinstance(region, Box):
        lon, lat, _ = _box_frame(ra, dec, region)
        return (np.abs(lon) <= math.radians(region.width) / 2.0) & (
            np.abs(lat) <= math.radians(region.height) / 2.0
        )
    return _inside_polygon(_xyz(ra, dec), _polygon_xyz(region))


def boundary_distance_deg(ra: np.ndarray, dec: np.ndarray, region: Region) -> np.ndarray:
    """A lower bound (degrees) on the distance of each position from the region's boundary.

    Exact for circles and polygons; for boxes, the distance to the nearest of
    the four side great circles (never more than the distance to the sides).
    """
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if isinstance(region, Circle):
        return np.abs(_separation_deg(ra, dec, region.ra, region.dec) - region.radius)
    if isinstance(region, Point):
        return _separation_deg(ra, dec, region.ra, region.dec)
    if isinstance(region, Box):
        lon, lat, (rho_lon, rho_lat) = _box_frame(ra, dec, region)
        # A point at angle delta from a plane through the frame pole, at polar
        # distance acos(rho) from that pole... lies asin(rho sin delta) from the plane.
        d_lon = np.abs(np.abs(lon) - math.radians(region.width) / 2.0)
        d_lat = np.abs(np.abs(lat) - math.radians(region.height) / 2.0)
        across = np.minimum(
            np.arcsin(np.clip(rho_lon * np.sin(np.minimum(d_lon, math.pi / 2)), 0, 1)),
            np.arcsin(np.clip(rho_lat * np.sin(np.minimum(d_lat, math.pi / 2)), 0, 1)),
        )
        return np.degrees(across)
    p = _xyz(ra, dec)
    v = _polygon_xyz(region)
    w = np.roll(v, -1, axis=0)
    best = np.full(len(p), np.inf)
    for a, b in zip(v, w, strict=True):
        best = np.minimum(best, _arc_distance(p, a, b))
    return np.degrees(best)


def polygon_area_sq_deg(poly: Polygon) -> float:
    """Area of the smaller side of a polygon, by signed triangles with a pole."""
    left = _left_area(_polygon_xyz(poly))
    return min(left, 4.0 * math.pi - left) * (180.0 / math.pi) ** 2


def _separation_deg(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    points = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    centre = SkyCoord(ra=ra0 * u.deg, dec=dec0 * u.deg, frame="icrs")
    return np.asarray(points.separation(centre).deg)


def _box_frame(
    ra: np.ndarray, dec: np.ndarray, box: Box
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Angles of each point about the box's north and east axes, and its distance factors."""
    p = _xyz(ra, dec)
    a, d = math.radians(box.ra), math.radians(box.dec)
    c = np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
    e = np.array([-math.sin(a), math.cos(a), 0.0])
    n = np.array([-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)])
    pc, pe, pn = p @ c, p @ e, p @ n
    lon = np.arctan2(pe, pc)
    lat = np.arctan2(pn, pc)
    return lon, lat, (np.hypot(pe, pc), np.hypot(pn, pc))


def _polygon_xyz(poly: Polygon) -> np.ndarray:
    ra = np.array([v[0] for v in poly.vertices])
    dec = np.array([v[1] for v in poly.vertices])
    return _xyz(ra, dec)


def _arc_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (radians) from points to the minor arc a-b, by projection onto its plane."""
    # a x (b - a) = a x b, without the cancellation that spoils short edges.
    n = np.cross(a, b - a)
    n = n / np.linalg.norm(n)
    foot = p - np.outer(p @ n, n)
    norm = np.linalg.norm(foot, axis=1)
    foot = foot / np.where(norm > 0, norm, 1.0)[:, None]
    ab = math.atan2(np.linalg.norm(np.cross(a, b - a)), a @ b)
    to_a = np.arctan2(np.linalg.norm(np.cross(foot, a), axis=1), foot @ a)
    to_b = np.arctan2(np.linalg.norm(np.cross(foot, b), axis=1), foot @ b)
    on_arc = np.abs(to_a + to_b - ab) <= 1e-12
    across = np.arctan2(np.abs(p @ n), norm)
    ends = np.minimum(
        np.arctan2(np.linalg.norm(np.cross(p, a), axis=1), p @ a),
        np.arctan2(np.linalg.norm(np.cross(p, b), axis=1), p @ b),
    )
    return np.where(on_arc, np.minimum(across, ends), ends)


def _winding(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Winding number (-1, 0 or 1) of the polygon ``v`` around each point, seen from outside."""
    w = np.roll(v, -1, axis=0)
    total = np.zeros(len(p))
    for a, b in zip(v, w, strict=True):
        # Azimuth swept at p from a to b: the signed angle between the tangents at p
        # towards a and b. The tangents come from the differences a - p, b - p (exact
        # for nearby points), using (a - p) . p = -|a - p|^2 / 2 for unit vectors.
        da, db = a - p, b - p
        ta = da + 0.5 * np.einsum("ij,ij->i", da, da)[:, None] * p
        tb = db + 0.5 * np.einsum("ij,ij->i", db, db)[:, None] * p
        total += np.arctan2(
            np.einsum("ij,ij->i", p, np.cross(ta, tb)), np.einsum("ij,ij->i", ta, tb)
        )
    return np.rint(total / (2.0 * math.pi)).astype(np.int64)


def _left_area(v: np.ndarray) -> float:
    """Area (sr) of the region left of the edges: signed triangles with a pole, mod 4 pi.

    The triangle (pole, a, b) has ``tan(E / 2) = t_a t_b sin(dra) / (1 + t_a t_b cos(dra))``
    with ``t = tan(colatitude / 2)``; E is positive when the pole is left of a -> b.
    The vertices are first turned so that the pole is far from every vertex
    and from every vertex's antipode, where the formula degenerates.
    """
    rng = np.random.default_rng(7)
    axes = rng.normal(size=(256, 3))
    axes /= np.linalg.norm(axes, axis=1)[:, None]
    pole = axes[np.argmin(np.abs(axes @ v.T).max(axis=1))]
    helper = np.array([1.0, 0.0, 0.0]) if abs(pole[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, pole)
    x /= np.linalg.norm(x)
    turned = v @ np.stack([x, np.cross(pole, x), pole], axis=1)  # a rotation: right-handed frame
    ra = np.arctan2(turned[:, 1], turned[:, 0])
    colat = np.arctan2(np.hypot(turned[:, 0], turned[:, 1]), turned[:, 2])
    t = np.tan(colat / 2.0)
    t2, dra = np.roll(t, -1), np.roll(ra, -1) - ra
    area = 2.0 * np.arctan2(t * t2 * np.sin(dra), 1.0 + t * t2 * np.cos(dra)).sum()
    return float(area % (4.0 * math.pi))


def _crossings(p: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """How many edges of the polygon ``v`` the minor arc from each ``p`` to ``q`` crosses."""
    w = np.roll(v, -1, axis=0)
    count = np.zeros(len(p), dtype=np.int64)
    pq = np.cross(p, q - p)
    for a, b in zip(v, w, strict=True):
        ab = np.cross(a, b - a)
        sp, sq = p @ ab, np.full(len(p), q @ ab)
        sa, sb = pq @ a, pq @ b
        straddle = (sp * sq < 0) & (sa * sb < 0)
        # The crossing point found along each arc must be the same one of the two antipodes.
        x1 = sq[:, None] * p - sp[:, None] * q
        x1 *= np.sign(sq - sp)[:, None]
        x2 = sb[:, None] * a[None, :] - sa[:, None] * b[None, :]
        x2 *= np.sign(sb - sa)[:, None]
        count += straddle & (np.einsum("ij,ij->i", x1, x2) > 0)
    return count


def _inside_polygon(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Point-in-polygon for the smaller of the two regions the edges bound."""
    left_is_inside = _left_area(v) < 2.0 * math.pi
    wind = _winding(p, v)
    in_left = wind > 0
    undecided = np.flatnonzero(wind == 0)
    if len(undecided):
        odd = _crossings(p[undecided], _left_anchor(v), v) % 2 == 1
        in_left[undecided] = ~odd
    return in_left if left_is_inside else ~in_left


def _left_anchor(v: np.ndarray) -> np.ndarray:
    """A point certainly in the region left of the edges.

    From the middle of the longest edge, step left by half the distance to
    the nearest other edge: the step crosses nothing.
    """
    w = np.roll(v, -1, axis=0)
    lengths = np.linalg.norm(w - v, axis=1)
    i = int(np.argmax(lengths))
    mid = (v[i] + w[i]) / np.linalg.norm(v[i] + w[i])
    others = [j for j in range(len(v)) if j != i]
    gap = min(float(_arc_distance(mid[None, :], v[j], w[j])[0]) for j in others)
    normal = np.cross(v[i], w[i] - v[i])
    normal /= np.linalg.norm(normal)
    step = gap / 2.0
    return math.cos(step) * mid + math.sin(step) * normal
