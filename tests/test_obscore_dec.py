"""ObsCore's s_dec_min/s_dec_max and the SIA declination bounds built on them.

Every extent is checked against an independent computation: the polygon's
edges sampled densely along their great circles (slerp), the poles tested
with the brute-force point test of :mod:`qcat.geometry.reference`. The SIA
bounds must never drop an image whose footprint overlaps the region (exact
test of :mod:`qcat.geometry` / :mod:`services.sia.sia_range`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from partition.images.footprint import image_footprint, polygon_dec_extent
from partition.images.header import read_image_header
from qcat.czar.adql import parse_adql
from qcat.geometry import Circle, Polygon, regions_intersect
from qcat.geometry.reference import inside_np
from services.settings import ServiceSettings
from services.sia.sia_adql import sia_adql
from services.sia.sia_dec import polygon_dec_range, region_dec_range
from services.sia.sia_params import PosRegion, parse_query
from services.sia.sia_range import SkyRange, sky_range
from tests.image_headers import celestial_header, write_fits

Vertices = tuple[tuple[float, float], ...]


def _xyz(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def _arc_z(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """z of the points at fractions ``t`` along the minor arc ``a -> b`` (slerp)."""
    theta = np.arccos(np.clip(a @ b, -1.0, 1.0))
    p = (np.sin((1 - t) * theta)[:, None] * a + np.sin(t * theta)[:, None] * b) / np.sin(theta)
    return np.asarray(p[:, 2] / np.linalg.norm(p, axis=1))


def sampled_dec(vertices: Vertices, per_edge: int = 2_001) -> tuple[float, float]:
    """Lowest and highest dec of points sampled densely along every edge, plus the poles
    when the reference point test puts them inside."""
    v = _xyz(np.array([p[0] for p in vertices]), np.array([p[1] for p in vertices]))
    lows, highs = [], []
    t = np.linspace(0.0, 1.0, per_edge)
    for a, b in zip(v, np.roll(v, -1, axis=0), strict=True):
        z = _arc_z(a, b, t)
        # zoom in around the extreme samples: near a pole dec changes fast along the arc
        i, j = int(np.argmin(z)), int(np.argmax(z))
        around_i = np.linspace(t[max(i - 1, 0)], t[min(i + 1, per_edge - 1)], per_edge)
        around_j = np.linspace(t[max(j - 1, 0)], t[min(j + 1, per_edge - 1)], per_edge)
        lows.append(min(z[i], _arc_z(a, b, around_i).min()))
        highs.append(max(z[j], _arc_z(a, b, around_j).max()))
    lo, hi = np.degrees(np.arcsin(min(lows))), np.degrees(np.arcsin(max(highs)))
    polygon = Polygon(vertices)
    poles = inside_np(np.array([0.0, 0.0]), np.array([90.0, -90.0]), polygon)
    return (-90.0 if poles[1] else float(lo)), (90.0 if poles[0] else float(hi))


def ring(ra: float, dec: float, radius: float, angles: np.ndarray) -> Vertices:
    """Points at ``radius`` degrees from ``(ra, dec)`` at position angles ``angles`` (deg):
    with sorted angles a convex polygon (inscribed in a circle), counter-clockwise seen from
    outside."""
    c = _xyz(np.array(ra), np.array(dec))
    east = np.cross([0.0, 0.0, 1.0], c)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-12 else np.array([0, 1.0, 0])
    north = np.cross(c, east)
    r, a = np.radians(radius), np.radians(np.asarray(angles))
    p = np.cos(r) * c + np.sin(r) * (np.cos(a)[:, None] * north + np.sin(a)[:, None] * east)
    out_ra = np.degrees(np.arctan2(p[:, 1], p[:, 0])) % 360.0
    out_dec = np.degrees(np.arcsin(np.clip(p[:, 2], -1.0, 1.0)))
    return tuple((float(x), float(y)) for x, y in zip(out_ra, out_dec, strict=True))


def random_centre(rng: np.random.Generator) -> tuple[float, float]:
    """Near a pole, near RA = 0, or anywhere."""
    kind = rng.integers(3)
    if kind == 0:
        return float(rng.uniform(0, 360)), float(rng.choice([-1, 1]) * rng.uniform(80, 90))
    if kind == 1:
        return float(rng.uniform(-5, 5) % 360), float(rng.uniform(-60, 60))
    return float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))


def random_convex(
    rng: np.random.Generator, ra: float, dec: float, radius: float, count: int = 0
) -> Vertices:
    angles = np.sort(rng.uniform(0.0, 360.0, count or int(rng.integers(3, 9))))
    if np.diff(np.concatenate([angles, [angles[0] + 360.0]])).max() >= 170.0:
        angles = np.sort(np.concatenate([angles, angles[:1] + 180.0]) % 360.0)
    return ring(ra, dec, radius, angles)


# -- footprint extent (ingest) -----------------------------------------------------------


def test_footprint_extent_matches_dense_samples() -> None:
    rng = np.random.default_rng(7)
    poles = 0
    for _ in range(150):
        ra, dec = random_centre(rng)
        vertices = random_convex(rng, ra, dec, float(rng.uniform(0.01, 3.0)))
        expected = sampled_dec(vertices)
        for order in (vertices, vertices[::-1]):
            lo, hi = polygon_dec_extent(order)
            assert lo <= expected[0] + 1e-9 and hi >= expected[1] - 1e-9, (order, expected)
            assert (lo, hi) == (
                pytest.approx(expected[0], abs=1e-7),
                pytest.approx(expected[1], abs=1e-7),
            )
        poles += abs(expected[0]) == 90.0 or abs(expected[1]) == 90.0
    assert poles >= 3  # the pole cases were exercised


def test_edges_bulge_poleward_beyond_their_vertices() -> None:
    # A square around the north pole at dec 85: its edges pass nearer the pole than
    # its vertices, but the pole is outside a square beside it.
    beside = ((0.0, 80.0), (20.0, 80.0), (20.0, 85.0), (0.0, 85.0))
    lo, hi = polygon_dec_extent(beside)
    assert lo == pytest.approx(80.0, abs=1e-9) and hi > 85.0 + 1e-3
    assert hi == pytest.approx(sampled_dec(beside)[1], abs=1e-8)
    around = ((0.0, 85.0), (90.0, 85.0), (180.0, 85.0), (270.0, 85.0))
    assert polygon_dec_extent(around) == (pytest.approx(85.0, abs=1e-9), 90.0)
    south = tuple((ra, -dec) for ra, dec in around)
    assert polygon_dec_extent(south) == (-90.0, pytest.approx(-85.0, abs=1e-9))


@pytest.mark.parametrize(
    ("lon", "lat", "rotation", "pole"),
    [
        (0.0, 30.0, 20.0, None),
        (359.99, -10.0, 45.0, None),
        (45.0, 89.995, 30.0, 90.0),
        (200.0, -89.99, 110.0, -90.0),
    ],
)
def test_image_footprint_extent(
    lon: float, lat: float, rotation: float, pole: float | None, tmp_path: Path
) -> None:
    header = celestial_header(100, 80, lon, lat, rotation_deg=rotation, scale_arcsec=1.0)
    image = read_image_header(write_fits(tmp_path / "a.fits", header))
    fp = image_footprint([(i.to_icrs, i.nx, i.ny) for i in image.images])
    lo, hi = fp.dec_extent()
    # the extent of the polygon as stored (s_region), not of the unrounded vertices
    assert (lo, hi) == tuple(pytest.approx(x, abs=1e-9) for x in sampled_dec(fp.stored_vertices))
    if pole is not None:
        assert pole in (lo, hi)
    else:
        assert -90.0 < lo < hi < 90.0


# -- SIA region extent and bounds ----------------------------------------------------------


def random_region(rng: np.random.Generator) -> PosRegion:
    ra, dec = random_centre(rng)
    kind = rng.integers(3)
    if kind == 0:
        return Circle(ra, dec, float(rng.uniform(0.01, 15.0)))
    if kind == 1:
        return Polygon(random_convex(rng, ra, dec, float(rng.uniform(0.05, 15.0))))
    width, height = float(rng.uniform(0.1, 40.0)), float(rng.uniform(0.1, 20.0))
    d1 = float(np.clip(dec - height / 2, -90, 90))
    d2 = float(np.clip(dec + height / 2, -90, 90))
    return sky_range(ra - width / 2, ra + width / 2, d1, d2)


def overlaps(region: PosRegion, footprint: Polygon) -> bool:
    if isinstance(region, SkyRange):
        return region.intersects_polygon(footprint)
    return regions_intersect(footprint, region)


def test_polygon_region_extent_matches_dense_samples() -> None:
    rng = np.random.default_rng(11)
    for _ in range(100):
        ra, dec = random_centre(rng)
        vertices = random_convex(rng, ra, dec, float(rng.uniform(0.05, 40.0)))
        lo, hi = polygon_dec_range(Polygon(vertices))
        expected = sampled_dec(vertices)
        assert (lo, hi) == (
            pytest.approx(expected[0], abs=1e-6),
            pytest.approx(expected[1], abs=1e-6),
        )


def test_circle_and_range_extents_reach_the_poles() -> None:
    assert region_dec_range(Circle(10.0, 85.0, 10.0))[1] == 90.0
    lo, hi = region_dec_range(Circle(10.0, -85.0, 3.0))
    assert (lo, hi) == (pytest.approx(-88.0), pytest.approx(-82.0))
    assert lo < -88.0 and hi > -82.0  # widened by the slack, never narrowed
    assert region_dec_range(Circle(10.0, -88.0, 3.0)) == (-90.0, pytest.approx(-85.0))
    assert region_dec_range(sky_range(350.0, 10.0, -float("inf"), 5.0))[0] == -90.0


def test_bounds_never_drop_an_overlapping_image() -> None:
    rng = np.random.default_rng(3)
    met = 0
    for _ in range(250):
        region = random_region(rng)
        lo, hi = region_dec_range(region)
        for _ in range(10):
            # footprints around the region's dec edges, where the bounds cut
            edge = lo if rng.random() < 0.5 else hi
            ra = float(rng.uniform(0, 360)) if abs(edge) > 80 else float(rng.normal(0, 20) % 360)
            if not isinstance(region, SkyRange):
                ra = float(
                    rng.normal(
                        region.vertices[0][0] if isinstance(region, Polygon) else region.ra, 5.0
                    )
                    % 360
                )
            dec = float(np.clip(edge + rng.normal(0.0, 0.3), -89.999, 89.999))
            vertices = random_convex(rng, ra, dec, float(rng.uniform(0.01, 0.5)), 4)
            f_lo, f_hi = polygon_dec_extent(vertices)
            if overlaps(region, Polygon(vertices)):
                met += 1
                assert f_hi >= lo and f_lo <= hi, (region, vertices)
    assert met >= 200


def test_every_pos_condition_carries_its_bounds() -> None:
    settings = ServiceSettings.defaults()

    def adql(*pos: str) -> str:
        text = sia_adql(parse_query({"POS": list(pos)}, settings))
        parse_adql(text)
        return text

    circle = adql("CIRCLE 10 20 1")
    assert "s_dec_max >= 18.99999999" in circle and "s_dec_min <= 21.00000000" in circle
    cap = adql("CIRCLE 10 89.5 1")  # reaches past the north pole: no upper bound
    assert "s_dec_max >= 88.49999999" in cap and "s_dec_min <=" not in cap
    two = adql("RANGE 350 10 -30 -20", "POLYGON 0 80 120 80 240 80")
    assert two.count("s_dec_max >=") == 2 and two.count("s_dec_min <=") == 1
    assert "s_dec_" not in adql("RANGE 0 360 -Inf +Inf")
