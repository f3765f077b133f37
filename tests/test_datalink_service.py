"""DataLink ``/datalink/links`` over HTTP on a real service over ingested images.

Small TAN images are made with astropy, ingested with
``partition.images.ingest_images`` and served by uvicorn; the answers are
checked with STILTS ``datalinklint``/``votlint``, pyvo (``DatalinkResults``,
the SODA descriptor driving a cutout) and against the FITS files themselves.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
import pyvo
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits, votable
from astropy.wcs import WCS
from pyvo.dal.adhoc import DatalinkResults, SodaQuery
from pyvo.dal.exceptions import DALOverflowWarning

from partition.images import ingest_images
from services.settings import ServiceSettings
from tests.service_support import dali_error, serve_data

#: A low ``datalink_max_ids`` for the service, so the overflow rule shows with few IDs.
MAX_IDS = 8
COLLECTION = "dltest"


@dataclass(frozen=True)
class Made:
    """One image written for the test: what its header says, independently of ObsCore."""

    obs_id: str
    path: Path
    centre: tuple[float, float]
    mjd: float
    exptime: float


def make_image(path: Path, ra: float, dec: float, band: str, mjd: float, rot: float) -> Made:
    """A 90 x 70 TAN image of 1 arcsec pixels at (ra, dec), rotated by ``rot`` degrees."""
    ny, nx = 70, 90
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    scale = 1.0 / 3600
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    wcs.wcs.cd = [[-scale * c, scale * s], [scale * s, scale * c]]
    header = wcs.to_header()
    header["FILTER"] = band
    header["MJD-OBS"] = mjd
    header["EXPTIME"] = 30.0
    header["DATE-OBS"] = "2023-02-25T06:00:00"
    rng = np.random.default_rng(int(mjd * 1000) % 2**32)
    data = rng.normal(100.0, 5.0, (ny, nx)).astype(np.float32)
    fits.PrimaryHDU(data, header).writeto(path)
    return Made(path.stem, path, (ra, dec), mjd, 30.0)


@dataclass
class Site:
    url: str
    data: Path
    made: dict[str, Made]  # DID -> image

    def did(self, obs_id: str) -> str:
        return f"ivo://qcat/{COLLECTION}?{obs_id}"

    def links_url(self, *ids: str, **params: str) -> str:
        pairs = [("ID", i) for i in ids] + list(params.items())
        return f"{self.url}/datalink/links?{urlencode(pairs)}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("datalink")
    raw = root / "raw"
    raw.mkdir()
    specs = [
        ("v001-g", 150.0, 2.0, "g", 60000.25, 0.0),
        ("v002-r", 150.01, 2.01, "r", 60001.5, 30.0),
        ("v003-i", 0.005, -30.0, "i", 60002.75, 0.0),  # crosses RA = 0
    ]
    made = [make_image(raw / f"{o}.fits", ra, dec, b, m, r) for o, ra, dec, b, m, r in specs]
    data = root / "data"
    ingest_images(data, COLLECTION, [raw])
    # A file where images live that ObsCore does not know (never ingested).
    shutil.copy(made[0].path, data / "images" / COLLECTION / "stray.fits")
    with serve_data(data, ServiceSettings.defaults(datalink_max_ids=MAX_IDS)) as (_, url):
        yield Site(url, data, {f"ivo://qcat/{COLLECTION}?{m.obs_id}": m for m in made})


def lint(tool: str, target: str) -> str:
    out = subprocess.run(
        ["stilts", tool, f"votable={target}"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def assert_datalinklint_clean(target: str) -> str:
    report = lint("datalinklint", target)
    assert "Errors: 0;" in report and "Failures: 0" in report, report
    assert "\nE-" not in report and "\nF-" not in report, report
    return report


def parse(body: bytes) -> DatalinkResults:
    return DatalinkResults(votable.parse(io.BytesIO(body)))


def rows_by_id(res: DatalinkResults) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    for row in res:
        message = row.error_message  # a masked value when null
        out.setdefault(row.id, []).append((row.semantics, str(message) if message else None))
    return out


# -- validators ------------------------------------------------------------------------------


def test_known_ids_pass_datalinklint_and_votlint(site: Site, tmp_path: Path) -> None:
    url = site.links_url(*site.made)
    report = assert_datalinklint_clean(url)
    assert "Service descriptors defined: 3 referenceable" in report
    body = httpx.get(url).content
    (tmp_path / "known.vot").write_bytes(body)
    assert lint("votlint", str(tmp_path / "known.vot")).strip() == ""


def test_unknown_and_bad_ids_pass_datalinklint(site: Site, tmp_path: Path) -> None:
    ids = [site.did("nope"), site.did("stray"), "not-an-id", next(iter(site.made))]
    url = site.links_url(*ids)
    assert_datalinklint_clean(url)
    body = httpx.get(url).content
    (tmp_path / "unknown.vot").write_bytes(body)
    assert lint("votlint", str(tmp_path / "unknown.vot")).strip() == ""
    rows = rows_by_id(parse(body))
    assert list(rows) == ids
    assert rows[site.did("nope")] == [
        ("#this", f"NotFoundFault: {site.did('nope')} is not the ID of any image here")
    ]
    # The stray file is in DATA/images but not in ObsCore: not found either.
    [(semantics, message)] = rows[site.did("stray")]
    assert semantics == "#this" and message and message.startswith("NotFoundFault: ")
    [(semantics, message)] = rows["not-an-id"]
    assert semantics == "#this" and message and message.startswith("UsageFault: not-an-id")
    assert [s for s, m in rows[ids[-1]] if m is None] == ["#this", "#cutout"]


def test_more_ids_than_the_limit_overflow_in_a_post(site: Site, tmp_path: Path) -> None:
    known = list(site.made)
    ids = known + [site.did(f"missing-{i:04d}") for i in range(MAX_IDS + 20 - len(known))]
    assert len(ids) > MAX_IDS > len(known)
    response = httpx.post(f"{site.url}/datalink/links", data={"ID": ids}, timeout=60)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "application/x-votable+xml;content=datalink"
    path = tmp_path / "many.vot"
    path.write_bytes(response.content)
    assert_datalinklint_clean(str(path))
    assert lint("votlint", str(path)).strip() == ""
    doc = votable.parse(io.BytesIO(response.content))
    statuses = [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"]
    assert statuses == ["OK", "OVERFLOW"]
    with pytest.warns(DALOverflowWarning):
        rows = rows_by_id(parse(response.content))
    assert list(rows) == ids[:MAX_IDS]  # the first MAX_IDS, in order, each once
    assert sum(len(r) for r in rows.values()) == 2 * len(known) + MAX_IDS - len(known)


def test_exactly_the_limit_does_not_overflow(site: Site) -> None:
    ids = [site.did(f"missing-{i:04d}") for i in range(MAX_IDS)]
    response = httpx.post(f"{site.url}/datalink/links", data={"id": ids}, timeout=60)
    doc = votable.parse(io.BytesIO(response.content))
    assert [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"] == ["OK"]
    assert len(doc.resources[0].tables[0].array) == MAX_IDS


def test_maxrec_cuts_between_ids(site: Site) -> None:
    known = list(site.made)
    body = httpx.get(site.links_url(*known, MAXREC="5")).content
    doc = votable.parse(io.BytesIO(body))
    assert [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"][-1] == ("OVERFLOW")
    with pytest.warns(DALOverflowWarning):
        assert list(rows_by_id(parse(body))) == known[:2]


def test_ids_in_url_and_body_of_a_post_together(site: Site) -> None:
    first, second, third = site.made
    response = httpx.post(
        f"{site.url}/datalink/links?{urlencode({'ID': first})}",
        files={"ID": (None, second), "Id": (None, third)},  # multipart, any case
    )
    assert response.status_code == 200, response.text[:500]
    assert list(rows_by_id(parse(response.content))) == [first, second, third]


# -- pyvo ------------------------------------------------------------------------------------


def test_pyvo_this_link_downloads_the_file(site: Site) -> None:
    did, made = next(iter(site.made.items()))
    res = DatalinkResults.from_result_url(site.links_url(did))
    # include_narrower=False: pyvo would fetch the datalink vocabulary (tests run offline).
    [this] = list(res.bysemantics("#this", include_narrower=False))
    stored = site.data / "images" / COLLECTION / f"{made.obs_id}.fits"
    assert this.content_type == "image/fits"
    assert this.content_length == stored.stat().st_size
    assert this.access_url == f"{site.url}/images/{COLLECTION}/{made.obs_id}.fits"
    response = httpx.get(this.access_url)
    assert response.status_code == 200
    assert response.content == made.path.read_bytes()
    with fits.open(io.BytesIO(response.content)) as hdus:
        assert hdus[0].data.shape == (70, 90)
        assert hdus[0].header["FILTER"] == "g"


def test_descriptor_ranges_fit_the_image(site: Site) -> None:
    res = DatalinkResults.from_result_url(site.links_url(*site.made))
    for row in res.bysemantics("#cutout", include_narrower=False):
        made = site.made[row.id]
        params = {p.name: p for p in row.input_params}
        assert params["ID"].ref == "dl_id"
        assert {"POS", "CIRCLE", "POLYGON", "BAND", "TIME"} <= set(params)
        ra, dec, radius = (float(v) for v in params["CIRCLE"].values.max)
        with fits.open(made.path) as hdus:
            wcs = WCS(hdus[0].header)
            ny, nx = hdus[0].data.shape
        corners = wcs.pixel_to_world(
            [-0.5, nx - 0.5, nx - 0.5, -0.5], [-0.5, -0.5, ny - 0.5, ny - 0.5]
        )
        centre = SkyCoord(ra * u.deg, dec * u.deg)
        # The circle covers the whole image, and is not much larger than it.
        assert max(centre.separation(corners).deg) <= radius + 1e-7
        diagonal = np.hypot(nx, ny) / 3600
        assert radius < 0.6 * diagonal  # about half the diagonal: the minimal circle
        assert centre.separation(SkyCoord(*made.centre, unit="deg")).deg < 0.1 * diagonal
        polygon = np.array(params["POLYGON"].values.max, dtype=float).reshape(-1, 2)
        vertices = SkyCoord(polygon[:, 0] * u.deg, polygon[:, 1] * u.deg)
        assert max(centre.separation(vertices).deg) <= radius + 1e-7  # s_region's rounding
        t_min, t_max = params["TIME"].values.min, params["TIME"].values.max
        assert t_min == pytest.approx(made.mjd, abs=1e-9)
        assert t_max == pytest.approx(made.mjd + made.exptime / 86400, abs=1e-7)
        band_min, band_max = params["BAND"].values.min, params["BAND"].values.max
        assert 3e-7 < band_min < band_max < 1.1e-6
        service = res.get_adhocservice_by_id(row.service_def)
        access = {p.name: p.value for p in service.params}
        assert access["accessURL"] == f"{site.url}/soda/sync"
        assert access["standardID"] == "ivo://ivoa.net/std/SODA#sync-1.0"


def test_pyvo_drives_the_soda_descriptor_to_a_cutout(site: Site) -> None:
    did, made = list(site.made.items())[1]
    res = DatalinkResults.from_result_url(site.links_url(did))
    proc = res.get_first_proc()
    assert proc.id == did and proc.semantics == "#cutout"
    service = res.get_adhocservice_by_id(proc.service_def)
    radius = 10 / 3600  # 10 arcsec around the centre
    query = SodaQuery.from_resource(proc, service, circle=(*made.centre, radius))
    stream = query.execute_stream()
    with fits.open(io.BytesIO(stream.read())) as hdus:
        cut = hdus[0]
        assert cut.data.ndim == 2
        assert 0 < cut.data.shape[0] < 70 and 0 < cut.data.shape[1] < 90
        wcs = WCS(cut.header)
        x, y = wcs.world_to_pixel(SkyCoord(*made.centre, unit="deg"))
        assert 0 <= x < cut.data.shape[1] and 0 <= y < cut.data.shape[0]
    # pyvo's shortcut finds the SODA descriptor by standardID and cuts the same image.
    with fits.open(io.BytesIO(proc.processed(circle=(*made.centre, radius)).read())) as hdus:
        assert hdus[0].data.shape == cut.data.shape


# -- requests that are not links -------------------------------------------------------------


def test_no_id_is_an_empty_table_with_the_self_description(site: Site) -> None:
    response = httpx.get(f"{site.url}/datalink/links")
    assert response.status_code == 200
    doc = votable.parse(io.BytesIO(response.content))
    assert len(doc.resources[0].tables[0].array) == 0
    this = [r for r in doc.resources if r.utype == "adhoc:this"]
    assert len(this) == 1
    assert {p.name: p.value for p in this[0].params}["accessURL"] == f"{site.url}/datalink/links"
    assert_datalinklint_clean(f"{site.url}/datalink/links")


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"MAXREC": "-1"}, "UsageFault: MAXREC"),
        ({"MAXREC": "ten"}, "UsageFault: MAXREC"),
        ({"RESPONSEFORMAT": "csv"}, "UsageFault: RESPONSEFORMAT=csv"),
        ({"RESPONSEFORMAT": "application/x-votable+xml;serialization=binary2"}, "UsageFault"),
    ],
)
def test_bad_parameters_are_usage_faults(site: Site, params: dict[str, str], needle: str) -> None:
    response = httpx.get(site.links_url(next(iter(site.made)), **params))
    assert dali_error(response, 400).startswith(needle)


def test_response_format_votable_is_accepted(site: Site) -> None:
    for value in ("votable", "application/x-votable+xml;content=datalink", "text/xml"):
        response = httpx.get(site.links_url(next(iter(site.made)), RESPONSEFORMAT=value))
        assert response.status_code == 200, value
        assert len(parse(response.content)) == 2


def test_repeated_single_parameters_must_agree(site: Site) -> None:
    url = f"{site.url}/datalink/links?ID=x&MAXREC=1&maxrec=2"
    assert dali_error(httpx.get(url), 400).startswith("UsageFault: MAXREC")


def test_other_methods_and_paths(site: Site) -> None:
    dali_error(httpx.put(f"{site.url}/datalink/links"), 405)
    dali_error(httpx.get(f"{site.url}/datalink/nothing"), 404)


# -- from a search result --------------------------------------------------------------------


def test_pyvo_follows_sia_results_to_their_links(site: Site) -> None:
    search = pyvo.dal.SIA2Service(f"{site.url}/sia").search(collection=COLLECTION)
    assert sorted(r["obs_publisher_did"] for r in search) == sorted(site.made)
    seen = {}
    for links in search.iter_datalinks():
        [this] = list(links.bysemantics("#this", include_narrower=False))
        seen[this.id] = this.access_url
    assert seen == {
        did: f"{site.url}/images/{COLLECTION}/{made.obs_id}.fits" for did, made in site.made.items()
    }


def test_obscore_access_url_is_a_links_url(site: Site) -> None:
    tap = pyvo.dal.TAPService(f"{site.url}/tap")
    rows = tap.run_sync(
        "SELECT obs_publisher_did, access_url, access_format FROM ivoa.ObsCore"
    ).to_table()
    assert len(rows) == len(site.made)
    for did, url, access_format in rows.iterrows():
        assert access_format == "application/x-votable+xml;content=datalink"
        links = DatalinkResults.from_result_url(url)
        assert [r.id for r in links] == [did, did]
        assert next(links.bysemantics("#cutout", include_narrower=False)).service_def
