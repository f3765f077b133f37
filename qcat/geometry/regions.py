"""ADQL geometry values and their exact spherical relations.

Immutable values: :class:`Point`, :class:`Circle` (all points within an
angular distance of a centre), :class:`Polygon` (vertices joined by great
circle arcs; the region is the smaller of the two the edges bound) and
:class:`Box` (the ADQL 2.1 / STC box: a cross of two great-circle arms with
great-circle sides at right angles to them, see :meth:`Box.to_polygon`).
Coordinates are ICRS degrees; ra is taken modulo 360 and dec must lie in
[-90, 90]. Boundaries are inclusive: a point on the edge of a region is in it.

The point tests here are the same formulas :mod:`qcat.geometry.sql` sends to
DuckDB, evaluated by numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qcat.geometry.errors import GeometryError
from qcat.geometry.polygon import EDGE_SLACK, PolygonShape, analyse
from qcat.geometry.vectors import (
    angle,
    arcs_cross,
    cross,
    dot,
    normalize,
    to_radec,
    unit_vectors,
)

SQ_DEG_PER_SR = (180.0 / math.pi) ** 2


def _check_position(ra: float, dec: float, what: str) -> tuple[float, float]:
    """``(ra, dec)`` as floats; :class:`GeometryError` unless finite and dec in [-90, 90]."""
    try:
        ra_f, dec_f = float(ra), float(dec)
    except (TypeError, ValueError):
        raise GeometryError(f"{what}: coordinates must be numbers, got ({ra!r}, {dec!r})") from None
    if not (math.isfinite(ra_f) and math.isfinite(dec_f)):
        raise GeometryError(f"{what}: coordinates must be finite, got ({ra_f!r}, {dec_f!r})")
    if not -90.0 <= dec_f <= 90.0:
        raise GeometryError(f"{what}: dec = {dec_f!r} is outside [-90, 90] degrees")
    return ra_f, dec_f


def _check_size(value: float, what: str, upper: float, *, inclusive: bool) -> float:
    """A positive angle in degrees up to ``upper``."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{what} must be a number of degrees, got {value!r}") from None
    too_big = size > upper if inclusive else size >= upper
    if not math.isfinite(size) or size <= 0.0 or too_big:
        bound = f"at most {upper:g}" if inclusive else f"less than {upper:g}"
        raise GeometryError(f"{what} must be positive and {bound} degrees, got {size!r}")
    return size


@dataclass(frozen=True)
class Point:
    """A position: ``ra``, ``dec`` in degrees."""

    ra: float
    dec: float

    def __post_init__(self) -> None:
        ra, dec = _check_position(self.ra, self.dec, "POINT")
        object.__setattr__(self, "ra", ra)
        object.__setattr__(self, "dec", dec)

    @cached_property
    def vector(self) -> np.ndarray:
        """Unit vector of the position."""
        return unit_vectors(self.ra, self.dec)


@dataclass(frozen=True)
class Circle:
    """All points within ``radius`` degrees (0 < radius <= 180) of (``ra``, ``dec``)."""

    ra: float
    dec: float
    radius: float

    def __post_init__(self) -> None:
        ra, dec = _check_position(self.ra, self.dec, "CIRCLE centre")
        object.__setattr__(self, "ra", ra)
        object.__setattr__(self, "dec", dec)
        object.__setattr__(
            self, "radius", _check_size(self.radius, "CIRCLE radius", 180.0, inclusive=True)
        )

    @cached_property
    def vector(self) -> np.ndarray:
        """Unit vector of the centre."""
        return unit_vectors(self.ra, self.dec)


@dataclass(frozen=True)
class Polygon:
    """Vertices ``((ra, dec), ...)`` in degrees joined by great-circle arcs, the last to the first.

    The region is the smaller of the two the edges bound, whatever the vertex
    order (see ``docs/geometry.md``). Construction validates the polygon and
    raises :class:`GeometryError` when it is not simple.
    """

    vertices: tuple[tuple[float, float], ...]
    shape: PolygonShape = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            raw = [tuple(v) for v in self.vertices]
        except TypeError:
            raise GeometryError("POLYGON vertices must be (ra, dec) pairs") from None
        if any(len(v) != 2 for v in raw):
            raise GeometryError("POLYGON vertices must be (ra, dec) pairs")
        vertices = tuple(
            _check_position(ra, dec, f"POLYGON vertex {i + 1}") for i, (ra, dec) in enumerate(raw)
        )
        object.__setattr__(self, "vertices", vertices)
        ra = np.array([v[0] for v in vertices], dtype=np.float64)
        dec = np.array([v[1] for v in vertices], dtype=np.float64)
        object.__setattr__(self, "shape", analyse(ra, dec))


@dataclass(frozen=True)
class Box:
    """The ADQL BOX: centre (``ra``, ``dec``), full ``width`` and ``height`` in degrees.

    ADQL 2.1 (deprecated there, kept for compatibility) defines it as the
    STC box: a cross centred on the centre with arms along the coordinate
    axes at the centre, half the width to either side along the great circle
    heading east and half the height along the meridian; each side is the
    great circle through an arm's end at right angles to that arm. Width and
    height must be below 180 degrees.
    """

    ra: float
    dec: float
    width: float
    height: float

    def __post_init__(self) -> None:
        ra, dec = _check_position(self.ra, self.dec, "BOX centre")
        object.__setattr__(self, "ra", ra)
        object.__setattr__(self, "dec", dec)
        object.__setattr__(
            self, "width", _check_size(self.width, "BOX width", 180.0, inclusive=False)
        )
        object.__setattr__(
            self, "height", _check_size(self.height, "BOX height", 180.0, inclusive=False)
        )

    def to_polygon(self) -> Polygon:
        """The box as a 4-vertex :class:`Polygon` (corners from the sides' intersections)."""
        return self._polygon

    @cached_property
    def _polygon(self) -> Polygon:
        return _box_polygon(self)


def _box_polygon(box: Box) -> Polygon:
    """Corners of the STC box: where the great-circle sides meet."""
    ra, dec = math.radians(box.ra), math.radians(box.dec)
    centre = unit_vectors(box.ra, box.dec)
    # East and north unit tangents at the centre (at a pole, oriented by the given ra).
    east = np.array([-math.sin(ra), math.cos(ra), 0.0])
    north = np.array([-math.sin(dec) * math.cos(ra), -math.sin(dec) * math.sin(ra), math.cos(dec)])
    half_w, half_h = math.radians(box.width) / 2.0, math.radians(box.height) / 2.0
    corners = []
    for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
        arm_x = math.cos(half_w) * centre + sx * math.sin(half_w) * east
        arm_y = math.cos(half_h) * centre + sy * math.sin(half_h) * north
        # Side through arm_x contains the pole of the east arm's great circle (+-north);
        # side through arm_y contains east. The corner is on both planes, on the centre's side.
        corner = normalize(cross(cross(arm_x, north), cross(arm_y, east)))
        if float(dot(corner, centre)) < 0.0:
            corner = -corner
        corners.append(corner)
    ra_c, dec_c = to_radec(np.array(corners))
    return Polygon(tuple((float(r), float(d)) for r, d in zip(ra_c, dec_c, strict=True)))


Region = Point | Circle | Polygon | Box


def as_shape(region: Region) -> Point | Circle | Polygon:
    """The region with a box replaced by its polygon."""
    return region.to_polygon() if isinstance(region, Box) else region


def _haversine_terms(ra: np.ndarray, dec: np.ndarray, c_ra: float, c_dec: float) -> np.ndarray:
    """``sin^2(d / 2)`` for the distance ``d`` from each point to (``c_ra``, ``c_dec``)."""
    d_dec = np.sin(np.radians(dec - c_dec) / 2.0)
    d_ra = np.sin(np.radians(ra - c_ra) / 2.0)
    return np.asarray(
        d_dec * d_dec + math.cos(math.radians(c_dec)) * np.cos(np.radians(dec)) * d_ra * d_ra
    )


def circle_test(circle: Circle) -> tuple[float, float, float, bool]:
    """``(ra, dec, threshold, inside_is_below)`` of the haversine form of a circle test.

    Radii up to 90 degrees compare ``sin^2(d / 2)`` with ``sin^2(r / 2)``;
    larger ones compare the distance to the antipode of the centre with
    ``180 - r``, where the haversine keeps its precision.
    """
    if circle.radius <= 90.0:
        return circle.ra, circle.dec, math.sin(math.radians(circle.radius) / 2.0) ** 2, True
    antipode_ra = (circle.ra + 180.0) % 360.0
    limit = math.sin(math.radians(180.0 - circle.radius) / 2.0) ** 2
    return antipode_ra, -circle.dec, limit, False


def contains_np(region: Region, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Vectorised :func:`contains_point`: same formulas as the SQL of :mod:`qcat.geometry.sql`."""
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    shape = as_shape(region)
    if isinstance(shape, Circle):
        c_ra, c_dec, limit, below = circle_test(shape)
        h = _haversine_terms(ra, dec, c_ra, c_dec)
        return np.asarray(h <= limit if below else h >= limit)
    if isinstance(shape, Point):
        return np.asarray(distance_np(shape.ra, shape.dec, ra, dec) <= 0.0)
    return plane_sides_contains(shape.shape, ra, dec)


def plane_sides(shape: PolygonShape, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``normal . p`` for every plane of a polygon, as the SQL computes it.

    The form ``A cos(dec) cos(ra - alpha) + z sin(dec)`` (``A``, ``alpha`` the
    polar form of the normal's x and y) needs three trigonometric calls
    instead of five.
    """
    a, alpha, z = plane_coefficients(shape)
    dec_r = np.radians(dec)[:, None]
    return np.asarray(
        a * np.cos(dec_r) * np.cos(np.radians(ra[:, None] - alpha)) + z * np.sin(dec_r)
    )


def plane_coefficients(shape: PolygonShape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, alpha_deg, z)`` of each plane normal: ``n = (A cos alpha, A sin alpha, z)``."""
    n = shape.planes
    return np.hypot(n[:, 0], n[:, 1]), np.degrees(np.arctan2(n[:, 1], n[:, 0])), n[:, 2]


def plane_sides_contains(shape: PolygonShape, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Point-in-polygon through the convex pieces' sign tests."""
    side = plane_sides(shape, np.atleast_1d(ra), np.atleast_1d(dec))
    inside = np.zeros(side.shape[0], dtype=bool)
    for piece in shape.pieces:
        ok = np.ones(side.shape[0], dtype=bool)
        for h in piece:
            if h.sign > 0:
                ok &= side[:, h.plane] >= -EDGE_SLACK
            else:
                ok &= side[:, h.plane] <= EDGE_SLACK
        inside |= ok
    return inside.reshape(np.shape(ra))


def contains_point(region: Region, ra: float, dec: float) -> bool:
    """Whether (``ra``, ``dec``) lies in ``region`` or on its boundary."""
    ra_f, dec_f = _check_position(ra, dec, "POINT")
    return bool(contains_np(region, np.array([ra_f]), np.array([dec_f]))[0])


def distance_np(
    ra1: np.ndarray | float,
    dec1: np.ndarray | float,
    ra2: np.ndarray | float,
    dec2: np.ndarray | float,
) -> np.ndarray:
    """Great-circle distance in degrees, Vincenty's atan2 form (exact near 0 and 180 degrees)."""
    phi1, phi2 = np.radians(dec1), np.radians(dec2)
    d_ra = np.radians(np.asarray(ra2, dtype=np.float64) - ra1)
    s = np.sin(d_ra / 2.0) ** 2
    across = np.cos(phi2) * np.sin(d_ra)
    along = np.sin(phi2 - phi1) + 2.0 * np.sin(phi1) * np.cos(phi2) * s
    near = np.cos(phi2 - phi1) - 2.0 * np.cos(phi1) * np.cos(phi2) * s
    return np.asarray(np.degrees(np.arctan2(np.hypot(across, along), near)))


def distance_deg(p: Point, q: Point) -> float:
    """Great-circle distance in degrees between two points (ADQL DISTANCE)."""
    return float(distance_np(p.ra, p.dec, q.ra, q.dec))


def area_sq_deg(region: Region) -> float:
    """Area in square degrees (ADQL AREA); a point has none."""
    shape = as_shape(region)
    if isinstance(shape, Point):
        return 0.0
    if isinstance(shape, Circle):
        # 2 pi (1 - cos r), written with sin^2 so tiny circles keep their digits.
        return 4.0 * math.pi * math.sin(math.radians(shape.radius) / 2.0) ** 2 * SQ_DEG_PER_SR
    return shape.shape.area_sr * SQ_DEG_PER_SR


def centroid(region: Region) -> Point:
    """The centroid (ADQL CENTROID): the direction of the mean position vector over the region.

    A circle's is its centre and a point's is itself; a polygon's is its
    area-weighted mean unit vector, projected back onto the sphere.
    """
    shape = as_shape(region)
    if isinstance(shape, Point):
        return shape
    if isinstance(shape, Circle):
        return Point(shape.ra, shape.dec)
    ra, dec = to_radec(shape.shape.integral_of_position())
    return Point(float(ra), float(dec))


def signed_distance(region: Region, p: np.ndarray) -> np.ndarray:
    """For unit vectors ``p``: angular distance (radians) to the region when outside, and
    minus the distance to its boundary when inside (or on it).

    Used by the HEALPix coverage, which needs a lower bound of the distance
    to the region; errors are at the 1e-15 radian level.
    """
    shape = as_shape(region)
    if isinstance(shape, Point):
        return angle(p, shape.vector)
    if isinstance(shape, Circle):
        return np.asarray(angle(p, shape.vector) - math.radians(shape.radius))
    return shape.shape.signed_distance(p)


def _polygon_edges(shape: PolygonShape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end and unit normal of every edge."""
    a = shape.vectors
    return a, np.roll(a, -1, axis=0), shape.edge_normals


def regions_intersect(a: Region, b: Region) -> bool:
    """Whether two regions share at least one point (ADQL INTERSECTS; boundaries count)."""
    sa, sb = as_shape(a), as_shape(b)
    if isinstance(sa, Point):
        return contains_point(sb, sa.ra, sa.dec)
    if isinstance(sb, Point):
        return contains_point(sa, sb.ra, sb.dec)
    if isinstance(sa, Circle) and isinstance(sb, Circle):
        return float(distance_np(sa.ra, sa.dec, sb.ra, sb.dec)) <= sa.radius + sb.radius
    if isinstance(sa, Circle) or isinstance(sb, Circle):
        circle, poly = (sa, sb) if isinstance(sa, Circle) else (sb, sa)
        assert isinstance(circle, Circle) and isinstance(poly, Polygon)
        # The circle meets the polygon when its centre is within radius of the region.
        d = float(signed_distance(poly, circle.vector[None, :])[0])
        return d <= math.radians(circle.radius)
    assert isinstance(sa, Polygon) and isinstance(sb, Polygon)
    if contains_np(sb, *_vertex_coords(sa)).any() or contains_np(sa, *_vertex_coords(sb)).any():
        return True
    # Neither holds a vertex of the other (vertices on an edge count as inside):
    # they meet only if two edges cross.
    a1, b1, n1 = (x[:, None, :] for x in _polygon_edges(sa.shape))
    a2, b2, n2 = (x[None, :, :] for x in _polygon_edges(sb.shape))
    return bool(arcs_cross(a1, b1, n1, a2, b2, n2).any())


def bounding_circle(ra_min: float, ra_max: float, dec_min: float, dec_max: float) -> Circle:
    """A circle holding every point with ra in [ra_min, ra_max] and dec in [dec_min, dec_max].

    From the centre (mid ra, mid dec), any point of the box is reached along
    the centre's meridian to the point's declination (at most half the dec
    range), then along that parallel (at most half the ra range times the
    largest cos(dec) in the box); the great-circle distance is no longer than
    that path. Conservative, not tight; a small slack covers rounding.
    """
    half_ra = max(0.0, (ra_max - ra_min) / 2.0)
    half_dec = max(0.0, (dec_max - dec_min) / 2.0)
    nearest_equator = 0.0 if dec_min <= 0.0 <= dec_max else min(abs(dec_min), abs(dec_max))
    reach = half_dec + half_ra * math.cos(math.radians(nearest_equator)) + BOUNDING_SLACK_DEG
    return Circle(ra_min + half_ra, dec_min + half_dec, min(180.0, reach))


#: Added to :func:`bounding_circle` radii (degrees): far above float rounding.
BOUNDING_SLACK_DEG = 1e-9


def _vertex_coords(poly: Polygon) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([v[0] for v in poly.vertices], dtype=np.float64),
        np.array([v[1] for v in poly.vertices], dtype=np.float64),
    )
