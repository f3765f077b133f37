"""The SIA 2.0 ``POS=RANGE``: a box of coordinates, and its exact overlap with a polygon.

``RANGE ra1 ra2 dec1 dec2`` is every position with ``ra`` between ``ra1`` and
``ra2`` and ``dec`` between ``dec1`` and ``dec2``. Unlike ADQL's BOX its sides
are not all great circles: the two RA sides are meridians (great circles) and
the two dec sides are parallels (small circles). qcat's choices:

* ``ra1 > ra2`` wraps through 0 (``RANGE 350 10 ...`` is 20 degrees wide);
  a width of 360 or more, or an infinite bound, is every RA;
* ``-Inf``/``+Inf`` dec bounds are the poles; a range reaching a pole holds
  the pole itself, whatever its RA sides;
* boundaries count as inside (as for every qcat region).

The overlap test with a footprint polygon (:meth:`SkyRange.intersects_polygon`)
uses that two regions meet exactly when a vertex of one lies in the other or
their boundaries cross: when the boundaries do not meet, each region is
wholly inside the other or outside it (both are connected), so one point of
each decides. The crossings are found analytically: a polygon edge (a
great-circle arc) against a meridian side is the intersection of two great
circles; against a parallel at ``dec = d`` it is the points of the arc where
``z = sin d``, solved in closed form along the arc's great circle. Every
comparison has a slack of about 1e-9 degrees in favour of "they meet", so a
footprint that touches the range (or misses it by less) is returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qcat.geometry import Circle, GeometryError, Polygon, contains_point
from qcat.geometry.regions import distance_np
from qcat.geometry.vectors import angle, arc_normal, cross, dot, to_radec, unit_vectors

#: Slack of every comparison, in degrees (and ``SLACK_RAD`` in radians / unit-vector terms).
SLACK_DEG = 1e-9
SLACK_RAD = math.radians(SLACK_DEG)
#: Declinations this close to +-90 are the pole (their RA means nothing).
POLE_DEG = 90.0 - 1e-9


@dataclass(frozen=True)
class SkyRange:
    """``ra`` in ``[ra_min, ra_min + ra_width]`` (modulo 360), ``dec`` in ``[dec_min, dec_max]``.

    ``ra_min`` is in [0, 360); ``ra_width`` in [0, 360], 360 meaning every RA.
    Build one from the POS values with :func:`sky_range`.
    """

    ra_min: float
    ra_width: float
    dec_min: float
    dec_max: float

    @property
    def full_ra(self) -> bool:
        """Whether every RA is in the range (it is a band or a cap)."""
        return self.ra_width >= 360.0

    @property
    def ra_max(self) -> float:
        """The RA of the second meridian side (may exceed 360 when the range wraps)."""
        return self.ra_min + self.ra_width

    # -- points ------------------------------------------------------------------------

    def contains_np(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Whether each position is in the range (within the slack of its boundary)."""
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        in_dec = (dec >= self.dec_min - SLACK_DEG) & (dec <= self.dec_max + SLACK_DEG)
        if self.full_ra:
            return np.asarray(in_dec)
        offset = (ra - self.ra_min) % 360.0
        # How far outside the RA interval, in degrees along the parallel.
        beyond = np.minimum(np.maximum(offset - self.ra_width, 0.0), 360.0 - offset)
        along = beyond * np.cos(np.radians(np.clip(dec, -90.0, 90.0)))
        at_pole = np.abs(dec) >= POLE_DEG
        return np.asarray(in_dec & ((along <= SLACK_DEG) | at_pole))

    def points(self) -> list[tuple[float, float]]:
        """The range's corners (a pole it reaches counts as one); for a band, one point on
        each parallel. Every range holds its points, and they touch every boundary piece."""
        pts: list[tuple[float, float]] = []
        for dec in (self.dec_min, self.dec_max):
            if abs(dec) >= POLE_DEG:
                pts.append((0.0, math.copysign(90.0, dec)))
            elif self.full_ra:
                pts.append((0.0, dec))
            else:
                pts.extend([(self.ra_min, dec), (self.ra_max % 360.0, dec)])
        return pts

    # -- a circle holding the range (for the ADQL prefilter) ---------------------------

    def bounding_circle(self) -> Circle | None:
        """A circle that holds the whole range, or ``None`` when there is no useful one.

        A cap around a pole the range reaches holds it. Otherwise, for a range at
        most 180 degrees wide, the circle around the middle meridian at the middle
        declination through the farthest corner: the distance from that centre is
        largest at a corner, because along a parallel it grows with the RA offset
        and along a meridian side (RA offset <= 90) it has no interior maximum,
        and the region cannot hold the centre's antipode.
        """
        radii: list[tuple[float, float, float]] = []
        if self.dec_max >= POLE_DEG:
            radii.append((0.0, 90.0, 90.0 - self.dec_min))
        if self.dec_min <= -POLE_DEG:
            radii.append((0.0, -90.0, self.dec_max + 90.0))
        if not self.full_ra and self.ra_width <= 180.0:
            ra_c = (self.ra_min + self.ra_width / 2.0) % 360.0
            dec_c = (self.dec_min + self.dec_max) / 2.0
            corners = [(self.ra_min, self.dec_min), (self.ra_min, self.dec_max)]
            r = max(float(distance_np(ra_c, dec_c, ra, dec)) for ra, dec in corners)
            radii.append((ra_c, dec_c, r))
        if not radii:
            return None
        ra, dec, r = min(radii, key=lambda c: c[2])
        r += SLACK_DEG
        return Circle(ra, dec, r) if r < 180.0 else None

    # -- overlap with a polygon --------------------------------------------------------

    def intersects_polygon(self, polygon: Polygon) -> bool:
        """Whether the range and ``polygon`` share a point (boundaries count; see module)."""
        if self.full_ra and self.dec_min <= -POLE_DEG and self.dec_max >= POLE_DEG:
            return True
        ra = np.array([v[0] for v in polygon.vertices], dtype=np.float64)
        dec = np.array([v[1] for v in polygon.vertices], dtype=np.float64)
        if self.contains_np(ra, dec).any():
            return True
        if any(contains_point(polygon, p_ra, p_dec) for p_ra, p_dec in self.points()):
            return True
        a = unit_vectors(ra, dec)
        b = np.roll(a, -1, axis=0)
        return self._edges_cross_meridians(a, b) or self._edges_cross_parallels(a, b)

    def _edges_cross_meridians(self, a: np.ndarray, b: np.ndarray) -> bool:
        if self.full_ra:
            return False
        n = arc_normal(a, b)
        for ra_side in (self.ra_min, self.ra_max):
            alpha = math.radians(ra_side)
            toward = np.array([math.cos(alpha), math.sin(alpha), 0.0])
            plane = np.array([-math.sin(alpha), math.cos(alpha), 0.0])
            q = cross(n, np.broadcast_to(plane, n.shape))
            size = np.linalg.norm(q, axis=-1)
            ok = size > 1e-15  # an edge on the meridian's great circle: the point tests decide
            if not ok.any():
                continue
            q = q[ok] / size[ok, None]
            for p in (q, -q):
                on_edge = _on_arc(p, a[ok], b[ok], n[ok])
                on_side = dot(p, toward) >= -SLACK_RAD
                _, p_dec = to_radec(p)
                in_dec = (p_dec >= self.dec_min - SLACK_DEG) & (p_dec <= self.dec_max + SLACK_DEG)
                if (on_edge & on_side & in_dec).any():
                    return True
        return False

    def _edges_cross_parallels(self, a: np.ndarray, b: np.ndarray) -> bool:
        n = arc_normal(a, b)
        w = cross(n, a)  # unit, from a towards b along the edge's great circle
        length = angle(a, b)
        amplitude = np.hypot(a[:, 2], w[:, 2])
        phase = np.arctan2(w[:, 2], a[:, 2])
        for dec_side in (self.dec_min, self.dec_max):
            if abs(dec_side) >= POLE_DEG:
                continue  # a pole is a point: :meth:`points` has it
            # Along the great circle z(t) = amplitude * cos(t - phase) = sin(dec).
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = math.sin(math.radians(dec_side)) / amplitude
            reachable = np.abs(ratio) <= 1.0 + SLACK_RAD
            if not reachable.any():
                continue
            spread = np.arccos(np.clip(ratio[reachable], -1.0, 1.0))
            for t in (phase[reachable] + spread, phase[reachable] - spread):
                t = np.mod(t, 2.0 * math.pi)
                on_edge = (t <= length[reachable] + SLACK_RAD) | (t >= 2.0 * math.pi - SLACK_RAD)
                p = a[reachable] * np.cos(t)[:, None] + w[reachable] * np.sin(t)[:, None]
                p_ra, _ = to_radec(p)
                in_ra = self.contains_np(p_ra, np.full(len(p_ra), dec_side))
                if (on_edge & in_ra).any():
                    return True
        return False


def _on_arc(p: np.ndarray, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Whether points ``p`` on the great circle of each arc ``a -> b`` (normal ``n``) lie on
    the arc itself (between its ends, within the slack)."""
    after_start = dot(cross(a, p), n) >= -SLACK_RAD
    before_end = dot(cross(p, b), n) >= -SLACK_RAD
    return np.asarray(after_start & before_end)


def sky_range(ra1: float, ra2: float, dec1: float, dec2: float) -> SkyRange:
    """The range of ``POS=RANGE ra1 ra2 dec1 dec2`` (infinities allowed; see the module).

    :class:`~qcat.geometry.GeometryError` names the bad value: NaN, a dec outside
    [-90, 90], ``dec1 > dec2``.
    """
    values = {"ra1": ra1, "ra2": ra2, "dec1": dec1, "dec2": dec2}
    for name, value in values.items():
        if math.isnan(value):
            raise GeometryError(f"RANGE {name} is not a number")
    for name in ("dec1", "dec2"):
        value = values[name]
        if math.isfinite(value) and not -90.0 <= value <= 90.0:
            raise GeometryError(f"RANGE {name} = {value!r} is outside [-90, 90] degrees")
    dec_min = max(dec1, -90.0)
    dec_max = min(dec2, 90.0)
    if dec_min > dec_max:
        raise GeometryError(f"RANGE dec1 = {dec1!r} is larger than dec2 = {dec2!r}")
    if not (math.isfinite(ra1) and math.isfinite(ra2)) or ra2 - ra1 >= 360.0:
        return SkyRange(0.0, 360.0, dec_min, dec_max)
    width = ra2 - ra1 if ra2 >= ra1 else (ra2 - ra1) % 360.0
    ra_min = ra1 % 360.0
    return SkyRange(0.0 if ra_min >= 360.0 else ra_min, width, dec_min, dec_max)
