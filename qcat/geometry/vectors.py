"""Unit-vector arithmetic on the sphere, written to keep small angles exact.

Positions are unit vectors ``(x, y, z)`` in ICRS (x towards ra = 0, z towards
the north pole). Two habits keep the rounding at the 1e-16 level even for
arcsecond-sized shapes:

* angles come from ``atan2(|u x v|, u . v)``, which is accurate at every
  separation (``acos`` of a dot product loses half the digits near 0 and 180);
* the great-circle normal of an arc ``a -> b`` is ``(a + b) x (b - a)``
  (which equals ``2 a x b``): ``b - a`` is computed almost exactly for nearby
  points, so the normal of a short edge keeps its full relative precision,
  where ``a x b`` itself would lose it to cancellation.
"""

from __future__ import annotations

import numpy as np


def unit_vectors(ra_deg: np.ndarray | float, dec_deg: np.ndarray | float) -> np.ndarray:
    """``(..., 3)`` unit vectors of positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def to_radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ra, dec)`` in degrees of (not necessarily unit) vectors; ra in [0, 360)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    ra = np.degrees(np.arctan2(y, x)) % 360.0
    # x % 360 can round up to 360.0 for tiny negative angles.
    ra = np.where(ra >= 360.0, 0.0, ra)
    dec = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return ra, dec


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cross product over the last axis."""
    ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx], axis=-1)


def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Dot product over the last axis."""
    return np.asarray(np.sum(u * v, axis=-1))


def normalize(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit length (zero vectors stay zero)."""
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.where(length > 0, length, 1.0))


def angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in radians between unit vectors, accurate from 0 to pi.

    ``|u x v|`` is taken as ``|u x (v - u)|``, which keeps its relative
    precision for nearby vectors.
    """
    return np.asarray(np.arctan2(np.linalg.norm(cross(u, v - u), axis=-1), dot(u, v)))


def arc_normal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unit normal of the great circle through ``a`` then ``b``: ``a x b``, normalised.

    Points ``p`` with ``normal . p > 0`` lie to the left of the arc ``a -> b``
    seen from outside the sphere.
    """
    return normalize(cross(a + b, b - a))


def triple(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a . (b x c)`` computed from differences, exact for tiny triangles."""
    return dot(a, cross(b - a, c - a))


def triangle_area(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Signed area (steradians) of the spherical triangle ``a, b, c``.

    Positive when ``c`` lies to the left of ``a -> b``. Van Oosterom and
    Strackee's formula, with the triple product taken from differences.
    """
    denominator = 1.0 + dot(a, b) + dot(b, c) + dot(c, a)
    return np.asarray(2.0 * np.arctan2(triple(a, b, c), denominator))


def arc_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Angular distance (radians) from points ``p`` to the minor arcs ``a -> b``.

    ``n`` is the arcs' unit normal (:func:`arc_normal`); all arguments broadcast.
    The nearest point is the foot of the perpendicular onto the great circle
    when that foot lies on the arc, else the nearer end.
    """
    past_start = dot(p, cross(n, a)) >= 0.0
    before_end = dot(p, cross(b, n)) >= 0.0
    across = np.arcsin(np.minimum(np.abs(dot(p, n)), 1.0))
    ends = np.minimum(angle(p, a), angle(p, b))
    return np.asarray(np.where(past_start & before_end, np.minimum(across, ends), ends))


def arcs_cross(
    a1: np.ndarray, b1: np.ndarray, n1: np.ndarray, a2: np.ndarray, b2: np.ndarray, n2: np.ndarray
) -> np.ndarray:
    """Whether minor arcs ``a1 -> b1`` and ``a2 -> b2`` cross at an interior point.

    Each arc's ends must lie strictly on opposite sides of the other's great
    circle, and the two crossing points (one on each arc) must be the same
    one of the two antipodal intersections of the great circles.
    """
    s1a, s1b = dot(n2, a1), dot(n2, b1)
    s2a, s2b = dot(n1, a2), dot(n1, b2)
    straddle = (s1a * s1b < 0.0) & (s2a * s2b < 0.0)
    # The point of each arc on the other's great circle, as a positive combination of its ends.
    on_first = s1b[..., None] * a1 - s1a[..., None] * b1
    on_second = s2b[..., None] * a2 - s2a[..., None] * b2
    sign1 = np.sign(s1b - s1a)[..., None]
    sign2 = np.sign(s2b - s2a)[..., None]
    return np.asarray(straddle & (dot(sign1 * on_first, sign2 * on_second) > 0.0))
