"""Distance from points to an RA/Dec box, against astropy over a dense sampling of the box."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from hypothesis import given, settings
from hypothesis import strategies as st

from qcat.geometry.radec_box import box_is_valid, distance_to_box, near_box, ra_arc_around

EDGE_SAMPLES = 4001


def _sampled_distance(
    ra: float, dec: float, box: tuple[float, float, float, float]
) -> tuple[float, float]:
    """The least astropy separation from the point to samples of the box's edges and
    interior, and how far any box point can be from the nearest sample (degrees)."""
    ra_min, ra_max, dec_min, dec_max = box
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES)
    ras = ra_min + t * (ra_max - ra_min)
    decs = dec_min + t * (dec_max - dec_min)
    grid_ra, grid_dec = np.meshgrid(np.linspace(ra_min, ra_max, 61), decs[::50])
    sample_ra = np.r_[
        ras, ras, np.full_like(decs, ra_min), np.full_like(decs, ra_max), grid_ra.ravel()
    ]
    sample_dec = np.r_[
        np.full_like(ras, dec_min), np.full_like(ras, dec_max), decs, decs, grid_dec.ravel()
    ]
    sep = SkyCoord(sample_ra * u.deg, sample_dec * u.deg).separation(
        SkyCoord(ra * u.deg, dec * u.deg)
    )
    inside = dec_min <= dec <= dec_max and ((ra - ra_min) % 360.0) <= ra_max - ra_min
    # The nearest box point is on an edge (or is the point itself, inside the box).
    spacing = max(ra_max - ra_min, dec_max - dec_min) / (EDGE_SAMPLES - 1)
    return (0.0 if inside else float(sep.deg.min())), spacing


@settings(max_examples=150, deadline=None)
@given(
    ra_min=st.floats(0, 360),
    width=st.floats(0, 359),
    dec1=st.floats(-90, 90),
    dec2=st.floats(-90, 90),
    ra=st.floats(0, 360),
    dec=st.floats(-90, 90),
)
def test_distance_matches_the_sampled_box(ra_min, width, dec1, dec2, ra, dec):
    box = (ra_min, ra_min + width, min(dec1, dec2), max(dec1, dec2))
    ours = float(distance_to_box(ra, dec, *box))
    sampled, spacing = _sampled_distance(ra, dec, box)
    # Never farther than a point of the box (pruning stays safe), and tight.
    assert ours <= sampled + 1e-9
    assert ours >= sampled - spacing - 1e-9


def test_known_distances():
    # Equator, 10 degrees west of the box: the nearest point is on its meridian at dec 0.
    assert float(distance_to_box(10.0, 0.0, 20.0, 30.0, -5.0, 5.0)) == pytest.approx(10.0)
    # Within the RA range: the declination difference.
    assert float(distance_to_box(25.0, 40.0, 20.0, 30.0, -5.0, 5.0)) == pytest.approx(35.0)
    # A box past RA 360 holds RA 5; one ending at 359 is 6 degrees away on the equator.
    assert float(distance_to_box(5.0, 0.0, 350.0, 370.0, -1.0, 1.0)) == 0.0
    assert float(distance_to_box(5.0, 0.0, 350.0, 359.0, -1.0, 1.0)) == pytest.approx(6.0)
    # A box reaching the pole: from the other side of the pole, through it.
    assert float(distance_to_box(180.0, 80.0, 0.0, 10.0, 85.0, 90.0)) == pytest.approx(10.0)
    # Every RA: only the declination counts.
    assert float(distance_to_box(123.0, -50.0, 0.0, 360.0, -40.0, 40.0)) == pytest.approx(10.0)


def test_a_small_cone_is_far_from_a_wide_chunk_a_circle_around_it_would_hold():
    from qcat.geometry import Circle, bounding_circle, regions_intersect

    box = (22.6, 67.4, 0.06, 41.7)  # the RA/Dec box of a 45-degree chunk
    cone = Circle(80.0, 50.0, 0.1)
    assert regions_intersect(cone, bounding_circle(*box))  # the loose test keeps it
    assert not near_box(cone.ra, cone.dec, cone.radius, box)
    assert float(distance_to_box(cone.ra, cone.dec, *box)) > 5.0


def test_near_box_over_many_points_and_nan():
    box = (10.0, 20.0, -5.0, 5.0)
    ra = np.array([np.nan, 40.0, 20.5])
    dec = np.array([0.0, np.nan, 0.0])
    assert near_box(ra, dec, 0.6, box)  # the last point, 0.5 degrees east
    assert not near_box(ra, dec, 0.4, box)
    assert not near_box(np.array([np.nan]), np.array([np.nan]), 180.0, box)
    assert not near_box(np.array([]), np.array([]), 180.0, box)


def test_box_is_valid():
    assert box_is_valid((0.0, 10.0, -5.0, 5.0))
    assert not box_is_valid((10.0, 0.0, -5.0, 5.0))
    assert not box_is_valid((0.0, 10.0, 5.0, -5.0))
    assert not box_is_valid((0.0, float("nan"), -5.0, 5.0))


def _offsets(ra: np.ndarray, dec: np.ndarray, radius: float, n: int, seed: int) -> SkyCoord:
    """``n`` points at exactly ``radius`` degrees (the farthest reach) from each point,
    all around it."""
    rng = np.random.default_rng(seed)
    centres = SkyCoord(np.repeat(ra, n) * u.deg, np.repeat(dec, n) * u.deg)
    angles = rng.uniform(0.0, 360.0, len(ra) * n) * u.deg
    return centres.directional_offset_by(angles, radius * u.deg)


def _in_arc(ra: np.ndarray, arc: tuple[float, float]) -> np.ndarray:
    start, end = arc
    length = (end - start) % 360.0
    return np.mod(ra - start, 360.0) <= length + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    centre=st.floats(0, 360),
    spread=st.floats(0, 40),
    dec=st.floats(-80, 80),
    radius=st.floats(1e-4, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_ra_arc_holds_every_point_within_reach(centre, spread, dec, radius, seed):
    rng = np.random.default_rng(seed)
    ra = np.mod(centre + rng.uniform(-spread, spread, 20), 360.0)
    decs = np.clip(dec + rng.uniform(-5, 5, 20), -89.0, 89.0)
    arc = ra_arc_around(ra, decs, radius)
    if arc is None:
        assert float(np.max(np.abs(decs))) + radius >= 90.0 or 2 * spread + 2 * radius > 300
        return
    reach = _offsets(ra, decs, radius, 36, seed)
    assert np.all(_in_arc(reach.ra.deg, arc))
    assert np.all(_in_arc(ra, arc))
    # Tight: no longer than the points' spread and the widest reach in RA either side
    # (on a parallel, a circle of radius r at declination d reaches asin(sin r / cos d)).
    reach_ra = np.degrees(np.arcsin(np.sin(np.radians(radius)) / np.cos(np.radians(decs))))
    assert (arc[1] - arc[0]) % 360.0 <= 2 * spread + 2 * reach_ra.max() + 1e-6


def test_ra_arc_across_ra_zero_and_its_limits():
    arc = ra_arc_around(np.array([359.5, 0.5, np.nan]), np.array([0.0, 0.0, 0.0]), 0.1)
    assert arc is not None
    start, end = arc
    assert start == pytest.approx(359.4) and end == pytest.approx(0.6)
    # A pole within reach, points all around the sky, or no points: every RA.
    assert ra_arc_around(np.array([10.0]), np.array([89.5]), 1.0) is None
    assert ra_arc_around(np.arange(0.0, 360.0, 10.0), np.zeros(36), 6.0) is None
    assert ra_arc_around(np.array([np.nan]), np.array([np.nan]), 1.0) is None
