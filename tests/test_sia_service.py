"""SIA 2.0 through a real server: pyvo searches checked against answers computed from the
FITS files themselves (tests/sia_oracle.py), every parameter, MAXREC, errors, VOSI, votlint.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pyvo
from astropy.io import fits, votable
from astropy.time import Time
from astropy.wcs import WCS, Sip

from partition.images import ingest_images
from services.service import Service
from services.settings import ServiceSettings
from tests import sia_oracle as oracle
from tests.service_support import dali_error, serve_data
from tests.xsd import assert_schema_valid

SCALE_ARCSEC = 12.0
#: Too close to call: within about a pixel of touching.
MARGIN_DEG = 1.5 * SCALE_ARCSEC / 3600.0


@dataclass(frozen=True)
class Img:
    """One test image: where it points, its filter, time and size."""

    name: str
    ra: float
    dec: float
    rotation: float
    band: str
    mjd: float
    exptime: float
    target: str
    collection: str = "demo"
    nx: int = 80
    ny: int = 60
    mef: bool = False
    #: TAN-SIP with this quadratic coefficient (pixels per pixel squared); 0: plain TAN.
    sip: float = 0.0

    @property
    def did(self) -> str:
        return f"ivo://qcat/{self.collection}?{self.name}"


def _images() -> list[Img]:
    rng = np.random.default_rng(21)
    out: list[Img] = []
    bands = "grizgr"
    fields = [("fa", 10.0, 10.0, 0.5), ("zero", 0.0, -5.0, 0.4), ("pole", 45.0, 89.8, 0.3)]
    k = 0
    for target, ra0, dec0, spread in fields:
        for i in range(6):
            dec = float(np.clip(dec0 + rng.uniform(-spread, spread), -89.5, 89.95))
            ra = (ra0 + rng.uniform(-spread, spread) / max(math.cos(math.radians(dec)), 0.05)) % 360
            out.append(
                Img(
                    f"{target}-{i}",
                    float(ra),
                    dec,
                    float(rng.uniform(0, 90)),
                    bands[i],
                    60000.0 + k * 0.25,
                    [15.0, 30.0, 60.0][i % 3],
                    target,
                    nx=int(rng.choice([60, 80, 120])),
                    mef=i == 2,
                )
            )
            k += 1
    # Distorted (TAN-SIP: edges bulge by up to ~0.6 pixel) in field A.
    for i in range(2):
        out.append(
            Img(
                f"sip-{i}",
                10.3 - 0.4 * i,
                9.8,
                15.0 + 40 * i,
                "r",
                60050.0 + i,
                30.0,
                "fa",
                sip=4e-4,
            )
        )
    # A second collection over field A, from another facility.
    for i in range(3):
        out.append(
            Img(
                f"deep-{i}",
                10.0 + 0.2 * i,
                10.1,
                30.0,
                "i",
                60100.0 + i,
                300.0,
                "fa",
                collection="deep",
                nx=150,
                ny=150,
            )
        )
    return out


IMAGES = _images()
BY_DID = {img.did: img for img in IMAGES}


def image_wcs(img: Img) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [img.ra, img.dec]
    w.wcs.crpix = [(img.nx + 1) / 2, (img.ny + 1) / 2]
    s, t = SCALE_ARCSEC / 3600.0, math.radians(img.rotation)
    w.wcs.cd = [[-s * math.cos(t), s * math.sin(t)], [s * math.sin(t), s * math.cos(t)]]
    if img.sip:
        a, b = np.zeros((3, 3)), np.zeros((3, 3))
        a[2, 0], a[0, 2], b[1, 1] = img.sip, -0.5 * img.sip, img.sip
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
    return w


def write_image(img: Img, path: Path) -> None:
    header = image_wcs(img).to_header(relax=True)
    header["FILTER"] = img.band
    header["MJD-OBS"] = img.mjd
    header["EXPTIME"] = img.exptime
    header["OBJECT"] = img.target
    header["TELESCOP"] = "QCAT-T" if img.collection == "demo" else "DEEP-T"
    header["INSTRUME"] = "QCAM" if img.collection == "demo" else "DCAM"
    data = np.zeros((img.ny, img.nx), dtype=np.float32)
    if img.mef:
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(data, header, name="IMAGE")]
        hdus.append(fits.ImageHDU(data, header, name="VARIANCE"))
        fits.HDUList(hdus).writeto(path)
    else:
        fits.PrimaryHDU(data, header).writeto(path)


def footprint_from_file(path: Path) -> oracle.Shape:
    """The oracle's footprint of the image HDU of a file, from the file's own header."""
    with fits.open(path) as hdus:
        hdu = next(h for h in hdus if h.data is not None)
        ny, nx = hdu.data.shape
        return oracle.footprint_shape(WCS(hdu.header), nx, ny, 200)


@dataclass
class Sia:
    url: str
    service: Service
    data: Path
    shapes: dict[str, oracle.Shape]

    @property
    def sia(self) -> pyvo.dal.SIA2Service:
        return pyvo.dal.SIA2Service(self.url + "/sia")

    def search(self, **kwargs: Any) -> set[str]:
        """DIDs found by pyvo's SIA2Service.search."""
        return {str(d) for d in self.sia.search(**kwargs)["obs_publisher_did"]}

    def raw(self, params: list[tuple[str, str]], method: str = "GET") -> httpx.Response:
        if method == "POST":
            return httpx.post(self.url + "/sia/query", data=dict(params), timeout=60)
        return httpx.get(self.url + "/sia/query", params=params, timeout=60)

    def raw_dids(self, params: list[tuple[str, str]]) -> set[str]:
        response = self.raw(params)
        assert response.status_code == 200, response.text[:500]
        table = votable.parse_single_table(io.BytesIO(response.content)).to_table()
        return {str(d) for d in table["obs_publisher_did"]}

    def rows(self) -> list[dict[str, Any]]:
        """Every ObsCore row, through the query engine (for the non-spatial parameters)."""
        return self.service.engine.execute("SELECT * FROM ivoa.ObsCore").read_all().to_pylist()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sia]:
    root = tmp_path_factory.mktemp("sia")
    data = root / "data"
    shapes = {}
    for collection, facility in (("demo", "QCAT-T"), ("deep", "DEEP-T")):
        folder = root / collection
        folder.mkdir()
        for img in IMAGES:
            if img.collection == collection:
                write_image(img, folder / f"{img.name}.fits")
                shapes[img.did] = footprint_from_file(folder / f"{img.name}.fits")
        result = ingest_images(data, collection, [folder], facility=facility)
        assert not result.skipped and result.rows_added == sum(
            img.collection == collection for img in IMAGES
        ), result
    with serve_data(data, ServiceSettings.defaults()) as (service, url):
        yield Sia(url, service, data, shapes)


# -- regions -----------------------------------------------------------------------------


def _offset(ra: float, dec: float, bearing: float, dist: float) -> tuple[float, float]:
    d, b, phi = math.radians(dist), math.radians(bearing), math.radians(dec)
    lat = math.asin(math.sin(phi) * math.cos(d) + math.cos(phi) * math.sin(d) * math.cos(b))
    lon = math.radians(ra) + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(phi), math.cos(d) - math.sin(phi) * math.sin(lat)
    )
    return math.degrees(lon) % 360.0, math.degrees(lat)


def random_region(rng: np.random.Generator, served: Sia) -> tuple[str, oracle.Shape, Any]:
    """A POS value near a random footprint's edge, its oracle shape and its pyvo form."""
    img = IMAGES[int(rng.integers(len(IMAGES)))]
    shape = served.shapes[img.did]
    k = int(rng.integers(len(shape.ra)))
    ra, dec = _offset(
        float(shape.ra[k]), float(shape.dec[k]), float(rng.uniform(0, 360)), rng.uniform(0, 0.15)
    )
    size = float(rng.uniform(0.01, 0.25))
    kind = ("circle", "polygon", "range")[int(rng.integers(3))]
    if kind == "circle":
        return (
            f"CIRCLE {ra!r} {dec!r} {size!r}",
            oracle.circle_shape(ra, dec, size),
            (ra, dec, size),
        )
    if kind == "polygon":
        n = int(rng.integers(3, 7))
        turn = float(rng.uniform(0, 360))
        verts = [
            _offset(ra, dec, turn + 360.0 * j / n, size * rng.uniform(0.5, 1)) for j in range(n)
        ]
        text = "POLYGON " + " ".join(f"{a!r} {d!r}" for a, d in verts)
        flat = tuple(x for v in verts for x in v)
        return text, oracle.polygon_shape(verts), flat
    height = size
    width = min(size / max(math.cos(math.radians(dec)), 0.02), 300.0)
    ra1, ra2 = (ra - width / 2) % 360.0, (ra + width / 2) % 360.0
    dec1, dec2 = max(dec - height / 2, -90.0), min(dec + height / 2, 90.0)
    pyvo_form = (ra1, ra2, dec1, dec2) if ra1 <= ra2 else None
    text = f"RANGE {ra1!r} {ra2!r} {dec1!r} {dec2!r}"
    return text, oracle.range_shape(ra1, ra2, dec1, dec2), pyvo_form


def expected(served: Sia, region: oracle.Shape) -> tuple[set[str], set[str]]:
    """(images that overlap, images too close to call) by the oracle."""
    hits, unsure = set(), set()
    for did, shape in served.shapes.items():
        answer = oracle.overlap(region, shape, MARGIN_DEG)
        if answer is None:
            unsure.add(did)
        elif answer:
            hits.add(did)
    return hits, unsure


def test_positions_match_the_footprints_of_the_files(served: Sia) -> None:
    rng = np.random.default_rng(5)
    decided = found = off_centre = 0
    for _ in range(45):
        text, shape, pyvo_form = random_region(rng, served)
        hits, unsure = expected(served, shape)
        if pyvo_form is not None:
            got = served.search(pos=pyvo_form)
        else:
            got = served.raw_dids([("POS", text)])
        assert got - unsure == hits - unsure, text
        decided += len(served.shapes) - len(unsure)
        found += len(hits - unsure)
        for did in hits - unsure:
            img = BY_DID[did]
            off_centre += not bool(shape.contains(np.array([img.ra]), np.array([img.dec]))[0])
    assert found >= 25 and decided >= 45 * len(served.shapes) * 0.9
    assert off_centre >= 10  # overlaps that do not hold the image's centre


@pytest.mark.parametrize(
    "pos",
    [
        "RANGE 359.8 0.2 -5.3 -4.7",  # across RA = 0
        "RANGE 0 360 89.9 +Inf",  # a cap around the north pole
        "RANGE -Inf +Inf 89.5 89.7",  # a band near the pole
        "CIRCLE 0 90 0.15",
        "CIRCLE 359.95 -5 0.2",
        "POLYGON 359.7 -5.3 0.3 -5.3 0.3 -4.7 359.7 -4.7",
        "POLYGON 0 89.7 120 89.7 240 89.7",  # around the pole
        "RANGE 10 10.3 9 11",
    ],
)
def test_special_places(served: Sia, pos: str) -> None:
    words = pos.split()
    nums = [float(w) for w in words[1:]]
    if words[0] == "CIRCLE":
        shape = oracle.circle_shape(*nums)
    elif words[0] == "POLYGON":
        shape = oracle.polygon_shape(list(zip(nums[0::2], nums[1::2], strict=True)))
    else:
        ra1, ra2 = (0.0, 360.0) if not math.isfinite(nums[0]) else (nums[0], nums[1])
        shape = oracle.range_shape(ra1, ra2, nums[2], min(nums[3], 90.0))
    hits, unsure = expected(served, shape)
    got = served.raw_dids([("POS", pos)])
    assert got - unsure == hits - unsure
    assert hits, pos  # every place holds some image


def test_repeated_pos_is_ored_and_other_parameters_anded(served: Sia) -> None:
    a, b = "CIRCLE 10 10 0.3", "CIRCLE 0 -5 0.3"
    union = served.raw_dids([("POS", a), ("POS", b)])
    first, second = served.raw_dids([("POS", a)]), served.raw_dids([("POS", b)])
    assert first and second and union == first | second
    g_only = served.raw_dids([("POS", a), ("POS", b), ("BAND", "5e-7")])
    g_rows = {r["obs_publisher_did"] for r in served.rows() if r["band_name"] == "g"}
    assert g_only == union & g_rows and g_only


# -- the other parameters -----------------------------------------------------------------


def _matching(rows: list[dict[str, Any]], test: Any) -> set[str]:
    return {r["obs_publisher_did"] for r in rows if test(r)}


def test_every_parameter_against_the_table_and_headers(served: Sia) -> None:
    rows = served.rows()
    everything = {r["obs_publisher_did"] for r in rows}
    assert everything == set(BY_DID)

    def overlaps(lo_col: str, hi_col: str, lo: float, hi: float) -> Any:
        return lambda r: r[lo_col] is not None and r[lo_col] <= hi and r[hi_col] >= lo

    g = next(r for r in rows if r["band_name"] == "g")
    mid = (g["em_min"] + g["em_max"]) / 2
    assert served.search(band=mid) == _matching(rows, lambda r: r["band_name"] == "g")
    assert served.search(band=(mid, 1e-6)) == _matching(
        rows, overlaps("em_min", "em_max", mid, 1e-6)
    )
    assert served.search(band=[(3e-7, 3.1e-7), mid]) == _matching(
        rows, lambda r: r["band_name"] == "g"
    )

    # TIME from the headers: MJD-OBS to MJD-OBS + EXPTIME.
    t0, t1 = 60000.6, 60001.1
    by_header = {
        img.did for img in IMAGES if img.mjd <= t1 and img.mjd + img.exptime / 86400.0 >= t0
    }
    assert served.search(time=(Time(t0, format="mjd"), Time(t1, format="mjd"))) == by_header
    assert by_header == _matching(rows, overlaps("t_min", "t_max", t0, t1))

    exp = {img.did for img in IMAGES if 20.0 <= img.exptime <= 100.0}
    assert served.search(exptime=(20.0, 100.0)) == exp and exp
    assert served.search(exptime=[15.0, 300.0]) == {
        img.did for img in IMAGES if img.exptime in (15.0, 300.0)
    }

    fovs = sorted(r["s_fov"] for r in rows)
    lo, hi = fovs[3], fovs[10]
    assert served.search(field_of_view=(lo, hi)) == _matching(
        rows, lambda r: lo <= r["s_fov"] <= hi
    )
    res = sorted({r["s_resolution"] for r in rows})
    assert served.search(spatial_resolution=(res[0], res[0])) == _matching(
        rows, lambda r: r["s_resolution"] == res[0]
    )

    some = sorted(everything)[:3]
    assert served.search(publisher_did=some) == set(some)
    assert served.search(collection="deep") == {i.did for i in IMAGES if i.collection == "deep"}
    assert served.search(collection=["deep", "demo"]) == everything
    assert served.search(facility="DEEP-T") == {i.did for i in IMAGES if i.collection == "deep"}
    instruments = {r["instrument_name"] for r in rows}
    for instrument in instruments:
        assert served.search(instrument=instrument) == _matching(
            rows, lambda r, i=instrument: r["instrument_name"] == i
        )
    assert served.search(data_type="image") == everything
    assert served.search(data_type="cube") == set()
    assert served.search(calib_level=2) == _matching(rows, lambda r: r["calib_level"] == 2)
    assert served.search(calib_level=[0, 1]) == _matching(rows, lambda r: r["calib_level"] < 2)
    targets = {r["target_name"] for r in rows}
    assert targets >= {"fa", "zero", "pole"}
    assert served.search(target_name="pole") == {i.did for i in IMAGES if i.target == "pole"}
    assert served.search(res_format="image/fits") == everything
    assert served.search(res_format="application/x-votable+xml;content=datalink") == _matching(
        rows, lambda r: r["access_format"].endswith("content=datalink")
    )
    assert served.search(pol="I") == _matching(
        rows, lambda r: r["pol_states"] is not None and "/I/" in r["pol_states"]
    )
    # Different parameters AND-ed.
    assert served.search(collection="demo", target_name="zero", exptime=(0, 20)) == {
        i.did for i in IMAGES if i.collection == "demo" and i.target == "zero" and i.exptime <= 20
    }


def test_result_columns_and_urls(served: Sia) -> None:
    results = served.sia.search(pos=(10.0, 10.0, 0.5), maxrec=3)
    table = results.to_table()
    for column in ("obs_publisher_did", "access_url", "s_region", "s_ra", "em_min", "t_min"):
        assert column in table.colnames
    assert all(str(u).startswith(served.url + "/datalink/links?ID=") for u in table["access_url"])
    record = results[0]
    assert record.access_format == "application/x-votable+xml;content=datalink"
    assert str(record.obs_publisher_did) in BY_DID


# -- MAXREC ------------------------------------------------------------------------------


def _status(content: bytes) -> list[str]:
    doc = votable.parse(io.BytesIO(content))
    return [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"]


def test_maxrec_counts_after_the_exact_test(served: Sia) -> None:
    pos = ("POS", "CIRCLE 10 10 1")
    all_hits = served.raw_dids([pos])
    assert len(all_hits) >= 5
    cut = served.raw([pos, ("MAXREC", "3")])
    table = votable.parse_single_table(io.BytesIO(cut.content)).to_table()
    assert len(table) == 3 and set(table["obs_publisher_did"]) <= all_hits
    assert _status(cut.content) == ["OK", "OVERFLOW"]
    exact = served.raw([pos, ("MAXREC", str(len(all_hits)))])
    assert _status(exact.content) == ["OK"]
    zero = served.raw([pos, ("MAXREC", "0")])
    assert len(votable.parse_single_table(io.BytesIO(zero.content)).to_table()) == 0
    assert _status(zero.content) == ["OK", "OVERFLOW"]
    results = served.sia.search(pos=(10.0, 10.0, 1.0), maxrec=2)  # pyvo: no warning, it asked
    assert len(results) == 2 and results.status[0] == "OVERFLOW"


def test_maxrec_limits_are_the_service_settings(served: Sia) -> None:
    """Another service over the same data, with low ``sia_maxrec_default``/``sia_maxrec_hard``."""
    everything = [("COLLECTION", "demo"), ("COLLECTION", "deep")]
    n_images = len(served.raw_dids(everything))
    default, hard = 2, 4
    assert n_images > hard
    settings = ServiceSettings.defaults(sia_maxrec_default=default, sia_maxrec_hard=hard)
    with serve_data(served.data, settings) as (_, url):

        def count(extra: list[tuple[str, str]]) -> tuple[int, list[str]]:
            response = httpx.get(url + "/sia/query", params=everything + extra, timeout=60)
            assert response.status_code == 200, response.text[:500]
            table = votable.parse_single_table(io.BytesIO(response.content)).to_table()
            return len(table), _status(response.content)

        assert count([]) == (default, ["OK", "OVERFLOW"])
        assert count([("MAXREC", "3")]) == (3, ["OK", "OVERFLOW"])
        assert count([("MAXREC", str(10 * n_images))]) == (hard, ["OK", "OVERFLOW"])
    # The module's service, with the default settings, is not limited by them.
    assert len(served.raw_dids([*everything, ("MAXREC", str(hard))])) == hard


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ([("POS", "CIRCLE 10 10")], "CIRCLE ra dec radius"),
        ([("POS", "CIRCLE 10 10 500")], "radius"),
        ([("POS", "POLYGON 10 10 11 11")], "at least 3 vertices"),
        ([("POS", "ELLIPSE 1 2 3 4")], "CIRCLE, RANGE or POLYGON"),
        ([("POS", "RANGE 1 2 3")], "RANGE ra1 ra2 dec1 dec2"),
        ([("BAND", "5e-7 4e-7")], "BAND='5e-7 4e-7'"),
        ([("BAND", "red")], "'red' is not a number"),
        ([("TIME", "60000 x")], "TIME="),
        ([("MAXREC", "-5")], "MAXREC='-5'"),
        ([("RESPONSEFORMAT", "text/html")], "unknown RESPONSEFORMAT"),
        ([("POL", "Z")], "POL='Z'"),
        ([("CALIB", "high")], "CALIB='high'"),
    ],
)
def test_bad_input_is_a_400_naming_it(
    served: Sia, params: list[tuple[str, str]], words: str
) -> None:
    message = dali_error(served.raw(params), 400)
    assert words in message


def test_pyvo_raises_the_message(served: Sia) -> None:
    with pytest.raises(pyvo.dal.DALQueryError, match="FOV='x': 'x' is not a number"):
        served.sia.search(pos=(10.0, 10.0, 0.1), FOV="x")
    with pytest.raises(pyvo.dal.DALQueryError, match="radius"):
        served.sia.search(POS="CIRCLE 10 10 200")


def test_post_unknown_paths_and_methods(served: Sia) -> None:
    params = [("POS", "CIRCLE 10 10 0.5"), ("COLLECTION", "demo")]
    assert served.raw_dids(params) == {
        str(d)
        for d in votable.parse_single_table(
            io.BytesIO(served.raw(params, "POST").content)
        ).to_table()["obs_publisher_did"]
    }
    assert dali_error(httpx.get(served.url + "/sia/nothing"), 404)
    assert dali_error(httpx.put(served.url + "/sia/query"), 405)


# -- VOSI, votlint, log ----------------------------------------------------------------------


def test_capabilities_and_availability(served: Sia) -> None:
    caps = httpx.get(served.url + "/sia/capabilities")
    assert caps.status_code == 200 and caps.headers["content-type"].startswith("text/xml")
    assert_schema_valid(caps.content)
    assert served.sia.query_ep == served.url + "/sia/query"
    standards = {c.standardid for c in served.sia.capabilities}
    assert "ivo://ivoa.net/std/SIA#query-2.0" in standards
    assert "ivo://ivoa.net/std/VOSI#availability" in standards
    avail = httpx.get(served.url + "/sia/availability")
    assert avail.status_code == 200 and b"<vosi:available>true" in avail.content
    assert_schema_valid(avail.content)


def test_votlint_finds_nothing_wrong(served: Sia, tmp_path: Path) -> None:
    pos = ("POS", "CIRCLE 10 10 1")
    documents = {
        "binary2.vot": served.raw([pos]).content,
        "tabledata.vot": served.raw([pos, ("RESPONSEFORMAT", "votable/td")]).content,
        "overflow.vot": served.raw([pos, ("MAXREC", "2")]).content,
        "empty.vot": served.raw([("POS", "CIRCLE 200 -60 0.1")]).content,
        "error.vot": served.raw([("POS", "CIRCLE 1 2")]).content,
    }
    for name, content in documents.items():
        (tmp_path / name).write_bytes(content)
    for name in documents:
        done = subprocess.run(
            ["stilts", "votlint", f"votable={tmp_path / name}"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        lines = (done.stdout + done.stderr).splitlines()
        assert [x for x in lines if x.startswith(("ERROR", "WARNING"))] == [], name


def test_query_log(served: Sia) -> None:
    ok = served.raw([("POS", "CIRCLE 10 10 0.2"), ("MAXREC", "1")])
    bad = served.raw([("POS", "CIRCLE 10 10")])
    assert ok.status_code == 200 and bad.status_code == 400
    query_id = ok.headers["X-Qcat-Query-Id"]
    lines = (served.data / "logs" / "queries.jsonl").read_text().splitlines()
    entries = [json.loads(x) for x in lines if '"sia/query"' in x]
    mine = next(e for e in entries if e["query_id"] == query_id)
    assert mine["lang"] == "ADQL" and "INTERSECTS" in mine["query"] and mine["rows"] <= 1
    assert mine["outcome"] in ("completed", "overflow") and mine["status"] == 200
    rejected = [e for e in entries if e["outcome"] == "rejected"]
    assert rejected and rejected[-1]["status"] == 400 and "CIRCLE" in rejected[-1]["error"]
