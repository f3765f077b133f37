"""The images issue's acceptance, end to end, on demo images of a demo catalog.

A small demo catalog is generated and ingested (demo.Object), its demo images
rendered (128 x 128 pixels) and ingested with ``qcat ingest-images`` (the CLI,
as an operator runs it), and the service started. Then, for the star every
visit of a field is placed around (TAN, SIP, rotated, across RA = 0, near the
pole), read back from demo.Object through TAP: pyvo's SIA search finds exactly
the visits whose footprints (computed here from the files with astropy) hold
the star; their DataLink documents lead to the file and to the SODA service,
whose cutout around the star shows it, in every extension, at the pixel the
cutout's own WCS gives for the star's catalog position.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pyvo
from astropy.io import fits
from astropy.wcs import WCS
from pyvo.dal.adhoc import DatalinkResults

from partition.ingest import IngestOptions, ingest_table
from qcat.demo import object_batches
from qcat.demo.generator import schema_path
from qcat.demo.images import (
    DEFAULT_FIELDS,
    DemoField,
    demo_fields,
    load_catalog,
    plan_demo_images,
    render_demo_images,
)
from qcat.schema import load_felis
from services.settings import ServiceSettings
from tests import sia_oracle as oracle
from tests.conftest import qcat_cli
from tests.service_support import serve_data

#: The `qcat demo` default: every default field finds a star bright in all six bands.
N_OBJECTS = 100_000
SEED = 3
SIZE = 128
COLLECTION = "demo"
#: The SIA search circle around a star, and the SODA cutout's radius (pixels).
SEARCH_RADIUS_DEG = 2.0 / 3600.0
CUTOUT_RADIUS_PX = 9.0
#: The bit of the demo MASK plane marking detected sources (MP_DET).
DET_BIT = 5


@dataclass(frozen=True)
class Visit:
    """A rendered file, as astropy reads it (not as ObsCore describes it)."""

    obs_id: str
    path: Path
    field: str
    band: str
    shape: oracle.Shape  # the footprint
    mef: bool


@dataclass
class Site:
    url: str
    data: Path
    fields: dict[str, DemoField]
    visits: dict[str, Visit]  # obs_id -> visit

    def did(self, obs_id: str) -> str:
        return f"ivo://qcat/{COLLECTION}?{obs_id}"


def _visit(path: Path) -> Visit:
    with fits.open(path) as hdus:
        image = hdus["IMAGE"] if len(hdus) > 1 else hdus[0]
        header = image.header
        keywords = hdus[0].header
        wcs = WCS(header)
        shape = oracle.footprint_shape(wcs, header["NAXIS1"], header["NAXIS2"])
        return Visit(
            path.stem, path, str(keywords["OBJECT"]), str(keywords["FILTER"]), shape, len(hdus) > 1
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("images-demo")
    objects = pa.Table.from_batches(list(object_batches(N_OBJECTS, seed=SEED)))
    object_file = root / "Object-00000.parquet"
    pq.write_table(objects, object_file)
    data = root / "data"
    spec = load_felis(schema_path())["demo.Object"]
    ingest_table(data, spec, [object_file], IngestOptions(show_progress=False))
    raw = root / "rendered"
    catalog = load_catalog([object_file], DEFAULT_FIELDS, SIZE)
    files = render_demo_images(raw, objects=catalog, size=SIZE, seed=SEED)
    plans = plan_demo_images(catalog, size=SIZE, seed=SEED)
    done = qcat_cli("ingest-images", "--data", data, "--collection", COLLECTION, "--quiet", raw)
    assert f"{COLLECTION}: {len(files)} image(s) added" in done.stdout, done.stdout
    visits = {v.obs_id: v for v in map(_visit, files)}
    with serve_data(data, ServiceSettings.defaults()) as (_, url):
        yield Site(url, data, {f.name: f for f in demo_fields(plans)}, visits)


def catalog_star(site: Site, object_id: int) -> tuple[float, float]:
    """The star's position as the served catalog has it (TAP on demo.Object)."""
    tap = pyvo.dal.TAPService(f"{site.url}/tap")
    rows = tap.run_sync(
        f"SELECT coord_ra, coord_dec FROM demo.Object WHERE objectId = {object_id}"
    ).to_table()
    assert len(rows) == 1
    return float(rows["coord_ra"][0]), float(rows["coord_dec"][0])


def centroid(
    data: np.ndarray, x: float, y: float, *, background: float | None = None, sigma: float = 1.5
) -> tuple[float, float]:
    """Gaussian-windowed centroid of the light near (x, y), found in the pixels.

    Starts at the brightest pixel within 4 pixels of (x, y); the background
    is the median of the stamp unless given.
    """
    ny, nx = data.shape
    ix, iy = round(x), round(y)
    x0, x1, y0, y1 = max(ix - 4, 0), min(ix + 5, nx), max(iy - 4, 0), min(iy + 5, ny)
    near = data[y0:y1, x0:x1]
    peak_y, peak_x = np.unravel_index(np.argmax(near), near.shape)
    cx, cy = float(x0 + peak_x), float(y0 + peak_y)
    yy, xx = np.mgrid[0:ny, 0:nx]
    level = float(np.median(data)) if background is None else background
    signal = data.astype(np.float64) - level
    for _ in range(30):
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * sigma**2)) * signal
        cx += 2.0 * float((weight * (xx - cx)).sum() / weight.sum())
        cy += 2.0 * float((weight * (yy - cy)).sum() / weight.sum())
    return cx, cy


def significance(data: np.ndarray, x: float, y: float) -> float:
    """How many robust standard deviations of the stamp the peak within 2 pixels of (x, y)
    stands above its median: the star must be there, not just noise. (The VARIANCE plane
    is a noise-free model: any excess counts.)"""
    ix, iy = round(x), round(y)
    peak = float(data[max(iy - 2, 0) : iy + 3, max(ix - 2, 0) : ix + 3].max())
    level = float(np.median(data))
    spread = 1.4826 * float(np.median(np.abs(data - level)))
    return (peak - level) / max(spread, 1e-3)


def _pixel(wcs: WCS, ra: float, dec: float) -> tuple[float, float]:
    x, y = wcs.all_world2pix([ra], [dec], 0)
    return float(x[0]), float(y[0])


# -- the fields are the kinds the issue names ------------------------------------------------

FIELD_KINDS = {
    "bulge": "TAN",
    "disk-sip": "SIP",
    "disk-rotated": "rotated",
    "ra0": "RA=0",
    "pole": "near-pole",
}


def _check_kind(kind: str, header: fits.Header, wcs: WCS) -> None:
    corners = wcs.calc_footprint()
    if kind == "TAN":
        assert header["CTYPE1"] == "RA---TAN" and wcs.sip is None
    elif kind == "SIP":
        assert header["CTYPE1"] == "RA---TAN-SIP" and wcs.sip is not None
    elif kind == "rotated":
        assert abs(math.degrees(math.atan2(header["CD1_2"], header["CD2_2"]))) > 20.0
    elif kind == "RA=0":
        assert (corners[:, 0] > 350.0).any() and (corners[:, 0] < 10.0).any()
    else:
        assert np.abs(corners[:, 1]).min() > 80.0


# -- SIA -> DataLink -> SODA around a catalog star -------------------------------------------


@pytest.mark.parametrize("field_name", list(FIELD_KINDS))
def test_star_found_linked_and_cut_out(site: Site, field_name: str) -> None:
    field = site.fields[field_name]
    assert field.anchor_id is not None, "the field found no star to centre on"
    ra, dec = catalog_star(site, field.anchor_id)
    assert (ra, dec) == pytest.approx((field.anchor_ra, field.anchor_dec), abs=1e-9)
    of_field = [v for v in site.visits.values() if v.field == field_name]
    assert len(of_field) == 12  # 6 bands x 2 visits, MEF and single-HDU alike
    for visit in of_field:
        with fits.open(visit.path) as hdus:
            image = hdus["IMAGE"] if visit.mef else hdus[0]
            _check_kind(FIELD_KINDS[field_name], image.header, WCS(image.header))

    # SIA: exactly the visits whose footprint holds the star (astropy on the files).
    search = oracle.circle_shape(ra, dec, SEARCH_RADIUS_DEG, step=SEARCH_RADIUS_DEG / 20)
    expected = {o for o, v in site.visits.items() if oracle.overlap(search, v.shape)}
    assert not any(oracle.overlap(search, v.shape) is None for v in site.visits.values())
    assert {o for o in expected if site.visits[o].field == field_name} == {
        v.obs_id for v in of_field
    }
    sia = pyvo.dal.SIA2Service(f"{site.url}/sia")
    found = sia.search(pos=(ra, dec, SEARCH_RADIUS_DEG))
    assert {str(r["obs_id"]) for r in found} == expected
    r_band = sia.search(pos=(ra, dec, SEARCH_RADIUS_DEG), band=(6.0e-7, 6.5e-7))
    assert {str(r["obs_id"]) for r in r_band} == {o for o in expected if site.visits[o].band == "r"}

    # DataLink from the result, then SODA through its service descriptor.
    seen: set[str] = set()
    for links in found.iter_datalinks():
        [this] = list(links.bysemantics("#this", include_narrower=False))
        obs_id = str(this.id).rsplit("?", 1)[1]
        seen.add(obs_id)
        visit = site.visits[obs_id]
        assert this.access_url == f"{site.url}/images/{COLLECTION}/{obs_id}.fits"
        assert this.content_length == visit.path.stat().st_size
        proc = links.get_first_proc()
        assert proc.semantics == "#cutout" and proc.id == site.did(obs_id)
        radius = CUTOUT_RADIUS_PX * _pixel_scale_deg(visit.path)
        body = proc.processed(circle=(ra, dec, radius)).read()
        check_cutout(body, visit, ra, dec)
    assert seen == expected


def _pixel_scale_deg(path: Path) -> float:
    with fits.open(path) as hdus:
        image = hdus["IMAGE"] if len(hdus) > 1 else hdus[0]
        return float(np.sqrt(abs(np.linalg.det(WCS(image.header).pixel_scale_matrix))))


def check_cutout(body: bytes, visit: Visit, ra: float, dec: float) -> None:
    """The cutout of ``visit`` around (ra, dec): every plane cut alike, the star where its
    WCS says, and the pixels those of the original file."""
    with fits.open(io.BytesIO(body)) as cut, fits.open(visit.path) as original:
        planes = [i for i, h in enumerate(original) if h.data is not None]
        assert [i for i, h in enumerate(cut) if h.data is not None] == planes
        assert [h.name for h in cut] == [h.name for h in original]
        for i in planes:
            hdu, whole = cut[i], original[i]
            ny, nx = hdu.data.shape
            assert min(nx, ny) >= 2 * CUTOUT_RADIUS_PX - 2 and max(nx, ny) < SIZE
            x, y = _pixel(WCS(hdu.header), ra, dec)
            assert 0 <= x < nx and 0 <= y < ny
            # The cut moved the reference pixel by whole pixels: the same pixels as the original.
            ox, oy = _pixel(WCS(whole.header), ra, dec)
            dx, dy = round(ox - x), round(oy - y)
            assert (ox - x, oy - y) == pytest.approx((dx, dy), abs=1e-6)
            np.testing.assert_array_equal(hdu.data, whole.data[dy : dy + ny, dx : dx + nx])
            if hdu.name == "MASK":
                detected = ((hdu.data >> DET_BIT) & 1).astype(np.float64)
                assert detected[round(y), round(x)] == 1.0, (visit.obs_id, "not detected")
                cx, cy = centroid(detected, x, y, background=0.0)
            else:  # IMAGE, VARIANCE or a single-HDU image: the star's light
                assert significance(hdu.data, x, y) > 5.0, (visit.obs_id, hdu.name)
                cx, cy = centroid(hdu.data, x, y)
            assert math.hypot(cx - x, cy - y) < 1.0, (visit.obs_id, hdu.name, cx, cy, x, y)


# -- ObsCore through TAP ---------------------------------------------------------------------


def test_obscore_through_tap_describes_the_same_files(site: Site) -> None:
    tap = pyvo.dal.TAPService(f"{site.url}/tap")
    rows = tap.run_sync(
        "SELECT obs_id, obs_publisher_did, target_name, band_name, s_xel1, s_xel2, file_size "
        f"FROM ivoa.ObsCore WHERE obs_collection = '{COLLECTION}'"
    ).to_table()
    assert sorted(str(o) for o in rows["obs_id"]) == sorted(site.visits)
    for row in rows:
        visit = site.visits[str(row["obs_id"])]
        assert row["obs_publisher_did"] == site.did(visit.obs_id)
        assert (row["target_name"], row["band_name"]) == (visit.field, visit.band)
        assert (row["s_xel1"], row["s_xel2"]) == (SIZE, SIZE)
        assert row["file_size"] == visit.path.stat().st_size
    # The catalog star of each field is inside the circle ObsCore gives each visit of it.
    for name, field in site.fields.items():
        assert field.anchor_ra is not None and field.anchor_dec is not None
        near = tap.run_sync(
            "SELECT obs_id FROM ivoa.ObsCore WHERE 1 = CONTAINS("
            f"POINT('ICRS', {field.anchor_ra!r}, {field.anchor_dec!r}), "
            "CIRCLE('ICRS', s_ra, s_dec, s_fov / 2))"
        ).to_table()
        assert {str(o) for o in near["obs_id"]} == {
            o for o, v in site.visits.items() if v.field == name
        }
    # And the file a row names is served as stored.
    first = sorted(site.visits)[0]
    response = httpx.get(f"{site.url}/images/{COLLECTION}/{first}.fits")
    assert response.status_code == 200
    assert response.content == site.visits[first].path.read_bytes()
    links = DatalinkResults.from_result_url(
        f"{site.url}/datalink/links?ID={site.did(first).replace('?', '%3F')}"
    )
    assert [r.semantics for r in links] == ["#this", "#cutout"]
