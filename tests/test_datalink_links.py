"""DataLink links without a server: the batch rules, ID checks, the SODA descriptor's ranges,
the request parameters, and the VOTable (STILTS votlint and datalinklint, pyvo reading it)."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from astropy.io import votable
from pyvo.dal.adhoc import DatalinkResults, SodaQuery

from services.sia.datalink_links import (
    CUTOUT,
    THIS,
    LinksResult,
    build_links,
    id_problem,
    pol_state_list,
    polygon_vertices,
    soda_descriptor,
    unique_ids,
)
from services.sia.datalink_params import LinksUsageError, check_response_format, parse_maxrec
from services.sia.datalink_votable import links_document

BASE = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Image:
    """Stands for ``services.sia.image_index.ImageRecord`` (the fields links use)."""

    did: str
    collection: str
    obs_id: str
    s_ra: float
    s_dec: float
    s_fov: float
    s_region: str
    em_min: float | None
    em_max: float | None
    t_min: float | None
    t_max: float | None
    pol_states: str | None
    file_format: str
    file_size: int


def image(obs_id: str, **changes: object) -> Image:
    base = Image(
        did=f"ivo://qcat/demo?{obs_id}",
        collection="demo",
        obs_id=obs_id,
        s_ra=359.95,
        s_dec=-10.0,
        s_fov=0.3,
        s_region="POLYGON ICRS 359.85 -10.1 0.05 -10.1 0.05 -9.9 359.85 -9.9",
        em_min=4.0e-7,
        em_max=5.5e-7,
        t_min=60000.25,
        t_max=60000.2504,
        pol_states=None,
        file_format="image/fits",
        file_size=123_456 + len(obs_id),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def file_url(img: Image) -> str:
    return f"{BASE}/images/{img.collection}/{img.obs_id}.fits"


def links(ids: list[str], images: list[Image], *, max_ids: int = 100, maxrec: int | None = None):
    return build_links(
        unique_ids(ids),
        {i.did: i for i in images},
        file_url=file_url,  # type: ignore[arg-type]
        max_ids=max_ids,
        maxrec=maxrec,
    )


def document(result: LinksResult) -> bytes:
    return links_document(result, soda_url=f"{BASE}/soda/sync", links_url=f"{BASE}/datalink/links")


# -- rows ------------------------------------------------------------------------------------


def test_found_image_has_this_and_cutout_rows() -> None:
    a = image("v001-g")
    result = links([a.did], [a])
    assert [(r.id, r.semantics) for r in result.links] == [(a.did, THIS), (a.did, CUTOUT)]
    this, cutout = result.links
    assert this.access_url == f"{BASE}/images/demo/v001-g.fits"
    assert (this.content_type, this.content_length) == ("image/fits", a.file_size)
    assert this.service_def is None and this.error_message is None
    assert cutout.access_url is None and cutout.error_message is None
    assert cutout.service_def == result.descriptors[0].xml_id
    assert result.descriptors[0].did == a.did
    assert not result.overflow


def test_unknown_and_malformed_ids_are_error_rows() -> None:
    a = image("v001-g")
    ids = ["ivo://qcat/demo?missing", "not-an-id", a.did, "", "ivo://qcat/demo"]
    result = links(ids, [a])
    errors = {r.id: r.error_message for r in result.links if r.error_message}
    assert errors["ivo://qcat/demo?missing"].startswith("NotFoundFault: ivo://qcat/demo?missing")
    assert errors["not-an-id"].startswith("UsageFault: not-an-id")
    assert errors[""].startswith("UsageFault: ")
    assert errors["ivo://qcat/demo"].startswith("UsageFault: ")
    for row in result.links:
        if row.error_message:
            assert row.semantics == THIS and row.access_url is None and row.service_def is None
    # Rows come in the order of the IDs.
    assert [r.id for r in result.links] == [*ids[:2], a.did, a.did, *ids[3:]]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("ivo://qcat/demo?v001-g", True),
        ("ivo://my.org/some/collection?a%20b", True),
        ("IVO://QCAT/demo?x", True),
        ("ivo://qcat/demo", False),
        ("ivo://qcat?x", False),
        ("http://qcat/demo?x", False),
        ("ivo://qcat/demo?x y", False),
        ("ivo://qcat/demo?" + "x" * 2000, False),
        ("   ", False),
    ],
)
def test_id_problem(value: str, ok: bool) -> None:
    problem = id_problem(value)
    assert (problem is None) == ok, problem
    if problem is not None:
        assert problem.startswith("UsageFault: ")


def test_repeated_ids_are_answered_once_in_one_block() -> None:
    a, b = image("a"), image("b")
    result = links([a.did, b.did, a.did, "ivo://qcat/demo?zz", b.did], [a, b])
    assert [r.id for r in result.links] == [a.did, a.did, b.did, b.did, "ivo://qcat/demo?zz"]
    assert len(result.descriptors) == 2
    assert len({d.xml_id for d in result.descriptors}) == 2


def test_more_ids_than_the_limit_overflow() -> None:
    imgs = [image(f"v{i:03d}") for i in range(5)]
    result = links([i.did for i in imgs], imgs, max_ids=3)
    assert result.overflow
    assert [r.id for r in result.links][::2] == [i.did for i in imgs[:3]]
    assert not links([i.did for i in imgs], imgs, max_ids=5).overflow


@pytest.mark.parametrize(("maxrec", "kept"), [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2)])
def test_maxrec_never_cuts_within_an_id(maxrec: int, kept: int) -> None:
    imgs = [image(f"v{i}") for i in range(3)]
    result = links([i.did for i in imgs], imgs, maxrec=maxrec)
    assert len(result.links) == 2 * kept
    assert len(result.descriptors) == kept
    assert result.overflow
    assert {r.service_def for r in result.links if r.service_def} == {
        d.xml_id for d in result.descriptors
    }


def test_maxrec_with_error_rows() -> None:
    a = image("a")
    result = links(["ivo://qcat/demo?nope", a.did], [a], maxrec=2)
    assert [r.id for r in result.links] == ["ivo://qcat/demo?nope"]
    assert result.overflow
    assert not links(["ivo://qcat/demo?nope", a.did], [a], maxrec=3).overflow


def test_no_ids_is_an_empty_result() -> None:
    result = links([], [])
    assert result.links == () and result.descriptors == () and not result.overflow


# -- the descriptor's ranges -----------------------------------------------------------------


def test_descriptor_ranges_come_from_the_image() -> None:
    a = image("a", pol_states="/I/Q/U/")
    d = soda_descriptor(a, "soda-1")
    assert d.circle == (a.s_ra, a.s_dec, a.s_fov / 2)
    assert d.polygon == (359.85, -10.1, 0.05, -10.1, 0.05, -9.9, 359.85, -9.9)
    assert d.band == (a.em_min, a.em_max)
    assert d.time == (a.t_min, a.t_max)
    assert d.pol_states == ("I", "Q", "U")


def test_descriptor_without_band_time_or_polarization() -> None:
    d = soda_descriptor(image("a", em_min=None, t_max=float("nan")), "x")
    assert d.band is None and d.time is None and d.pol_states is None


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("POLYGON ICRS 1 2 3 4 5 6", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)),
        ("Polygon ICRS GEOCENTER 1 2 3 4 5 6 7 8", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)),
        ("POLYGON 1 2 3 4 5 6", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)),
        ("POLYGON ICRS 1 2 3 4", None),
        ("POLYGON ICRS 1 2 3 4 5", None),
        ("CIRCLE ICRS 1 2 3", None),
        ("POLYGON ICRS 1 2 3 4 5 6 Union", None),
        ("", None),
    ],
)
def test_polygon_vertices(region: str, expected: tuple[float, ...] | None) -> None:
    assert polygon_vertices(region) == expected


def test_pol_state_list() -> None:
    assert pol_state_list("/I/V/") == ("I", "V")
    assert pol_state_list(None) is None
    assert pol_state_list("//") is None


# -- request parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "votable",
        "VOTable",
        "application/x-votable+xml",
        "application/x-votable+xml;content=datalink",
        "application/x-votable+xml; serialization=TABLEDATA",
        "text/xml",
    ],
)
def test_votable_formats_are_accepted(value: str | None) -> None:
    check_response_format(value)


@pytest.mark.parametrize(
    "value", ["csv", "text/csv", "application/x-votable+xml;serialization=BINARY2", "fits"]
)
def test_other_formats_are_usage_faults(value: str) -> None:
    with pytest.raises(LinksUsageError, match=r"^UsageFault: RESPONSEFORMAT"):
        check_response_format(value)


def test_maxrec_parameter() -> None:
    assert parse_maxrec(None) is None
    assert parse_maxrec(" ") is None
    assert parse_maxrec("7") == 7
    assert parse_maxrec("0") == 0
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(LinksUsageError, match=r"^UsageFault: MAXREC"):
            parse_maxrec(bad)


# -- the VOTable -----------------------------------------------------------------------------


def stilts(tool: str, path: Path) -> str:
    out = subprocess.run(
        ["stilts", tool, f"votable={path}"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_document_passes_votlint_and_datalinklint(tmp_path: Path) -> None:
    imgs = [image("v001-g"), image("v002-r", pol_states="/I/Q/"), image("bare", em_min=None)]
    ids = [i.did for i in imgs] + ["ivo://qcat/demo?nope", "junk"]
    for name, result in {
        "known": links(ids[:3], imgs),
        "unknown": links(ids[3:], imgs),
        "overflow": links(ids, imgs, max_ids=4),
        "empty": links([], []),
    }.items():
        path = tmp_path / f"{name}.vot"
        path.write_bytes(document(result))
        assert stilts("votlint", path).strip() == "", name
        lint = subprocess.run(
            ["stilts", "datalinklint", "report=EWF", f"votable={path}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Errors: 0;" in lint.stdout and "Failures: 0" in lint.stdout, lint.stdout
        assert "\nE-" not in lint.stdout and "\nF-" not in lint.stdout, lint.stdout


def test_pyvo_reads_the_links_and_builds_a_cutout_query() -> None:
    a, b = image("v001-g"), image("v002-r", s_ra=12.5, s_dec=3.0)
    result = links([a.did, "ivo://qcat/demo?nope", b.did], [a, b], maxrec=None)
    doc = votable.parse(io.BytesIO(document(result)))
    res = DatalinkResults(doc)
    assert len(res) == 5
    # include_narrower=False: pyvo would fetch the datalink vocabulary (tests run offline).
    these = list(res.bysemantics("#this", include_narrower=False))
    assert [r.access_url for r in these if not r.error_message] == [file_url(a), file_url(b)]
    assert [r.error_message for r in these if r.error_message] == [
        "NotFoundFault: ivo://qcat/demo?nope is not the ID of any image here"
    ]
    assert [r.content_length for r in these if not r.error_message] == [a.file_size, b.file_size]
    # The cutout row of b resolves to b's descriptor, whose ranges are b's.
    row = next(r for r in res.bysemantics("#cutout", include_narrower=False) if r.id == b.did)
    service = res.get_adhocservice_by_id(row.service_def)
    params = {p.name: p for p in row.input_params}
    assert set(params) == {"ID", "POS", "CIRCLE", "POLYGON", "BAND", "TIME"}
    assert list(params["CIRCLE"].values.max) == [b.s_ra, b.s_dec, b.s_fov / 2]
    assert (params["BAND"].values.min, params["BAND"].values.max) == (b.em_min, b.em_max)
    assert (params["TIME"].values.min, params["TIME"].values.max) == (b.t_min, b.t_max)
    query = SodaQuery.from_resource(row, service, circle=(12.5, 3.0, 0.01))
    assert query.baseurl == f"{BASE}/soda/sync"
    assert query["ID"] == b.did
    assert [float(x) for x in query["CIRCLE"].split()] == [12.5, 3.0, 0.01]


def test_overflow_is_the_last_query_status() -> None:
    imgs = [image(f"v{i}") for i in range(3)]
    doc = votable.parse(io.BytesIO(document(links([i.did for i in imgs], imgs, max_ids=2))))
    statuses = [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"]
    assert statuses[-1] == "OVERFLOW"
    standard = [i.value for i in doc.resources[0].infos if i.name == "standardID"]
    assert standard == ["ivo://ivoa.net/std/DataLink#links-1.1"]
