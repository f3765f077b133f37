"""Margin (overlap) assignment, checked against a brute-force angular computation.

The brute force shares no logic with the code under test: healpy's own disc
query at a fine order finds every part of a partition near a point, and the
distance is the smallest haversine distance (written here, on RA/Dec) to
dense samples of those parts' boundaries. That distance ``d`` is an upper
bound of the true one and exceeds it by at most half the sample spacing
``e``. A pair is required in the margin when ``d <= width - tol`` and
required out of it when ``d - e > width + tol`` (or when no part of the
partition is near at all), where ``tol`` is the documented tolerance of
``margin_pairs``; the few pairs in between are not judged, and the tests
check that they stay few.
"""

from __future__ import annotations

import time

import healpy as hp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import partition.margins as margins
from partition.healpix import radec_to_healpix29
from partition.layout import Partition, PartitionSet, adaptive_layout
from partition.margins import (
    NEIGHBOURHOOD_REACH,
    distance_to_pixel_arcsec,
    margin_order_for,
    margin_pairs,
    margin_tolerance_arcsec,
    neighbourhood_ranges,
    points_reach_ranges,
)
from qcat.errors import ConfigError

ARCSEC = np.pi / (180.0 * 3600.0)
VERTEX_DEC = float(np.degrees(np.arcsin(2.0 / 3.0)))  # where three base pixels meet
BRUTE_STEP = 64  # boundary samples per edge of each fine pixel in the brute force


# ---------------------------------------------------------------- brute force


def haversine_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle distance in arcsec between positions in degrees."""
    ra1, dec1, ra2, dec2 = (np.radians(x) for x in (ra1, dec1, ra2, dec2))
    a = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))) / ARCSEC


def probe_order_for(width_arcsec, partitions):
    """A fine order: pixels about a quarter of the width, no coarser than any partition."""
    size = np.degrees(hp.nside2resol(1)) * 3600
    order = int(np.clip(np.round(np.log2(4 * size / width_arcsec)), 0, 20))
    return max(order, max(p.order for p in partitions))


def brute_force(ra, dec, partitions, reach_arcsec, probe_order):
    """``{(row, partition): (d, e)}`` for every pair closer than ``reach_arcsec``.

    ``d`` is the distance to the nearest boundary sample, ``e`` the largest
    half-spacing of the samples; the true distance lies in ``[d - e, d]``.
    Pairs absent are farther than ``reach_arcsec``.
    """
    nside = 2**probe_order
    shift = 2 * (29 - probe_order)
    own = partitions.locate(hp.ang2pix(2**29, ra % 360.0, dec, nest=True, lonlat=True))
    radius = reach_arcsec * ARCSEC + hp.max_pixrad(nside) * 1.001
    found = {}
    for i in range(len(ra)):
        centre = hp.ang2vec(ra[i] % 360.0, dec[i], lonlat=True)
        # Every fine pixel holding a point within the reach has its centre in here.
        pix = hp.query_disc(nside, centre, radius, inclusive=False, nest=True)
        part = partitions.locate(pix.astype(np.int64) << shift)
        keep = (part >= 0) & (part != own[i])
        if not keep.any():
            continue
        pix, part = pix[keep], part[keep]
        bound = np.moveaxis(hp.boundaries(nside, pix, step=BRUTE_STEP, nest=True), 1, 2)
        lon, lat = hp.vec2ang(bound.reshape(-1, 3), lonlat=True)
        lon, lat = lon.reshape(len(pix), -1), lat.reshape(len(pix), -1)
        d = haversine_arcsec(ra[i], dec[i], lon, lat).min(axis=1)
        gap = haversine_arcsec(lon, lat, np.roll(lon, -1, axis=1), np.roll(lat, -1, axis=1))
        half_gap = 0.51 * gap.max(axis=1)
        for p in np.unique(part):
            mine = part == p
            found[(i, int(p))] = (float(d[mine].min()), float(half_gap[mine].max()))
    return found


def judge(rows, parts, brute, width_arcsec):
    """Compare margin_pairs' answer with the brute force; return (required, unjudged)."""
    tol = margin_tolerance_arcsec(width_arcsec)
    got = set(zip(rows.tolist(), parts.tolist(), strict=True))
    must = {k for k, (d, _) in brute.items() if d <= width_arcsec - tol}
    maybe = {
        k for k, (d, e) in brute.items() if width_arcsec - tol < d and d - e <= width_arcsec + tol
    }
    missing = sorted(must - got)
    extra = sorted(got - must - maybe)
    assert not missing, f"pairs within the width but not returned: {missing[:5]}"
    assert not extra, f"pairs returned but beyond the width: {extra[:5]}"
    return len(must), len(maybe)


def brute_check(ra, dec, partitions, width_arcsec):
    """Run margin_pairs on the points and judge it; returns (required, unjudged)."""
    h = radec_to_healpix29(ra, dec)
    rows, parts = margin_pairs(ra, dec, h, partitions, width_arcsec)
    reach = width_arcsec + margin_tolerance_arcsec(width_arcsec)
    brute = brute_force(ra, dec, partitions, reach, probe_order_for(width_arcsec, partitions))
    return judge(rows, parts, brute, width_arcsec)


# ---------------------------------------------------------------- data


def unit(ra, dec):
    return np.asarray(hp.ang2vec(np.asarray(ra) % 360.0, np.asarray(dec), lonlat=True))


def to_radec(vec):
    ra, dec = hp.vec2ang(np.atleast_2d(vec), lonlat=True)
    return ra % 360.0, np.clip(dec, -90.0, 90.0)


def moved(vec, distance_rad, rng):
    """Each unit vector moved by ``distance_rad`` in a random direction."""
    r = rng.normal(size=vec.shape)
    tangent = r - np.sum(r * vec, axis=1, keepdims=True) * vec
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    d = np.asarray(distance_rad)[..., None] if np.ndim(distance_rad) else distance_rad
    return np.cos(d) * vec + np.sin(d) * tangent


HOT_SPOTS = [(0.0, 90.0), (0.0, -90.0), (0.0, 0.0), (0.0, VERTEX_DEC), (90.0, -VERTEX_DEC)]
HOT_SPOTS += [(359.99, 20.0), (180.0, 60.0), (45.0, 88.0)]


def hand_layout(seed, max_order=8):
    """A layout tiling the sphere with orders 0..max_order.

    Pixels near the poles, RA 0/360 and base-pixel vertices are split down
    to ``max_order``; elsewhere splits are random; base pixels 5 and 10
    (which touch a deep region) stay whole.
    """
    rng = np.random.default_rng(seed)
    hot = unit(*zip(*HOT_SPOTS, strict=True))
    parts = []

    def visit(order, pixel):
        nside = 2**order
        centre = np.asarray(hp.pix2vec(nside, pixel, nest=True))
        near = np.max(hot @ centre) > np.cos(2.2 * hp.max_pixrad(nside))
        if order < max_order and (near or rng.random() < 0.5 / (order + 1)):
            for child in range(4 * pixel, 4 * pixel + 4):
                visit(order + 1, child)
        else:
            parts.append(Partition(order, pixel))

    for base in range(12):
        if base in (5, 10):
            parts.append(Partition(0, base))
        else:
            visit(0, base)
    layout = PartitionSet(parts)
    assert sum(4.0**-p.order for p in layout) == 12.0  # tiles the sphere
    return layout


def adaptive_set(seed):
    """Adaptive layout over a sky with dense clusters at the poles and RA 0."""
    rng = np.random.default_rng(seed)
    ra = np.r_[rng.uniform(0, 360, 20000), rng.uniform(0, 360, 6000), rng.normal(0, 0.5, 6000)]
    dec = np.r_[
        np.degrees(np.arcsin(rng.uniform(-1, 1, 20000))),
        np.r_[90 - np.abs(rng.normal(0, 1, 3000)), -90 + np.abs(rng.normal(0, 1, 3000))],
        rng.normal(0, 0.5, 6000),
    ]
    h = radec_to_healpix29(ra % 360.0, dec)
    pix, counts = np.unique(h >> (2 * (29 - 9)), return_counts=True)
    layout = adaptive_layout(
        dict(zip(pix.tolist(), counts.tolist(), strict=True)), 9, threshold=300
    )
    return PartitionSet(p for p, _ in layout)


def sample_points(partitions, width_arcsec, seed, n_uniform=600, n_edge=900):
    """Uniform points, clusters at both poles and across RA 0/360, points on
    partition corners and edges, and points at distances near the width from
    partition boundaries."""
    rng = np.random.default_rng(seed)
    w = width_arcsec * ARCSEC
    vecs = [
        unit(rng.uniform(0, 360, n_uniform), np.degrees(np.arcsin(rng.uniform(-1, 1, n_uniform))))
    ]
    for pole in (unit([0.0], [90.0]), unit([0.0], [-90.0])):
        vecs.append(moved(np.repeat(pole, 150, axis=0), rng.uniform(0, 3 * w, 150), rng))
    wrap = unit(np.zeros(150), rng.uniform(-80, 80, 150))
    vecs.append(moved(wrap, rng.uniform(0, 3 * w, 150), rng))
    chosen = rng.choice(len(partitions), size=min(len(partitions), 120), replace=False)
    edge = []
    for i in chosen:
        p = partitions[int(i)]
        b = np.moveaxis(hp.boundaries(2**p.order, p.pixel, step=16, nest=True), 0, 1)
        edge.append(b)
    samples = np.concatenate(edge)
    corners = samples[::16]
    pick = samples[rng.integers(0, len(samples), n_edge)]
    factors = rng.choice([0.0, 0.3, 0.9, 0.99, 0.999, 1.001, 1.01, 1.2, 2.0], size=n_edge)
    vecs += [corners, moved(pick, factors * w, rng)]
    ra, dec = to_radec(np.concatenate(vecs))
    # Exact poles and both spellings of RA 0.
    ra = np.r_[ra, 0.0, 0.0, 0.0, 360.0, 0.0, 360.0]
    dec = np.r_[dec, 90.0, -90.0, 10.0, 10.0, 45.0, -45.0]
    return ra, dec


@pytest.fixture(scope="module")
def tiled():
    return hand_layout(seed=11)


@pytest.fixture(scope="module")
def adaptive():
    return adaptive_set(seed=5)


# ---------------------------------------------------------------- margin order


def test_margin_order_for_known_widths():
    assert margin_order_for(60.0) == 10
    assert margin_order_for(1.0) == 16
    assert margin_order_for(3600.0) == 4
    assert margin_order_for(1e-6) == 29
    for width in np.geomspace(1e-3, 1e5, 200):
        order = margin_order_for(float(width))
        assert NEIGHBOURHOOD_REACH / 2**order >= width * ARCSEC
        if order < 29:
            assert NEIGHBOURHOOD_REACH / 2 ** (order + 1) < width * ARCSEC


@pytest.mark.parametrize("width", [0.0, -5.0, float("nan"), float("inf"), "wide", None, 2e5])
def test_margin_order_for_rejects_bad_widths(width):
    with pytest.raises(ConfigError, match="width_arcsec"):
        margin_order_for(width)


def reach_probe_points(order, rng):
    """Points where pixels are narrowest: the polar caps beside base-pixel
    boundaries, the poles, the three-pixel vertices, plus random ones."""
    ra = np.r_[
        rng.choice([0.0, 90.0, 180.0, 270.0], 400) + rng.normal(0, 0.5 / 2**order * 57, 400),
        rng.uniform(0, 360, 300),
        rng.choice([0.0, 90.0, 180.0, 270.0], 100),
    ]
    dec = np.r_[
        rng.uniform(42.0, 90.0, 400) * rng.choice([-1, 1], 400),
        np.degrees(np.arcsin(rng.uniform(-1, 1, 300))),
        rng.choice([-1, 1], 100) * (VERTEX_DEC + rng.normal(0, 0.3 / 2**order * 57, 100)),
    ]
    return to_radec(unit(ra % 360.0, np.clip(dec, -90, 90)))


def escapes(order, reach, rng):
    """Points whose disc of radius ``reach / nside`` leaves their 3x3 block."""
    nside = 2**order
    ra, dec = reach_probe_points(order, rng)
    home = hp.ang2pix(nside, ra, dec, nest=True, lonlat=True)
    block = np.vstack([home, hp.get_all_neighbours(nside, home, nest=True)])
    centre = unit(ra, dec)
    count = 0
    for _ in range(24):
        ra2, dec2 = to_radec(moved(centre, reach / nside, rng))
        landed = hp.ang2pix(nside, ra2, dec2, nest=True, lonlat=True)
        count += int(np.sum(~np.any(block == landed, axis=0)))
    return count


@pytest.mark.parametrize("order", [0, 1, 2, 4, 7, 10, 13, 18])
def test_neighbourhood_reach(order):
    # The bound margin_order_for relies on: a disc of radius reach/nside
    # never leaves the pixel and its neighbours ...
    rng = np.random.default_rng(order)
    assert escapes(order, NEIGHBOURHOOD_REACH * (1 - 1e-9), rng) == 0
    # ... and it is not vacuous: somewhat wider discs do escape.
    assert escapes(order, 0.9, rng) > 0


# ---------------------------------------------------------------- distance to a pixel


@pytest.mark.parametrize("order", [0, 2, 6, 11, 17])
def test_distance_exact_beside_meridian_edges(order):
    # In the polar caps the base pixels meet along meridians (great circles),
    # so a point moved perpendicular to one from a point of that edge is at a
    # known distance from the pixel on the other side.
    nside = 2**order
    rng = np.random.default_rng(order)
    for sign in (1.0, -1.0):
        dec_edge = sign * rng.uniform(VERTEX_DEC + 1.0, 89.0, 20)
        edge = unit(np.full(20, 90.0), dec_edge)
        normal = np.array([1.0, 0.0, 0.0])  # of the meridian plane ra = 90 / 270
        target = hp.vec2pix(nside, *(edge + 1e-9 * normal).T, nest=True)  # side ra < 90
        for dist_arcsec in (1e-3, 0.5, 30.0, 1000.0):
            d = dist_arcsec * ARCSEC
            points = np.cos(d) * edge - np.sin(d) * normal  # into ra > 90
            ra, dec = to_radec(points)
            got = [
                distance_to_pixel_arcsec(ra[i : i + 1], dec[i : i + 1], order, int(target[i]))[0]
                for i in range(len(ra))
            ]
            # The target lies wholly on the far side of the meridian's plane and
            # holds the foot of the perpendicular: the distance is exact.
            np.testing.assert_allclose(got, dist_arcsec, rtol=0, atol=1e-3)


def test_distance_inside_and_on_the_boundary():
    rng = np.random.default_rng(3)
    for order, pixel in [(0, 4), (3, 0), (9, 12 * 4**9 - 1), (14, 123456789)]:
        nside = 2**order
        centre = np.asarray(hp.pix2vec(nside, pixel, nest=True))
        inside = moved(
            np.repeat(centre[None], 50, axis=0), 0.3 * hp.max_pixrad(nside) * rng.random(50), rng
        )
        ra, dec = to_radec(inside)
        keep = hp.ang2pix(nside, ra, dec, nest=True, lonlat=True) == pixel
        assert keep.sum() > 20
        assert np.all(distance_to_pixel_arcsec(ra[keep], dec[keep], order, pixel) == 0.0)
        corners = np.moveaxis(hp.boundaries(nside, pixel, step=4, nest=True), 0, 1)
        ra, dec = to_radec(corners)
        assert np.all(distance_to_pixel_arcsec(ra, dec, order, pixel) < 1e-6)


@pytest.mark.parametrize(
    ("order", "pixel"),
    [(0, 0), (0, 9), (2, 63), (5, 4 * 4**5), (8, 12 * 4**8 - 1), (12, 5 * 4**12 + 7777)],
)
def test_distance_against_brute_force(order, pixel):
    rng = np.random.default_rng(order + 100)
    nside = 2**order
    size = hp.nside2resol(nside)
    boundary = np.moveaxis(hp.boundaries(nside, pixel, step=32, nest=True), 0, 1)
    base = boundary[rng.integers(0, len(boundary), 60)]
    reach = min(size, 300 * ARCSEC)
    ra, dec = to_radec(moved(base, rng.uniform(0, reach, 60), rng))
    got = distance_to_pixel_arcsec(ra, dec, order, pixel)
    single = PartitionSet([Partition(order, pixel)])
    reach_arcsec = 1.2 * reach / ARCSEC
    brute = brute_force(ra, dec, single, reach_arcsec, probe_order_for(reach_arcsec / 2, single))
    inside = hp.ang2pix(nside, ra, dec, nest=True, lonlat=True) == pixel
    assert np.all(got[inside] == 0.0)
    checked = 0
    for i in np.flatnonzero(~inside):
        d, e = brute[(int(i), 0)]
        assert d - e - 1e-3 <= got[i] <= d + 1e-3
        checked += 1
    assert checked > 20


def test_distance_far_from_a_large_pixel():
    # Across the sky from a base pixel: compare with the dense boundary directly.
    ra, dec = np.array([225.0, 200.0, 10.0]), np.array([-41.8, -10.0, -70.0])
    got = distance_to_pixel_arcsec(ra, dec, 0, 0)
    bound = np.moveaxis(hp.boundaries(1, 0, step=20000, nest=True), 0, 1)
    lon, lat = to_radec(bound)
    for i in range(3):
        d = haversine_arcsec(ra[i], dec[i], lon, lat)
        spacing = haversine_arcsec(lon, lat, np.roll(lon, -1), np.roll(lat, -1)).max()
        assert d.min() - 0.51 * spacing - 1e-3 <= got[i] <= d.min() + 1e-3


def test_distance_rejects_bad_arguments():
    with pytest.raises(ValueError, match="order"):
        distance_to_pixel_arcsec(np.zeros(1), np.zeros(1), 30, 0)
    with pytest.raises(ValueError, match="pixel"):
        distance_to_pixel_arcsec(np.zeros(1), np.zeros(1), 1, 48)
    with pytest.raises(ValueError, match="max_error_arcsec"):
        distance_to_pixel_arcsec(np.zeros(1), np.zeros(1), 1, 0, max_error_arcsec=0.0)
    with pytest.raises(ValueError, match="max_error_arcsec"):
        distance_to_pixel_arcsec(np.zeros(1), np.zeros(1), 1, 0, max_error_arcsec=1e-9)


# ---------------------------------------------------------------- margin pairs


@pytest.mark.parametrize("width", [10.0, 60.0, 3600.0])
def test_margin_pairs_hand_layout(tiled, width):
    ra, dec = sample_points(tiled, width, seed=int(width))
    required, unjudged = brute_check(ra, dec, tiled, width)
    assert required > 300
    assert unjudged <= 0.02 * required


@pytest.mark.parametrize("width", [10.0, 60.0, 3600.0])
def test_margin_pairs_adaptive_layout(adaptive, width):
    orders = {p.order for p in adaptive}
    assert len(orders) >= 4
    ra, dec = sample_points(adaptive, width, seed=7 + int(width))
    required, unjudged = brute_check(ra, dec, adaptive, width)
    assert required > 300
    assert unjudged <= 0.02 * required


def test_margin_pairs_rows_outside_every_partition():
    # A layout with gaps: rows in no partition join the margins near them.
    layout = PartitionSet(
        [Partition(1, 0), Partition(3, 4**2 + 5), Partition(6, 11 * 4**6), Partition(0, 4)]
        + [Partition(7, 6 * 4**7 + k) for k in range(0, 4**7, 997)]
    )
    ra, dec = sample_points(layout, 120.0, seed=3, n_uniform=1500, n_edge=1500)
    own = layout.locate(radec_to_healpix29(ra, dec))
    assert np.count_nonzero(own < 0) > 500
    required, _ = brute_check(ra, dec, layout, 120.0)
    rows, _ = margin_pairs(ra, dec, radec_to_healpix29(ra, dec), layout, 120.0)
    assert required > 100 and np.any(own[rows] < 0)


def test_margin_pairs_output_shape(tiled):
    ra, dec = sample_points(tiled, 60.0, seed=21)
    h = radec_to_healpix29(ra, dec)
    rows, parts = margin_pairs(ra, dec, h, tiled, 60.0)
    assert rows.dtype == np.int64 and parts.dtype == np.int64
    assert len(rows) > 0
    # Sorted by partition, then row, without repeats.
    key = parts * len(ra) + rows
    assert np.all(np.diff(key) > 0)
    # Never the row's own partition.
    assert not np.any(tiled.locate(h[rows]) == parts)


def test_interior_points_are_in_no_margin():
    # Base-pixel centres are at least 28.9 degrees from their edges.
    layout = PartitionSet([Partition(0, b) for b in range(12)])
    ra, dec = to_radec(np.array(hp.pix2vec(1, np.arange(12), nest=True)).T)
    h = radec_to_healpix29(ra, dec)
    for width in (1.0, 3600.0, 28 * 3600.0):
        rows, _ = margin_pairs(ra, dec, h, layout, width)
        assert len(rows) == 0


def test_small_batches_give_the_same_answer(monkeypatch):
    # Many small partitions inside one margin-order cell: the candidate
    # batching and the block sizes must not change the answer.
    layout = hand_layout(seed=2, max_order=7)
    ra, dec = sample_points(layout, 7200.0, seed=9, n_uniform=400, n_edge=300)
    h = radec_to_healpix29(ra, dec)
    want = margin_pairs(ra, dec, h, layout, 7200.0)
    monkeypatch.setattr(margins, "CANDIDATE_BUDGET", 97)
    monkeypatch.setattr(margins, "ROW_BLOCK", 101)
    monkeypatch.setattr(margins, "SAMPLE_BUDGET", 256)
    got = margin_pairs(ra, dec, h, layout, 7200.0)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert len(want[0]) > 1000


def test_margin_pairs_trivial_inputs(tiled):
    empty = np.empty(0)
    rows, parts = margin_pairs(empty, empty, np.empty(0, np.int64), tiled, 60.0)
    assert rows.shape == parts.shape == (0,)
    ra, dec = np.array([10.0]), np.array([20.0])
    rows, parts = margin_pairs(ra, dec, radec_to_healpix29(ra, dec), PartitionSet([]), 60.0)
    assert rows.shape == parts.shape == (0,)
    with pytest.raises(ValueError, match="equally long"):
        margin_pairs(ra, dec, np.zeros(2, np.int64), tiled, 60.0)
    with pytest.raises(ConfigError, match="width_arcsec"):
        margin_pairs(ra, dec, radec_to_healpix29(ra, dec), tiled, -1.0)


# ---------------------------------------------------------------- properties

SMALL_LAYOUT = hand_layout(seed=4, max_order=6)
ra_values = st.one_of(st.floats(0.0, 360.0), st.sampled_from([0.0, 360.0, 45.0, 90.0, 359.9999]))
dec_values = st.one_of(
    st.floats(-90.0, 90.0),
    st.sampled_from([90.0, -90.0, VERTEX_DEC, -VERTEX_DEC, 0.0, 89.99, -89.99]),
)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(ra_values, dec_values), min_size=1, max_size=12),
    st.sampled_from([1.0, 10.0, 60.0, 900.0, 3600.0, 4 * 3600.0]),
    st.floats(0.0, 3.0),
    st.integers(0, 2**32 - 1),
)
def test_margin_pairs_property(positions, width, spread, seed):
    # Each drawn position also brings a companion at a random distance up to
    # ``spread`` widths, so pairs near the width are common.
    rng = np.random.default_rng(seed)
    ra, dec = (np.array(x, dtype=np.float64) for x in zip(*positions, strict=True))
    ra2, dec2 = to_radec(
        moved(unit(ra, dec), rng.uniform(0, spread * width * ARCSEC, len(ra)), rng)
    )
    ra, dec = np.r_[ra, ra2], np.r_[dec, dec2]
    brute_check(ra, dec, SMALL_LAYOUT, width)
    rows, parts = margin_pairs(ra, dec, radec_to_healpix29(ra, dec), SMALL_LAYOUT, width)
    assert not np.any(SMALL_LAYOUT.locate(radec_to_healpix29(ra, dec))[rows] == parts)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 9),
    st.floats(0.0, 1.0),
    st.sampled_from([0.5, 5.0, 60.0, 700.0, 3600.0, 5 * 3600.0]),
    st.integers(0, 2**32 - 1),
)
def test_neighbourhood_ranges_hold_every_point_within_the_width(order, where, width, seed):
    """Points near a partition's boundary, inside and beyond the width, against exact distances."""
    rng = np.random.default_rng(seed)
    pixel = int(where * ((12 << 2 * order) - 1))
    ranges = neighbourhood_ranges(Partition(order, pixel), width)
    assert np.all(ranges[1:, 0] > ranges[:-1, 1])  # sorted and merged
    # Samples along the pixel's edges, moved by up to two widths in random directions.
    edge = np.asarray(hp.boundaries(1 << order, pixel, step=64, nest=True)).T
    starts = edge[rng.integers(0, len(edge), 400)]
    ra, dec = to_radec(moved(starts, rng.uniform(0, 2 * width * ARCSEC, len(starts)), rng))
    h29 = radec_to_healpix29(ra, dec)
    covered = np.zeros(len(h29), dtype=bool)
    for lo, hi in ranges:
        covered |= (h29 >= lo) & (h29 < hi)
    distance = distance_to_pixel_arcsec(ra, dec, order, pixel)
    within = distance <= width * (1 - 1e-6)
    assert within.any()
    assert covered[within].all(), distance[within & ~covered]
    shift = 2 * (29 - order)
    assert any(lo <= pixel << shift and (pixel + 1) << shift <= hi for lo, hi in ranges)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([*HOT_SPOTS, (123.4, -45.6), (270.0, 30.0)]),
    st.sampled_from([0.001, 0.5, 5.0, 60.0, 700.0, 3600.0, 5 * 3600.0, 20 * 3600.0]),
    st.integers(0, 2**32 - 1),
)
def test_points_reach_ranges_hold_every_point_within_the_width(centre, width, seed):
    """Random points, and points up to twice the width from them, against exact distances."""
    rng = np.random.default_rng(seed)
    ra0, dec0 = to_radec(
        moved(unit(np.full(20, centre[0]), np.full(20, centre[1])), rng.uniform(0, 0.2, 20), rng)
    )
    ranges = points_reach_ranges(ra0, dec0, width)
    assert np.all(ranges[1:, 0] > ranges[:-1, 1])  # sorted and merged
    pick = rng.integers(0, len(ra0), 500)
    ra, dec = to_radec(
        moved(unit(ra0[pick], dec0[pick]), rng.uniform(0, 2 * width * ARCSEC, len(pick)), rng)
    )
    h29 = radec_to_healpix29(ra, dec)
    covered = np.zeros(len(h29), dtype=bool)
    for lo, hi in ranges:
        covered |= (h29 >= lo) & (h29 < hi)
    nearest = np.min(
        haversine_arcsec(ra[:, None], dec[:, None], ra0[None, :], dec0[None, :]), axis=1
    )
    within = nearest <= width * (1 - 1e-6)
    assert within.any()
    assert covered[within].all(), nearest[within & ~covered]


def test_points_reach_ranges_skip_missing_positions():
    assert len(points_reach_ranges(np.array([np.nan]), np.array([10.0]), 5.0)) == 0
    assert len(points_reach_ranges(np.array([10.0]), np.array([95.0]), 5.0)) == 0
    one = points_reach_ranges(np.array([10.0, np.nan]), np.array([20.0, 1.0]), 5.0)
    assert np.array_equal(one, points_reach_ranges(np.array([10.0]), np.array([20.0]), 5.0))
    # a far smaller part of the sky than the whole
    assert (one[:, 1] - one[:, 0]).sum() < 12 * 4**29 / 1e6
    with pytest.raises(ConfigError):
        points_reach_ranges(np.array([10.0]), np.array([20.0]), 40 * 3600.0)


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_million_rows_sanity(capsys):
    rng = np.random.default_rng(0)
    n = 1_000_000
    ra = np.r_[rng.uniform(0, 360, n // 2), rng.normal(0, 3, n // 2) % 360.0]
    dec = np.r_[np.degrees(np.arcsin(rng.uniform(-1, 1, n // 2))), rng.normal(60, 3, n // 2)]
    dec = np.clip(dec, -90, 90)
    h = radec_to_healpix29(ra, dec)
    pix, counts = np.unique(h >> (2 * (29 - 10)), return_counts=True)
    layout = adaptive_layout(
        dict(zip(pix.tolist(), counts.tolist(), strict=True)), 10, threshold=660
    )
    partitions = PartitionSet(p for p, _ in layout)
    assert 2500 <= len(partitions) <= 4000
    start = time.perf_counter()
    rows, parts = margin_pairs(ra, dec, h, partitions, 60.0)
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        orders = sorted({p.order for p in partitions})
        print(
            f"\nmargin_pairs: {n} rows, {len(partitions)} partitions (orders {orders}), "
            f"60 arcsec: {len(rows)} pairs in {elapsed:.2f} s"
        )
    assert not np.any(partitions.locate(h[rows]) == parts)
    # A sample of rows against the brute force.
    sample = rng.choice(n, 300, replace=False)
    in_sample = np.isin(rows, sample)
    remap = {int(r): i for i, r in enumerate(sample)}
    sub_rows = np.array([remap[int(r)] for r in rows[in_sample]], dtype=np.int64)
    brute = brute_force(
        ra[sample], dec[sample], partitions, 60.001, probe_order_for(60.0, partitions)
    )
    judge(sub_rows, parts[in_sample], brute, 60.0)
