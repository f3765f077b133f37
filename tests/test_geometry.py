"""Exact spherical geometry: regions, areas, centroids, intersections and HEALPix coverage.

Point tests are checked against :mod:`qcat.geometry.reference`, which shares
no formula with the code under test (astropy separations, a box test in the
box's own frame, winding numbers for polygons). Points within
``BOUNDARY_TOL_DEG`` of a boundary may be decided either way by rounding and
are left out of the comparison; every region is probed with points 1e-7
degrees either side of its boundary, which must all be decided right.
"""

from __future__ import annotations

import math
from unittest import mock

import healpy as hp
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from partition.healpix import radec_to_healpix29
from partition.layout import Partition, PartitionSet
from qcat.errors import QcatError
from qcat.geometry import (
    Box,
    Circle,
    GeometryError,
    Point,
    Polygon,
    area_sq_deg,
    centroid,
    chunks_for_region,
    chunks_within,
    contains_point,
    coverage,
    distance_deg,
    region_ranges,
    regions_intersect,
)
from qcat.geometry.coverage import cover, limit_ranges, pixel_radius
from qcat.geometry.reference import boundary_distance_deg, inside_np, polygon_area_sq_deg
from qcat.geometry.regions import contains_np

BOUNDARY_TOL_DEG = 1e-9
NEAR_DEG = 1e-7  # probes this far either side of a boundary must be exact
ARCSEC = 1.0 / 3600.0
SQ_DEG_PER_SR = (180.0 / math.pi) ** 2
SKY_29 = 12 * 4**29


# ---------------------------------------------------------------- helpers


def tangent_frame(ra: float, dec: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, east and north unit vectors at a position."""
    a, d = math.radians(ra), math.radians(dec)
    c = np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
    e = np.array([-math.sin(a), math.cos(a), 0.0])
    n = np.cross(c, e)
    return c, e, n


def radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) degrees of unit vectors."""
    v = np.atleast_2d(v)
    ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[:, 2], -1.0, 1.0)))
    return np.where(ra >= 360.0, 0.0, ra), dec


def offsets(ra, dec, dist_deg, bearing) -> np.ndarray:
    """Unit vectors at angular distances and bearings (radians, from east towards north)
    from positions; every argument broadcasts."""
    a, d = (
        np.radians(np.asarray(ra, dtype=np.float64)),
        np.radians(np.asarray(dec, dtype=np.float64)),
    )
    c = np.stack(np.broadcast_arrays(np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)), -1)
    e = np.stack(np.broadcast_arrays(-np.sin(a), np.cos(a), np.zeros_like(a)), -1)
    n = np.cross(c, e)
    r = np.radians(np.asarray(dist_deg, dtype=np.float64))[..., None]
    b = np.asarray(bearing, dtype=np.float64)[..., None]
    return np.cos(r) * c + np.sin(r) * (np.cos(b) * e + np.sin(b) * n)


def polygon_around(
    ra: float, dec: float, size: float, k: int, seed: int, *, convex: bool, reverse: bool
) -> Polygon:
    """A simple polygon of ``k`` vertices within ``size`` degrees of a centre.

    Vertices go round the centre at jittered bearings (gaps below 180
    degrees keep the polygon star-shaped, hence simple); convex ones sit on a
    circle, others at random radii between 35% and 100% of ``size``.
    """
    rng = np.random.default_rng(seed)
    bearings = 2 * math.pi * (np.arange(k) + rng.uniform(0.0, 0.4, k)) / k + rng.uniform(0, 7)
    radii = np.full(k, size) if convex else size * rng.uniform(0.35, 1.0, k)
    ra_v, dec_v = radec(offsets(ra, dec, radii, bearings))
    vertices = list(zip(ra_v.tolist(), dec_v.tolist(), strict=True))
    return Polygon(tuple(vertices[::-1] if reverse else vertices))


def shape_of(region):
    return region.to_polygon() if isinstance(region, Box) else region


def probe_points(region, seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Points near and across the region: inside and out, 1e-7 degrees from the boundary,
    around the vertices, and anywhere on the sky."""
    rng = np.random.default_rng(seed)
    shape = shape_of(region)
    if isinstance(shape, Circle):
        c_ra, c_dec, reach = shape.ra, shape.dec, shape.radius
        bearing = rng.uniform(0, 2 * math.pi, n)
        side = rng.choice([-NEAR_DEG, NEAR_DEG], n)
        edge = offsets(c_ra, c_dec, np.clip(shape.radius + side, 0, 180), bearing)
    else:
        v = shape.shape.vectors
        w = np.roll(v, -1, axis=0)
        normals = np.cross(v, w - v)
        normals /= np.linalg.norm(normals, axis=1)[:, None]
        which = rng.integers(0, len(v), n)
        t = rng.uniform(0, 1, n)[:, None]
        # Points on the edges (interpolated on the chord, then pushed across the edge).
        on = v[which] * (1 - t) + w[which] * t
        on /= np.linalg.norm(on, axis=1)[:, None]
        side = np.radians(rng.choice([-NEAR_DEG, NEAR_DEG], n))[:, None]
        edge = np.cos(side) * on + np.sin(side) * normals[which]
        mean = v.sum(axis=0)
        c_ra_a, c_dec_a = radec(mean / np.linalg.norm(mean))
        c_ra, c_dec = float(c_ra_a[0]), float(c_dec_a[0])
        reach = float(
            np.degrees(np.max(np.arccos(np.clip(v @ (mean / np.linalg.norm(mean)), -1, 1))))
        )
        corner = v[rng.integers(0, len(v), n // 4)]
        jitter = (
            rng.normal(size=corner.shape)
            * np.radians(reach)
            * 10.0 ** rng.uniform(-9, -1, (len(corner), 1))
        )
        corner = corner + jitter
        edge = np.vstack([edge, corner / np.linalg.norm(corner, axis=1)[:, None]])
    near = cap_samples(c_ra, c_dec, min(180.0, 1.5 * reach), n, seed)
    anywhere = rng.normal(size=(n // 10, 3))
    anywhere /= np.linalg.norm(anywhere, axis=1)[:, None]
    ra, dec = radec(np.vstack([edge, near, anywhere]))
    return ra, dec


def decidable(ra: np.ndarray, dec: np.ndarray, region) -> np.ndarray:
    """Points farther than the boundary tolerance from the region's boundary."""
    return boundary_distance_deg(ra, dec, region) > BOUNDARY_TOL_DEG


# ---------------------------------------------------------------- strategies

special_ra = st.sampled_from([0.0, 359.99999, 0.00001, 180.0, 90.0, 270.0])
special_dec = st.sampled_from([90.0, -90.0, 89.9999, -89.99, 0.0, 41.8103148958])
ras = st.one_of(st.floats(0.0, 360.0, exclude_max=True), special_ra)
decs = st.one_of(st.floats(-90.0, 90.0), special_dec)
# From 1 arcsec to 60 degrees, evenly in log.
sizes = st.floats(math.log10(ARCSEC), math.log10(60.0)).map(lambda x: 10.0**x)


@st.composite
def circles(draw):
    radius = draw(st.one_of(sizes, sizes, sizes, st.sampled_from([90.0, 120.0, 179.0, 179.9999])))
    return Circle(draw(ras), draw(decs), radius)


@st.composite
def boxes(draw):
    return Box(draw(ras), draw(decs), draw(sizes), draw(sizes))


@st.composite
def polygons(draw, convex: bool | None = None):
    is_convex = draw(st.booleans()) if convex is None else convex
    k = draw(st.integers(3, 9) if is_convex else st.integers(5, 14))
    return polygon_around(
        draw(ras),
        draw(decs),
        draw(sizes),
        k,
        draw(st.integers(0, 2**32 - 1)),
        convex=is_convex,
        reverse=draw(st.booleans()),
    )


regions = st.one_of(circles(), boxes(), polygons())


# ---------------------------------------------------------------- point tests


def check_agreement(region, seed: int) -> None:
    ra, dec = probe_points(region, seed)
    ok = decidable(ra, dec, region)
    assert ok.mean() > 0.9
    got = contains_np(region, ra, dec)
    want = inside_np(ra, dec, region)
    bad = np.flatnonzero(ok & (got != want))
    assert len(bad) == 0, (region, ra[bad[:5]], dec[bad[:5]], got[bad[:5]])
    # The probes straddle the boundary, so both answers must occur.
    assert want[ok].any() and not want[ok].all()


@settings(max_examples=40, deadline=None)
@given(circles(), st.integers(0, 1000))
def test_circle_contains_matches_reference(circle, seed):
    check_agreement(circle, seed)


@settings(max_examples=40, deadline=None)
@given(boxes(), st.integers(0, 1000))
def test_box_contains_matches_reference(box, seed):
    check_agreement(box, seed)


@settings(max_examples=40, deadline=None)
@given(polygons(convex=True), st.integers(0, 1000))
def test_convex_polygon_contains_matches_reference(polygon, seed):
    check_agreement(polygon, seed)


@settings(max_examples=40, deadline=None)
@given(polygons(convex=False), st.integers(0, 1000))
def test_concave_polygon_contains_matches_reference(polygon, seed):
    check_agreement(polygon, seed)


def c_shaped_band() -> Polygon:
    """A thin band 350 degrees long around the equator: in no hemisphere, far from convex."""
    top = [(float(lon), 1.0) for lon in range(0, 351, 50)]
    bottom = [(float(lon), -1.0) for lon in range(350, -1, -50)]
    return Polygon(tuple(top + bottom))


def comb() -> Polygon:
    """A comb with five teeth pointing north, across RA = 0."""
    vertices = [(350.0, -10.0), (20.0, -10.0)]
    for i in range(5):
        east = 20.0 - 6.0 * i
        vertices += [
            (east % 360.0, 10.0),
            ((east - 3.0) % 360.0, 10.0),
            ((east - 3.0) % 360.0, 0.0),
        ]
    vertices[-1] = (350.0, 0.0)
    return Polygon(tuple(vertices))


@pytest.mark.parametrize(
    "region",
    [
        c_shaped_band(),
        comb(),
        Polygon(((0.0, 80.0), (90.0, 80.0), (180.0, 80.0), (270.0, 80.0))),  # holds the pole
        Polygon(((0.0, -60.0), (240.0, -60.0), (120.0, -60.0))),  # holds the south pole
        Polygon(((0.0, 90.0), (0.0, 0.0), (0.0, -90.0), (90.0, 0.0))),  # a lune, flat corners
        Polygon(((359.9, -0.1), (0.1, -0.1), (0.1, 0.1), (359.9, 0.1))),  # across RA = 0
        Box(0.0, 90.0, 10.0, 10.0),
        Box(359.99, -89.9, 1.0, 30.0),
        Box(45.0, 30.0, 170.0, 100.0),
        Circle(0.0, -90.0, 0.5),
        Circle(359.9999, 12.0, ARCSEC),
    ],
    ids=lambda r: type(r).__name__,
)
def test_awkward_regions_match_reference(region):
    for seed in range(3):
        check_agreement(region, seed)


def test_poles_and_wrap_points():
    cap = Polygon(((0.0, 80.0), (90.0, 80.0), (180.0, 80.0), (270.0, 80.0)))
    assert contains_point(cap, 123.0, 90.0)
    assert not contains_point(cap, 123.0, -90.0)
    assert contains_point(Circle(359.9, 0.0, 0.2), 0.05, 0.0)
    assert contains_point(Circle(0.05, 0.0, 0.2), 359.9, 0.0)
    assert not contains_point(Circle(0.05, 0.0, 0.2), 359.7, 0.0)
    assert contains_point(Circle(10.0, -90.0, 1.0), 250.0, -89.5)
    assert contains_point(Circle(0.0, 0.0, 180.0), 180.0, 0.0)
    # 360 is the same meridian as 0.
    assert contains_point(Box(0.0, 0.0, 1.0, 1.0), 360.0, 0.2)


def test_boundary_is_inclusive():
    # Vertices are on the boundary; so are points a hair inside.
    tri = Polygon(((10.0, 10.0), (20.0, 10.0), (15.0, 20.0)))
    for ra, dec in tri.vertices:
        assert contains_point(tri, ra, dec)
    assert contains_point(Circle(0.0, 0.0, 1.0), 0.0, 1.0 - 1e-12)
    assert not contains_point(Circle(0.0, 0.0, 1.0), 0.0, 1.0 + 1e-9)


def test_vertex_order_does_not_matter():
    vertices = ((10.0, 10.0), (10.2, 10.0), (10.2, 10.2), (10.0, 10.2))  # DALI's example
    forward, backward = Polygon(vertices), Polygon(vertices[::-1])
    assert forward.shape.reversed != backward.shape.reversed
    assert area_sq_deg(forward) == pytest.approx(area_sq_deg(backward), rel=1e-12)
    assert area_sq_deg(forward) < 0.05
    for p in ((10.1, 10.1), (10.3, 10.1), (190.0, -10.0)):
        assert contains_point(forward, *p) == contains_point(backward, *p)
    assert contains_point(forward, 10.1, 10.1)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Point(10.0, 90.5), "dec"),
        (lambda: Point(math.nan, 0.0), "finite"),
        (lambda: Circle(10.0, -91.0, 1.0), "dec"),
        (lambda: Circle(10.0, 0.0, 0.0), "radius"),
        (lambda: Circle(10.0, 0.0, -1.0), "radius"),
        (lambda: Circle(10.0, 0.0, 180.5), "radius"),
        (lambda: Circle(10.0, 0.0, math.inf), "radius"),
        (lambda: Box(10.0, 0.0, 180.0, 1.0), "width"),
        (lambda: Box(10.0, 0.0, 1.0, 0.0), "height"),
        (lambda: Polygon(((0.0, 0.0), (1.0, 0.0))), "at least 3"),
        (lambda: Polygon(tuple((i * 0.3, (i % 2) * 0.1) for i in range(1001))), "at most 1000"),
        (lambda: Polygon(((0.0, 0.0), (1.0, 0.0), (1.0, 0.0), (0.0, 1.0))), "same point"),
        (lambda: Polygon(((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0))), "do not repeat"),
        (lambda: Polygon(((0.0, 0.0), (180.0, 0.0), (90.0, 45.0))), "antipodal"),
        (lambda: Polygon(((0.0, 0.0), (2.0, 2.0), (2.0, 0.0), (0.0, 2.0))), "cross"),
        (lambda: Polygon(((0.0, 0.0), (2.0, 0.0), (1.0, 0.0), (1.0, 1.0))), "fold back"),
        (lambda: Polygon(((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 0.0), (0.0, 4.0))), "touch"),
        (lambda: Polygon(((0.0, 0.0), (120.0, 0.0), (240.0, 0.0))), "equal area"),
        (lambda: Polygon(((0.0, 0.0), (1.0, 95.0), (1.0, 1.0))), "dec"),
        (lambda: Polygon(((0.0, 0.0), (1.0,), (1.0, 1.0))), "pairs"),  # type: ignore[arg-type]
    ],
)
def test_invalid_regions_are_rejected(make, message):
    with pytest.raises(GeometryError, match=message) as caught:
        make()
    assert isinstance(caught.value, QcatError)


def test_regions_are_immutable_values():
    c = Circle(10.0, 20.0, 1.0)
    assert c == Circle(10, 20, 1) and hash(c) == hash(Circle(10, 20, 1))
    with pytest.raises(AttributeError):
        c.radius = 2.0  # type: ignore[misc]
    p = Polygon(((0, 0), (1, 0), (0, 1)))
    assert p == Polygon(((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)))
    assert p.vertices == ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))


# ---------------------------------------------------------------- distance, area, centroid


@settings(max_examples=60, deadline=None)
@given(ras, decs, ras, decs, st.floats(-12, 0))
def test_distance_matches_astropy(ra1, dec1, ra2, dec2, log_scale):
    # Half the pairs are shrunk towards the first point: separations down to 1e-12 degrees.
    p = Point(ra1, dec1)
    q_vec = offsets(ra1, dec1, np.array([10.0**log_scale]), np.array([ra2]))
    q_ra, q_dec = radec(q_vec)
    for q in (Point(ra2, dec2), Point(float(q_ra[0]), float(q_dec[0]))):
        want = (
            SkyCoord(p.ra * u.deg, p.dec * u.deg)
            .separation(SkyCoord(q.ra * u.deg, q.dec * u.deg))
            .deg
        )
        assert distance_deg(p, q) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_distance_extremes():
    assert distance_deg(Point(0, 90), Point(123, -90)) == pytest.approx(180.0, abs=1e-12)
    assert distance_deg(Point(10, 20), Point(190, -20)) == pytest.approx(180.0, abs=1e-12)
    assert distance_deg(Point(359.9999999, 0), Point(0.0000001, 0)) == pytest.approx(2e-7, rel=1e-6)
    assert distance_deg(Point(10, 20), Point(10, 20)) == 0.0


@settings(max_examples=40, deadline=None)
@given(circles())
def test_circle_area_is_cap_area(circle):
    r = math.radians(circle.radius)
    # 2 pi (1 - cos r); for small r from the Taylor series, as 1 - cos r loses digits.
    if r < 0.1:
        one_minus_cos = sum(
            (-1) ** (k + 1) * r ** (2 * k) / math.factorial(2 * k) for k in range(1, 7)
        )
    else:
        one_minus_cos = 1 - math.cos(r)
    want = 2 * math.pi * one_minus_cos * SQ_DEG_PER_SR
    assert area_sq_deg(circle) == pytest.approx(want, rel=1e-12)
    assert centroid(circle) == Point(circle.ra, circle.dec)


def cap_samples(ra: float, dec: float, reach_deg: float, n: int, seed: int) -> np.ndarray:
    """Unit vectors uniform over the cap of radius ``reach_deg`` (exact for tiny caps)."""
    rng = np.random.default_rng(seed)
    half = math.radians(reach_deg) / 2.0
    dist = np.degrees(2.0 * np.arcsin(np.sqrt(rng.uniform(0, 1, n)) * math.sin(half)))
    return offsets(ra, dec, dist, rng.uniform(0, 2 * math.pi, n))


def bounding_cap(region) -> tuple[float, float, float]:
    """Centre (ra, dec) and radius (deg) of a cap holding a polygon or box."""
    v = shape_of(region).shape.vectors
    centre = v.sum(axis=0) / np.linalg.norm(v.sum(axis=0))
    reach = math.degrees(float(np.max(np.arccos(np.clip(v @ centre, -1, 1))))) * (1 + 1e-6)
    c_ra, c_dec = radec(centre)
    return float(c_ra[0]), float(c_dec[0]), reach


def monte_carlo(region, n: int, seed: int) -> tuple[float, float, np.ndarray, float]:
    """Area (sq deg) and its standard error, mean position and its standard error (deg),
    from uniform samples of a cap around the region, classified by the reference."""
    c_ra, c_dec, reach = bounding_cap(region)
    points = cap_samples(c_ra, c_dec, reach, n, seed)
    ra, dec = radec(points)
    inside = inside_np(ra, dec, region)
    p = inside.mean()
    chosen = points[inside]
    mean = chosen.mean(axis=0)
    spread = np.degrees(np.sqrt(((chosen - mean) ** 2).sum(axis=1).mean()))
    cap = cap_area(reach)
    return cap * p, cap * math.sqrt(p * (1 - p) / n), mean, spread / math.sqrt(len(chosen))


def cap_area(radius_deg: float) -> float:
    return 4 * math.pi * math.sin(math.radians(radius_deg) / 2) ** 2 * SQ_DEG_PER_SR


@settings(max_examples=25, deadline=None)
@given(st.one_of(boxes(), polygons()), st.integers(0, 1000))
def test_polygon_area_and_centroid_by_monte_carlo(region, seed):
    # Sampling needs the region to fill a fair part of its bounding cap (not a thin sliver).
    assume(area_sq_deg(region) >= 0.002 * cap_area(bounding_cap(region)[2]))
    area, area_error, mean, mean_error = monte_carlo(region, 100_000, seed)
    # Six standard errors: a false alarm is a one-in-a-few-hundred-million event.
    assert area_sq_deg(region) == pytest.approx(area, abs=6 * area_error)
    m_ra, m_dec = radec(mean / np.linalg.norm(mean))
    assert distance_deg(centroid(region), Point(float(m_ra[0]), float(m_dec[0]))) <= 6 * mean_error


@settings(max_examples=60, deadline=None)
@given(st.one_of(boxes(), polygons()))
def test_polygon_area_matches_apex_triangle_sum(region):
    # The reference sums signed triangles with a far-away pole (another formula);
    # its sum of large terms is good to about 1e-14 sr absolute.
    assert area_sq_deg(region) == pytest.approx(
        polygon_area_sq_deg(shape_of(region)), rel=1e-9, abs=1e-14 * SQ_DEG_PER_SR
    )


@settings(max_examples=40, deadline=None)
@given(boxes())
def test_box_centroid_is_its_centre(box):
    # The box is symmetric about both arms, so the centroid is its centre. The boundary
    # sum behind CENTROID cancels down to the area: its rounding is about 1e-16 times
    # the perimeter, relative to the area.
    poly = box.to_polygon()
    perimeter = math.radians(2 * (box.width + box.height))
    tolerance = math.degrees(1e-15 * perimeter / poly.shape.area_sr) + 1e-12
    assert distance_deg(centroid(box), Point(box.ra, box.dec)) <= tolerance


def test_box_area_and_corners():
    # A small box is nearly flat: width x height.
    assert area_sq_deg(Box(30.0, 40.0, 0.01, 0.02)) == pytest.approx(2e-4, rel=1e-6)
    # The arms' ends are on the sides: midpoints of the polygon's edges.
    box = Box(100.0, 50.0, 20.0, 10.0)
    north = offsets(100.0, 50.0, np.array([5.0]), np.array([math.pi / 2]))
    east = offsets(100.0, 50.0, np.array([10.0]), np.array([0.0]))
    for end in (north, east):
        ra, dec = radec(end)
        assert boundary_distance_deg(ra, dec, box.to_polygon())[0] < 1e-12


# ---------------------------------------------------------------- intersections


def test_intersections_of_known_pairs():
    a = Circle(10.0, 0.0, 1.0)
    assert regions_intersect(a, Circle(12.0, 0.0, 1.0 + 1e-9))
    assert not regions_intersect(a, Circle(12.0, 0.0, 1.0 - 1e-9))
    assert regions_intersect(a, Circle(190.0, 0.0, 179.0))  # near-antipodal giant circle
    square = Polygon(((0.0, -1.0), (2.0, -1.0), (2.0, 1.0), (0.0, 1.0)))
    assert regions_intersect(square, Circle(3.0, 0.0, 1.0 + 1e-9))
    assert not regions_intersect(square, Circle(3.0, 0.0, 1.0 - 1e-6))
    assert regions_intersect(square, Circle(1.0, 0.0, 0.1))  # circle inside polygon
    assert regions_intersect(square, Circle(1.0, 0.0, 30.0))  # polygon inside circle
    # Two thin bars crossing: no vertex of either is inside the other.
    bar_x = Polygon(((-5.0 % 360, -0.1), (5.0, -0.1), (5.0, 0.1), (-5.0 % 360, 0.1)))
    bar_y = Polygon(((359.9, -5.0), (0.1, -5.0), (0.1, 5.0), (359.9, 5.0)))
    assert regions_intersect(bar_x, bar_y)
    assert regions_intersect(bar_y, Box(0.0, 0.0, 0.05, 0.05))  # nested
    assert not regions_intersect(bar_y, Box(10.0, 0.0, 1.0, 1.0))
    assert regions_intersect(Point(0.0, 0.0), bar_x) and not regions_intersect(bar_x, Point(0, 3))


@settings(max_examples=40, deadline=None)
@given(regions, regions, st.integers(0, 1000))
def test_intersections_agree_with_samples(a, b, seed):
    # A sample point in both regions proves they intersect; if they are said not to,
    # no point of one may lie in the other.
    ra, dec = probe_points(a, seed, n=1000)
    in_a = inside_np(ra, dec, a) & decidable(ra, dec, a)
    in_both = in_a & inside_np(ra, dec, b) & decidable(ra, dec, b)
    result = regions_intersect(a, b)
    assert result == regions_intersect(b, a)
    if in_both.any():
        assert result
    if not result:
        assert not in_both.any()


# ---------------------------------------------------------------- HEALPix coverage


def angles(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angles (radians) between unit vectors, accurate when small."""
    return np.arctan2(np.linalg.norm(np.cross(u, v - u), axis=-1), (u * v).sum(axis=-1))


def in_ranges(h29: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    i = np.searchsorted(ranges[:, 0], h29, side="right") - 1
    return (i >= 0) & (h29 < ranges[np.clip(i, 0, None), 1])


def test_pixel_radius_bounds_every_pixel():
    # Random points, pixel corners and edge samples all lie within R_k of their pixel's centre.
    rng = np.random.default_rng(5)
    v = rng.normal(size=(200_000, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    for order in (0, 1, 2, 3, 5, 8, 12, 20, 29):
        nside = 1 << order
        pix = hp.vec2pix(nside, *v.T, nest=True)
        centres = np.stack(hp.pix2vec(nside, pix, nest=True), axis=-1)
        assert angles(v, centres).max() <= pixel_radius(order)
        some = rng.integers(0, 12 * nside**2, 500)
        edges = hp.boundaries(nside, some, step=16, nest=True).transpose(0, 2, 1)  # (n, 64, 3)
        centres = np.stack(hp.pix2vec(nside, some, nest=True), axis=-1)
        assert angles(edges, centres[:, None, :]).max() <= pixel_radius(order)


def inside_points(region, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ra, dec = probe_points(region, seed)
    keep = contains_np(region, ra, dec) | inside_np(ra, dec, region)
    shape = shape_of(region)
    if isinstance(shape, Polygon):
        # Vertices are on the boundary, hence in the region.
        ra = np.r_[ra[keep], [v[0] for v in shape.vertices]]
        dec = np.r_[dec[keep], [v[1] for v in shape.vertices]]
        return ra, dec
    return ra[keep], dec[keep]


@settings(max_examples=60, deadline=None)
@given(regions, st.sampled_from([1, 4, 16, 64, 256]), st.integers(0, 1000))
def test_coverage_holds_every_inside_point(region, max_ranges, seed):
    ranges = region_ranges(region, max_ranges)
    assert ranges.dtype == np.int64 and ranges.shape[1] == 2
    assert 1 <= len(ranges) <= max_ranges
    assert (ranges[:, 0] < ranges[:, 1]).all() and (ranges[1:, 0] > ranges[:-1, 1]).all()
    assert ranges[0, 0] >= 0 and ranges[-1, 1] <= SKY_29
    ra, dec = inside_points(region, seed)
    assert len(ra) > 0
    h29 = radec_to_healpix29(ra, dec)
    missing = ~in_ranges(h29, ranges)
    assert not missing.any(), (region, ra[missing][:3], dec[missing][:3])


@settings(max_examples=30, deadline=None)
@given(circles())
def test_coverage_is_tight_for_circles(circle):
    ranges = region_ranges(circle, 64)
    covered = (ranges[:, 1] - ranges[:, 0]).sum() / SKY_29 * 4 * math.pi * SQ_DEG_PER_SR
    assert covered <= 1.5 * area_sq_deg(circle) + 1e-9
    # The unlimited cover is a subset of the limited one.
    full = cover(circle)
    assert in_ranges(full[:, 0], ranges).all() and in_ranges(full[:, 1] - 1, ranges).all()


@settings(max_examples=60, deadline=None)
@given(circles(), st.sampled_from([0.0, 1.0 / 60.0, 0.5]), st.sampled_from([256, 4096]))
def test_circle_coverage_starting_deep_equals_starting_at_order_0(circle, margin_deg, budget):
    """A small circle's refinement starts at a deep order (``_first_cells``); the
    ranges are those the refinement from the 12 base pixels gives."""
    deep = cover(circle, margin_deg=margin_deg, budget=budget)
    with mock.patch.object(coverage, "_first_cells", lambda region, margin: (0, np.arange(12))):
        from_top = cover(circle, margin_deg=margin_deg, budget=budget)
    np.testing.assert_array_equal(deep, from_top)


def test_limit_ranges_fills_smallest_gaps():
    r = np.array([[0, 10], [12, 20], [100, 110], [111, 120], [500, 501]], dtype=np.int64)
    np.testing.assert_array_equal(limit_ranges(r, 5), r)
    np.testing.assert_array_equal(limit_ranges(r, 3), [[0, 20], [100, 120], [500, 501]])
    np.testing.assert_array_equal(limit_ranges(r, 1), [[0, 501]])
    with pytest.raises(GeometryError):
        limit_ranges(r, 0)


def mixed_partitions() -> PartitionSet:
    """Order-3 pixels, with some split down to orders 4 and 5."""
    parts: list[Partition] = []
    for p in range(12 * 4**3):
        if p % 5 == 0:
            for c in range(4 * p, 4 * p + 4):
                if c % 3 == 0:
                    parts += [Partition(5, g) for g in range(4 * c, 4 * c + 4)]
                else:
                    parts.append(Partition(4, c))
        elif p % 7 != 3:  # some sky has no partition
            parts.append(Partition(3, p))
    return PartitionSet(parts)


PARTS = mixed_partitions()


@settings(max_examples=40, deadline=None)
@given(regions, st.integers(0, 1000))
def test_chunks_for_region_hold_every_inside_point(region, seed):
    chunks = chunks_for_region(region, PARTS)
    assert chunks == sorted(chunks, key=lambda p: p.lo29)
    ra, dec = inside_points(region, seed)
    located = PARTS.locate(radec_to_healpix29(ra, dec))
    needed = {PARTS[int(i)] for i in located if i >= 0}
    assert needed <= set(chunks)


def test_chunks_for_small_region_are_few():
    assert len(chunks_for_region(Circle(10.0, 10.0, 0.01), PARTS)) <= 2
    assert len(chunks_for_region(Circle(10.0, 10.0, 180.0), PARTS)) == len(PARTS)


@settings(max_examples=30, deadline=None)
@given(regions, st.floats(1e-4, 2.0), st.integers(0, 1000))
def test_chunks_within_hold_points_near_the_region(region, margin, seed):
    chunks = set(chunks_within(region, PARTS, margin))
    assert set(chunks_for_region(region, PARTS)) <= chunks
    rng = np.random.default_rng(seed)
    ra, dec = probe_points(region, seed, n=600)
    # Move points by up to the margin, then keep those that end within it of the region.
    moved = offsets(ra, dec, rng.uniform(0, margin, len(ra)), rng.uniform(0, 2 * math.pi, len(ra)))
    m_ra, m_dec = radec(moved)
    shape = shape_of(region)
    near = inside_np(m_ra, m_dec, shape) | (
        boundary_distance_deg(m_ra, m_dec, shape) < margin * (1 - 1e-9)
    )
    assert near.any()
    located = PARTS.locate(radec_to_healpix29(m_ra[near], m_dec[near]))
    assert {PARTS[int(i)] for i in located if i >= 0} <= chunks


def test_margin_must_be_non_negative():
    with pytest.raises(GeometryError, match="margin"):
        chunks_within(Circle(0, 0, 1), PARTS, -1.0)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0, 360),
    st.floats(0, 360),
    st.floats(-90, 90),
    st.floats(-90, 90),
    st.integers(0, 2**32 - 1),
)
def test_bounding_circle_holds_its_box(ra1, ra2, dec1, dec2, seed):
    from qcat.geometry.regions import bounding_circle

    ra_min, ra_max = sorted((ra1, ra2))
    dec_min, dec_max = sorted((dec1, dec2))
    circle = bounding_circle(ra_min, ra_max, dec_min, dec_max)
    rng = np.random.default_rng(seed)
    # Corners, edge midpoints and random points of the box.
    ras = np.r_[
        ra_min, ra_max, ra_min, ra_max, (ra_min + ra_max) / 2, rng.uniform(ra_min, ra_max, 200)
    ]
    decs = np.r_[dec_min, dec_min, dec_max, dec_max, dec_min, rng.uniform(dec_min, dec_max, 200)]
    sep = SkyCoord(ras * u.deg, decs * u.deg).separation(
        SkyCoord(circle.ra * u.deg, circle.dec * u.deg)
    )
    assert np.all(sep.deg <= circle.radius + 1e-9)
