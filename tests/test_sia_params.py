"""SIA 2.0 parameters: parsing into constraints, errors naming the value, the ADQL translation."""

from __future__ import annotations

import math

import pytest

from qcat.config import SETTINGS
from qcat.czar.adql import parse_adql
from qcat.geometry import Circle, Polygon
from services.settings import ServiceSettings
from services.sia.sia_adql import sia_adql
from services.sia.sia_params import (
    Interval,
    SiaParameterError,
    parse_interval,
    parse_pos,
    parse_query,
)
from services.sia.sia_range import SkyRange

SETTINGS_ = ServiceSettings.defaults()
DEFAULT_MAXREC = int(SETTINGS["sia_maxrec_default"].default)
HARD_MAXREC = int(SETTINGS["sia_maxrec_hard"].default)


def query(**params: list[str]):  # type: ignore[no-untyped-def]
    return parse_query({k.upper(): v for k, v in params.items()}, SETTINGS_)


# -- POS -------------------------------------------------------------------------------


def test_circle_range_polygon() -> None:
    assert parse_pos("CIRCLE 10 20 0.5") == Circle(10, 20, 0.5)
    assert parse_pos("circle  10.5e0\t-20 1") == Circle(10.5, -20, 1)
    poly = parse_pos("POLYGON 10 10 11 10 11 11")
    assert isinstance(poly, Polygon) and len(poly.vertices) == 3
    assert parse_pos("RANGE 10 20 -5 5") == SkyRange(10.0, 10.0, -5.0, 5.0)


def test_range_wraps_and_infinities() -> None:
    assert parse_pos("RANGE 350 10 -1 1") == SkyRange(350.0, 20.0, -1.0, 1.0)
    assert parse_pos("RANGE -10 10 -1 1") == SkyRange(350.0, 20.0, -1.0, 1.0)
    assert parse_pos("RANGE 0 360 89 +Inf") == SkyRange(0.0, 360.0, 89.0, 90.0)
    assert parse_pos("RANGE -Inf +Inf -Inf -80") == SkyRange(0.0, 360.0, -90.0, -80.0)
    assert parse_pos("RANGE -inf inf -90 90").full_ra


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("CIRCLE 10 20", "3 numbers"),
        ("CIRCLE 10 20 0 ", "radius"),
        ("CIRCLE 10 20 400", "radius"),
        ("CIRCLE 10 20 -1", "radius"),
        ("CIRCLE 10 95 1", "dec"),
        ("CIRCLE 10 abc 1", "'abc' is not a number"),
        ("CIRCLE 10 20 nan", "not a number"),
        ("CIRCLE 10 20 +Inf", "finite"),
        ("POLYGON 10 10 11 10", "at least 3 vertices"),
        ("POLYGON 10 10 11 10 11", "at least 3 vertices"),
        ("POLYGON 10 0 11 0 12 0", "POLYGON"),  # three vertices on one great circle
        ("RANGE 10 20 5", "4 numbers"),
        ("RANGE 10 20 5 1", "larger than"),
        ("RANGE 10 20 -100 1", "outside"),
        ("BOX 10 20 1 1", "CIRCLE, RANGE or POLYGON"),
        ("", "CIRCLE, RANGE or POLYGON"),
    ],
)
def test_bad_pos_is_named(value: str, words: str) -> None:
    with pytest.raises(SiaParameterError) as e:
        parse_pos(value)
    assert "POS=" in str(e.value) and words in str(e.value)


# -- intervals -------------------------------------------------------------------------


def test_intervals() -> None:
    assert parse_interval("BAND", "4e-7 5.5e-7") == Interval(4e-7, 5.5e-7)
    assert parse_interval("BAND", "5e-7") == Interval(5e-7, 5e-7)
    assert parse_interval("TIME", "-Inf 60000") == Interval(-math.inf, 60000.0)
    assert parse_interval("TIME", "60000 +Inf") == Interval(60000.0, math.inf)
    assert parse_interval("FOV", "-inf inf") == Interval(-math.inf, math.inf)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "got 0 values"),
        ("1 2 3", "got 3 values"),
        ("2 1", "lower bound is larger"),
        ("a b", "'a' is not a number"),
        ("1_000 2000", "not a number"),
        ("NaN 1", "not a number"),
        ("+Inf", "single value must be finite"),
        ("+Inf +Inf", "empty"),
    ],
)
def test_bad_interval_is_named(value: str, words: str) -> None:
    with pytest.raises(SiaParameterError) as e:
        parse_interval("EXPTIME", value)
    assert f"EXPTIME={value!r}" in str(e.value) and words in str(e.value)


# -- the whole query -------------------------------------------------------------------


def test_repeated_values_are_kept_and_others_checked() -> None:
    q = query(
        pos=["CIRCLE 1 2 3", "RANGE 1 2 3 4"],
        band=["4e-7 5e-7", "7e-7"],
        collection=["a", "b"],
        pol=["i", "Q"],
        calib=["2", "3"],
        maxrec=["5"],
        responseformat=["votable"],
    )
    assert len(q.pos) == 2
    assert q.intervals["BAND"] == (Interval(4e-7, 5e-7), Interval(7e-7, 7e-7))
    assert q.strings["COLLECTION"] == ("a", "b")
    assert q.pol == ("I", "Q")
    assert q.calib == (2, 3)
    assert q.maxrec == 5
    assert q.response_format.is_votable


def test_maxrec_limits() -> None:
    assert query().maxrec == min(DEFAULT_MAXREC, HARD_MAXREC)
    assert query(maxrec=["0"]).maxrec == 0
    assert query(maxrec=[str(HARD_MAXREC * 10)]).maxrec == HARD_MAXREC


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"MAXREC": ["-1"]}, "MAXREC='-1'"),
        ({"MAXREC": ["ten"]}, "non-negative integer"),
        ({"MAXREC": ["1", "2"]}, "more than once"),
        ({"RESPONSEFORMAT": ["image/png"]}, "unknown RESPONSEFORMAT 'image/png'"),
        ({"POL": ["W"]}, "POL='W'"),
        ({"CALIB": ["two"]}, "CALIB='two'"),
        ({"CALIB": ["-1"]}, "CALIB='-1'"),
        ({"BAND": ["x"]}, "BAND='x'"),
    ],
)
def test_bad_query_parameters(params: dict[str, list[str]], words: str) -> None:
    with pytest.raises(SiaParameterError) as e:
        parse_query(params, SETTINGS_)
    assert words in str(e.value)


# -- ADQL ------------------------------------------------------------------------------


def test_adql_translation_parses_and_says_what_was_asked() -> None:
    q = query(
        pos=["CIRCLE 10 20 0.5", "POLYGON 10 10 11 10 11 11", "RANGE 350 10 -5 5"],
        band=["4e-7 +Inf"],
        time=["-Inf 60000"],
        fov=["0.1 0.3"],
        spatres=["0.5 2"],
        exptime=["30"],
        timeres=["1 2"],
        specrp=["1 5"],
        pol=["I"],
        id=["ivo://qcat/demo?v'1"],
        collection=["demo"],
        facility=["F"],
        instrument=["I"],
        dptype=["image"],
        target=["field a"],
        format=["image/fits"],
        calib=["2"],
    )
    adql = sia_adql(q)
    parse_adql(adql)  # raises on a syntax error
    for piece in (
        "FROM ivoa.ObsCore",
        "1 = INTERSECTS(CIRCLE(s_ra, s_dec, s_fov / 2 + 1e-09), CIRCLE(10.0, 20.0, 0.500000001))",
        "s_dec + s_fov / 2 + 1e-09 >= -5.0",
        "em_max >= 4e-07",
        "t_min <= 60000.0",
        "s_fov <= 0.3 AND s_fov >= 0.1",
        "t_exptime <= 30.0 AND t_exptime >= 30.0",
        "pol_states LIKE '%/I/%'",
        "obs_publisher_did IN ('ivo://qcat/demo?v''1')",
        "(access_format IN ('image/fits')) OR (file_format IN ('image/fits'))",
        "calib_level IN (2)",
        "target_name IN ('field a')",
    ):
        assert piece in adql, piece
    assert " OR " in adql.split("AND em_max")[0]  # the three POS regions are OR-ed
    assert adql.count("INTERSECTS") == 3  # the polygon is prefiltered by a circle holding it
    # A polygon too large for a circle smaller than a hemisphere is sent as it is.
    big = sia_adql(query(pos=["POLYGON 0 0.5 120 0.5 240 0.5"]))
    parse_adql(big)
    assert "POLYGON(0.0, 0.5, 120.0, 0.5, 240.0, 0.5)" in big


def test_no_constraints_selects_everything() -> None:
    assert sia_adql(query()) == "SELECT * FROM ivoa.ObsCore"
    everything = sia_adql(query(pos=["RANGE -Inf +Inf -Inf +Inf"], band=["-Inf +Inf"]))
    parse_adql(everything)
    assert "em_min IS NOT NULL" in everything and "s_ra IS NOT NULL" in everything
