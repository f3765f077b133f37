"""Exact footprint overlap: RANGE against polygons, and the vectorised mask, checked against
an independent sampled answer (tests/sia_oracle.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qcat.geometry import Circle, Polygon, regions_intersect
from qcat.geometry.regions import distance_np
from services.sia.sia_adql import polygon_cap
from services.sia.sia_overlap import footprint_polygon, overlap_mask, overlaps
from services.sia.sia_range import SkyRange, sky_range
from tests import sia_oracle as oracle


def _offset(ra: float, dec: float, bearing: float, dist: float) -> tuple[float, float]:
    """The point ``dist`` degrees from (ra, dec) towards ``bearing`` (degrees east of north)."""
    d, b, phi = math.radians(dist), math.radians(bearing), math.radians(dec)
    lat = math.asin(math.sin(phi) * math.cos(d) + math.cos(phi) * math.sin(d) * math.cos(b))
    lon = math.radians(ra) + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(phi), math.cos(d) - math.sin(phi) * math.sin(lat)
    )
    return math.degrees(lon) % 360.0, math.degrees(lat)


def quad(ra: float, dec: float, half: float, rotation: float, aspect: float = 1.0) -> Polygon:
    """A quadrilateral footprint: corners ``half`` (x aspect) degrees from the centre."""
    angles = [rotation + a for a in (45.0, 135.0, 225.0, 315.0)]
    corners = [_offset(ra, dec, a, half * (aspect if i % 2 else 1.0)) for i, a in enumerate(angles)]
    return Polygon(tuple(corners))


def stcs(poly: Polygon) -> str:
    return "POLYGON ICRS " + " ".join(f"{ra!r} {dec!r}" for ra, dec in poly.vertices)


def random_range(rng: np.random.Generator, near: tuple[float, float]) -> tuple[float, ...]:
    ra0, dec0 = near
    width = float(rng.uniform(0.0, 8.0))
    height = float(rng.uniform(0.0, 6.0))
    ra1 = (ra0 + float(rng.uniform(-6, 2))) % 360.0
    dec1 = float(np.clip(dec0 + rng.uniform(-5, 2), -90, 90))
    dec2 = float(min(dec1 + height, 90.0))
    return ra1, (ra1 + width) % 360.0, dec1, dec2


def random_polygon(rng: np.random.Generator, near: tuple[float, float]) -> Polygon:
    ra, dec = _offset(near[0], near[1], float(rng.uniform(0, 360)), float(rng.uniform(0, 4)))
    if abs(dec) > 88.5:
        dec = math.copysign(88.5, dec)
    half = float(rng.uniform(0.05, 3.0))
    aspect = float(rng.choice([1.0, 0.02, 0.1, 8.0]))  # thin ones cross without a vertex inside
    return quad(ra, dec, half, float(rng.uniform(0, 90)), aspect)


# -- RANGE -------------------------------------------------------------------------------


def test_range_points_and_wrap() -> None:
    r = sky_range(350.0, 10.0, -5.0, 5.0)
    ra = np.array([355.0, 5.0, 0.0, 20.0, 340.0, 355.0])
    dec = np.array([0.0, 0.0, 5.0, 0.0, 0.0, 6.0])
    assert r.contains_np(ra, dec).tolist() == [True, True, True, False, False, False]
    polar = sky_range(10.0, 20.0, 80.0, 90.0)
    assert polar.contains_np(
        np.array([200.0, 15.0, 200.0]), np.array([90.0, 85.0, 85.0])
    ).tolist() == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("ra1", "ra2", "dec1", "dec2"),
    [
        (10, 20, -5, 5),
        (350, 10, 30, 50),
        (100, 250, -20, 10),
        (10, 20, 70, 90),
        (200, 300, -90, -60),
        (0, 360, 10, 20),
        (45, 45, -10, 10),
    ],
)
def test_bounding_circle_holds_the_range(ra1: float, ra2: float, dec1: float, dec2: float) -> None:
    rng_ = sky_range(ra1, ra2, dec1, dec2)
    circle = rng_.bounding_circle()
    if circle is None:
        assert (rng_.full_ra and dec1 > -90 and dec2 < 90) or rng_.ra_width > 180
        return
    width = rng_.ra_width
    ra, dec = np.meshgrid(
        rng_.ra_min + np.linspace(0, width, 301), np.linspace(rng_.dec_min, rng_.dec_max, 301)
    )
    d = distance_np(circle.ra, circle.dec, ra.ravel() % 360.0, dec.ravel())
    assert d.max() <= circle.radius


def test_range_against_polygons_matches_the_oracle() -> None:
    rng = np.random.default_rng(11)
    centres = [(0.5, 0.0), (359.0, 30.0), (120.0, -40.0), (45.0, 87.0), (250.0, -88.0)]
    decided = met = crossing_only = 0
    for case in range(240):
        near = centres[case % len(centres)]
        ra1, ra2, dec1, dec2 = random_range(rng, near)
        poly = random_polygon(rng, near)
        region = sky_range(ra1, ra2, dec1, dec2)
        expected = oracle.overlap(
            oracle.range_shape(ra1, ra2, dec1, dec2, step=0.01),
            oracle.polygon_shape(list(poly.vertices), step=0.01),
        )
        if expected is None:
            continue
        decided += 1
        assert region.intersects_polygon(poly) == expected, (ra1, ra2, dec1, dec2, poly.vertices)
        met += expected
        vra = np.array([v[0] for v in poly.vertices])
        vdec = np.array([v[1] for v in poly.vertices])
        if expected and not region.contains_np(vra, vdec).any():
            crossing_only += 1
    assert decided >= 200 and 40 <= met <= decided - 40
    assert crossing_only >= 10  # overlaps found through edges and corners, not vertices


def test_thin_polygon_across_a_range_without_vertices_inside() -> None:
    region = sky_range(10.0, 12.0, -1.0, 1.0)
    across = Polygon(((9.0, -0.01), (13.0, -0.01), (13.0, 0.01), (9.0, 0.01)))
    up = Polygon(((10.99, -3.0), (11.01, -3.0), (11.01, 3.0), (10.99, 3.0)))
    beside = Polygon(((12.5, -3.0), (12.6, -3.0), (12.6, 3.0), (12.5, 3.0)))
    assert region.intersects_polygon(across) and region.intersects_polygon(up)
    assert not region.intersects_polygon(beside)
    # A polygon arching over a parallel: its edge (0, 0.5) -> (40, 0.5) peaks at ra 20; a
    # range whose corners and sides lie outside it is met only where the arc crosses dec1.
    arch = Polygon(((0.0, 0.5), (40.0, 0.5), (40.0, 0.0), (0.0, 0.0)))
    peak = math.degrees(math.atan(math.tan(math.radians(0.5)) / math.cos(math.radians(20.0))))
    assert region.intersects_polygon(arch)
    assert sky_range(10.0, 30.0, peak - 0.002, 2.0).intersects_polygon(arch)
    assert not sky_range(10.0, 30.0, peak + 0.002, 2.0).intersects_polygon(arch)
    # The same with a meridian side: an edge crossing ra = 25 only between the range's decs.
    slanted = Polygon(((20.0, -10.0), (30.0, 10.0), (30.5, 10.0), (20.5, -10.0)))
    assert sky_range(25.1, 40.0, -0.5, 0.5).intersects_polygon(slanted)
    assert not sky_range(26.0, 40.0, -0.5, 0.5).intersects_polygon(slanted)


def test_range_holding_a_pole_and_polygon_around_it() -> None:
    cap = sky_range(-math.inf, math.inf, 89.5, 90.0)
    around_pole = Polygon(((0.0, 89.0), (90.0, 89.0), (180.0, 89.0), (270.0, 89.0)))
    assert cap.intersects_polygon(around_pole)
    band = sky_range(-math.inf, math.inf, 89.2, 89.3)
    assert band.intersects_polygon(around_pole)  # the band lies inside the polygon
    assert not sky_range(0.0, 360.0, -10.0, 10.0).intersects_polygon(around_pole)
    assert SkyRange(0.0, 360.0, -90.0, 90.0).intersects_polygon(around_pole)


def test_polygon_cap_holds_the_polygon() -> None:
    rng = np.random.default_rng(8)
    for _ in range(60):
        near = (float(rng.uniform(0, 360)), float(rng.uniform(-89, 89)))
        poly = random_polygon(rng, near)
        cap = polygon_cap(poly)
        assert cap is not None
        edge = oracle.polygon_shape(list(poly.vertices), step=0.01)
        assert distance_np(cap.ra, cap.dec, edge.ra, edge.dec).max() <= cap.radius
    # Star-shaped (non-convex) and near-hemisphere polygons.
    star = Polygon(tuple(_offset(30.0, 40.0, 36.0 * k, 2.0 if k % 2 else 0.5) for k in range(10)))
    cap = polygon_cap(star)
    assert cap is not None and 1.99 < cap.radius < 2.1
    assert polygon_cap(Polygon(((0.0, 0.5), (120.0, 0.5), (240.0, 0.5)))) is None


# -- the mask ------------------------------------------------------------------------------


def test_overlap_mask_matches_the_exact_test_and_the_oracle() -> None:
    rng = np.random.default_rng(3)
    footprints = [
        random_polygon(rng, (float(rng.uniform(0, 360)), float(rng.uniform(-60, 60))))
        for _ in range(40)
    ]
    footprints += [quad(0.0, 10.0, 1.0, 20.0), quad(30.0, 89.0, 0.8, 0.0)]
    s_region = [stcs(p) for p in footprints]
    s_ra, s_dec, s_fov = [], [], []
    for p in footprints:  # centre: the vertices' mean; fov: twice the farthest vertex
        v_ra = np.array([v[0] for v in p.vertices])
        v_dec = np.array([v[1] for v in p.vertices])
        c_ra, c_dec = oracle.radec(oracle.vectors(v_ra, v_dec).sum(axis=0))
        s_ra.append(float(c_ra))
        s_dec.append(float(c_dec))
        s_fov.append(2 * float(distance_np(float(c_ra), float(c_dec), v_ra, v_dec).max()))
    regions: list[Circle | Polygon | SkyRange] = []
    for k in range(30):
        target = footprints[k % len(footprints)]
        ra, dec = target.vertices[k % 4]
        regions.append(Circle(ra, dec, float(rng.uniform(0.01, 2.0))))
        regions.append(quad(ra, dec, float(rng.uniform(0.05, 1.5)), float(rng.uniform(0, 90))))
        regions.append(sky_range(ra - 0.5, ra + 0.7, dec - 0.3, min(dec + 0.4, 90.0)))
    checked = 0
    for region in regions:
        mask = overlap_mask([region], np.array(s_ra), np.array(s_dec), np.array(s_fov), s_region)
        exact = [overlaps(region, p) for p in footprints]
        assert mask.tolist() == exact
        for p, got in zip(footprints, exact, strict=True):
            if isinstance(region, Circle):
                expected_r = regions_intersect(region, p)
                assert got == expected_r
        checked += int(mask.sum())
    assert checked > 30
    # several regions are OR-ed; no region matches nothing
    union = overlap_mask(regions[:3], np.array(s_ra), np.array(s_dec), np.array(s_fov), s_region)
    singles = [
        overlap_mask([r], np.array(s_ra), np.array(s_dec), np.array(s_fov), s_region)
        for r in regions[:3]
    ]
    assert union.tolist() == np.logical_or.reduce(singles).tolist()


def test_footprint_parsing() -> None:
    p = footprint_polygon("POLYGON ICRS 10 10 11 10 11 11 10 11")
    assert p is not None and len(p.vertices) == 4
    assert footprint_polygon("POLYGON 10 10 11 10 11 11") is not None
    assert footprint_polygon("POLYGON ICRS GEOCENTER 10 10 11 10 11 11") is not None
    assert footprint_polygon("CIRCLE ICRS 10 10 1") is None
    assert footprint_polygon("POLYGON ICRS 10 10 11") is None
    assert footprint_polygon("POLYGON ICRS 10 0 11 0 12 0") is None  # not a polygon
    # Unusable footprints match nothing, NULL centres are tested exactly.
    mask = overlap_mask(
        [Circle(10.5, 10.5, 1.0)],
        np.array([np.nan, 10.5]),
        np.array([np.nan, 10.5]),
        np.array([np.nan, 1.5]),
        ["POLYGON ICRS 10 10 11 10 11 11 10 11", None],
    )
    assert mask.tolist() == [True, False]
