"""Order-29 HEALPix indexing and position validation."""

from __future__ import annotations

import astropy.units as u
import cdshealpix.nested as cds
import healpy as hp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partition.healpix import check_positions, healpix29_to_order, radec_to_healpix29

NSIDE_29 = 2**29
NPIX_29 = 12 * 4**29
# Where three base pixels meet (z = +-2/3): the awkward spots of the NESTED scheme.
VERTEX_DEC = float(np.degrees(np.arcsin(2.0 / 3.0)))


def random_positions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the sphere plus the poles, RA 0/360 and base-pixel vertices."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    special_ra = [0.0, 360.0, 0.0, 360.0, 180.0, 90.0, 0.0, 90.0, 45.0, 359.999999999, 1e-12]
    special_dec = [0.0, 0.0, 90.0, -90.0, 90.0, -90.0, VERTEX_DEC, -VERTEX_DEC, 0.0, 10.0, -10.0]
    k = len(special_ra)
    ra[:k], dec[:k] = special_ra, special_dec
    return ra, dec


def test_matches_healpy_ang2pix():
    ra, dec = random_positions(200_000, seed=1)
    got = radec_to_healpix29(ra, dec)
    want = hp.ang2pix(NSIDE_29, ra % 360.0, dec, nest=True, lonlat=True)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() < NPIX_29


def test_matches_cdshealpix():
    # An independent implementation (Rust). Points within float rounding of a
    # pixel edge may land on either side, so allow only such rare cases, and
    # only onto an adjacent pixel.
    ra, dec = random_positions(500_000, seed=2)
    ours = radec_to_healpix29(ra, dec)
    theirs = cds.lonlat_to_healpix((ra % 360.0) * u.deg, dec * u.deg, 29).astype(np.int64)
    differ = np.flatnonzero(ours != theirs)
    assert len(differ) <= 10
    for i in differ:
        neighbours = hp.get_all_neighbours(NSIDE_29, ours[i], nest=True)
        assert theirs[i] in neighbours


def test_ra_360_is_ra_0():
    dec = np.array([-90.0, -89.9999, -VERTEX_DEC, -30.0, 0.0, 12.5, VERTEX_DEC, 89.99999, 90.0])
    np.testing.assert_array_equal(
        radec_to_healpix29(np.full(dec.shape, 360.0), dec),
        radec_to_healpix29(np.zeros(dec.shape), dec),
    )


def test_accepts_float32():
    ra32 = np.array([10.5, 200.25], dtype=np.float32)
    dec32 = np.array([-5.5, 60.125], dtype=np.float32)
    want = radec_to_healpix29(ra32.astype(np.float64), dec32.astype(np.float64))
    np.testing.assert_array_equal(radec_to_healpix29(ra32, dec32), want)


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0.0, 360.0, allow_nan=False),
    st.floats(-90.0, 90.0, allow_nan=False),
)
def test_index_property(ra, dec):
    h = radec_to_healpix29(np.array([ra]), np.array([dec]))[0]
    assert 0 <= h < NPIX_29
    # Coarser pixels by shifting agree with healpy at every order, except for
    # points within rounding of an edge, which must then be adjacent.
    for order in (0, 3, 10, 20):
        coarse = healpix29_to_order(np.array([h]), order)[0]
        direct = hp.ang2pix(2**order, ra % 360.0, dec, nest=True, lonlat=True)
        if coarse != direct:
            assert coarse in hp.get_all_neighbours(2**order, direct, nest=True)
    if ra == 0.0:
        assert radec_to_healpix29(np.array([360.0]), np.array([dec]))[0] == h


def test_parent_pixels_contain_points():
    ra, dec = random_positions(50_000, seed=3)
    h = radec_to_healpix29(ra, dec)
    for order in (0, 1, 5, 12, 29):
        parent = healpix29_to_order(h, order)
        direct = hp.ang2pix(2**order, ra % 360.0, dec, nest=True, lonlat=True)
        # Only points within float rounding of an edge may differ.
        assert np.count_nonzero(parent != direct) <= 2
    np.testing.assert_array_equal(healpix29_to_order(h, 29), h)
    assert healpix29_to_order(h, 0).max() < 12


def test_parent_order_out_of_range():
    with pytest.raises(ValueError, match="order"):
        healpix29_to_order(np.array([0]), 30)
    with pytest.raises(ValueError, match="order"):
        healpix29_to_order(np.array([0]), -1)


def test_check_positions_accepts_valid_edges():
    ra = np.array([0.0, 360.0, 180.0, 0.0, 359.99])
    dec = np.array([-90.0, 90.0, 0.0, 90.0, -89.99])
    assert check_positions(ra, dec) is None
    assert check_positions(np.array([]), np.array([])) is None


@pytest.mark.parametrize(
    ("ra_bad", "dec_bad", "words"),
    [
        (None, np.nan, ["dec", "null", "NaN"]),
        (np.nan, None, ["ra", "null", "NaN"]),
        (None, 91.0, ["dec", "91.0", "[-90, 90]"]),
        (None, -90.5, ["dec", "-90.5", "[-90, 90]"]),
        (-1.0, None, ["ra", "-1.0", "[0, 360]"]),
        (360.0001, None, ["ra", "360.0001", "[0, 360]"]),
        (np.inf, None, ["ra", "infinite"]),
        (None, -np.inf, ["dec", "infinite"]),
    ],
)
def test_check_positions_reports_the_problem(ra_bad, dec_bad, words):
    ra = np.linspace(1.0, 350.0, 10)
    dec = np.linspace(-80.0, 80.0, 10)
    if ra_bad is not None:
        ra[6] = ra_bad
    if dec_bad is not None:
        dec[6] = dec_bad
    found = check_positions(ra, dec)
    assert found is not None
    index, message = found
    assert index == 6
    for word in words:
        assert word in message


def test_check_positions_reports_the_first_bad_row():
    ra = np.array([10.0, 20.0, 30.0, -1.0, 50.0, 360.0001, 70.0])
    dec = np.array([0.0, 0.0, 0.0, 0.0, 91.0, 0.0, np.nan])
    assert check_positions(ra, dec) == (3, "ra = -1.0 is outside [0, 360] degrees")
    dec[1] = np.nan
    found = check_positions(ra, dec)
    assert found is not None and found[0] == 1
    # Both bad in one row: dec is named.
    found = check_positions(np.array([400.0]), np.array([-100.0]))
    assert found is not None and found[0] == 0 and found[1].startswith("dec")


def test_check_positions_nulls():
    # None in an object array (a converted SQL NULL) and masked entries.
    found = check_positions(np.array([1.0, None, 3.0], dtype=object), np.zeros(3))
    assert found == (1, "ra is null or not a number (NaN)")
    dec = np.ma.masked_array([0.0, 1.0, 2.0], mask=[False, False, True])
    found = check_positions(np.ones(3), dec)
    assert found == (2, "dec is null or not a number (NaN)")


def test_check_positions_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        check_positions(np.zeros(3), np.zeros(2))
