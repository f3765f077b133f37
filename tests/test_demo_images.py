"""Demo images: FITS layout, headers, WCS kinds, catalog stars where the WCS says, determinism."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from qcat.demo import object_batches
from qcat.demo.images import (
    DEFAULT_FIELDS,
    EXTENSIONS,
    MASK_PLANES,
    VisitPlan,
    demo_fields,
    load_catalog,
    plan_demo_images,
    render_demo_images,
)
from qcat.demo.photometry import BANDS

N_OBJECTS = 100_000  # the `qcat demo` default
SEED = 1
OBSERVATION_KEYWORDS = ("FILTER", "DATE-OBS", "MJD-OBS", "EXPTIME", "TELESCOP", "INSTRUME")


@pytest.fixture(scope="module")
def objects() -> pa.Table:
    return pa.Table.from_batches(list(object_batches(N_OBJECTS, seed=SEED)))


@pytest.fixture(scope="module")
def object_files(objects: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The catalog as `qcat demo` leaves it: Object Parquet files (two of them)."""
    out = tmp_path_factory.mktemp("demo-input")
    half = objects.num_rows // 2
    paths = [out / "Object-00000.parquet", out / "Object-00001.parquet"]
    pq.write_table(objects.slice(0, half), paths[0])
    pq.write_table(objects.slice(half), paths[1])
    return paths


@pytest.fixture(scope="module")
def rendered(object_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The default demo image set, rendered from the Parquet files."""
    return render_demo_images(tmp_path_factory.mktemp("images"), objects=object_files, seed=SEED)


@pytest.fixture(scope="module")
def plans(objects: pa.Table) -> list[VisitPlan]:
    return plan_demo_images(load_catalog(objects, DEFAULT_FIELDS, 512), seed=SEED)


def _image_hdu(hdus: fits.HDUList) -> fits.ImageHDU | fits.PrimaryHDU:
    return hdus["IMAGE"] if len(hdus) > 1 else hdus[0]


def _header(hdus: fits.HDUList, key: str) -> object:
    """A keyword of the image HDU, inheriting from the primary header as INHERIT = T says."""
    image = _image_hdu(hdus)
    return image.header[key] if key in image.header else hdus[0].header[key]


def _centroid(data: np.ndarray, x: float, y: float, fwhm: float) -> tuple[float, float]:
    """Windowed centroid (SExtractor's XWIN) of the star nearest (x, y).

    Starts from the brightest pixel within 8 pixels of (x, y), so the answer
    is found in the pixels, not handed over by the prediction; the background
    is the median of a surrounding ring.
    """
    ix, iy = round(x), round(y)
    search = data[iy - 8 : iy + 9, ix - 8 : ix + 9]
    peak_y, peak_x = np.unravel_index(np.argmax(search), search.shape)
    cx, cy = float(ix - 8 + peak_x), float(iy - 8 + peak_y)
    sigma = fwhm / 2.3548
    outer = round(5.0 * fwhm)
    for _ in range(20):
        jx, jy = round(cx), round(cy)
        box = data[jy - outer : jy + outer + 1, jx - outer : jx + outer + 1].astype(np.float64)
        yy, xx = np.mgrid[jy - outer : jy + outer + 1, jx - outer : jx + outer + 1]
        ring = np.maximum(np.abs(xx - jx), np.abs(yy - jy)) > round(3.0 * fwhm)
        signal = box - np.median(box[ring])
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * sigma**2)) * signal
        cx += 2.0 * float((weight * (xx - cx)).sum() / weight.sum())
        cy += 2.0 * float((weight * (yy - cy)).sum() / weight.sum())
    return cx, cy


def _rotation_deg(header: fits.Header) -> float:
    """Position angle of +y east of north from the CD matrix (north up, east left at 0)."""
    return math.degrees(math.atan2(header["CD1_2"], header["CD2_2"]))


# Each kind: which visits are of it, and a check of that kind read from the file itself.
def _is_sip(plan: VisitPlan, hdus: fits.HDUList) -> None:
    header = _image_hdu(hdus).header
    assert header["CTYPE1"] == "RA---TAN-SIP" and header["CTYPE2"] == "DEC--TAN-SIP"
    assert header["A_ORDER"] == header["B_ORDER"] == plan.field.design.sip_order in (2, 3)
    assert header["AP_ORDER"] >= header["A_ORDER"] and "AP_1_0" in header and "BP_0_1" in header
    sip = WCS(header).sip
    assert sip is not None
    # The AP/BP inverse undoes A/B to well under a hundredth of a pixel.
    grid = np.mgrid[1 : plan.size : 17j, 1 : plan.size : 17j].reshape(2, -1).T
    back = sip.foc2pix(sip.pix2foc(grid, 1), 1)
    assert np.abs(back - grid).max() < 0.01
    assert np.abs(sip.pix2foc(grid, 1) - grid).max() > 0.5  # a real distortion


def _is_tan(plan: VisitPlan, hdus: fits.HDUList) -> None:
    header = _image_hdu(hdus).header
    assert header["CTYPE1"] == "RA---TAN" and header["CTYPE2"] == "DEC--TAN"
    assert "A_ORDER" not in header and WCS(header).sip is None


def _is_rotated(plan: VisitPlan, hdus: fits.HDUList) -> None:
    angle = _rotation_deg(_image_hdu(hdus).header)
    assert abs(angle) > 10.0
    assert angle == pytest.approx(plan.rotation_deg, abs=1e-6)


def _crosses_ra0(plan: VisitPlan, hdus: fits.HDUList) -> None:
    footprint = WCS(_image_hdu(hdus).header).calc_footprint()
    ra = footprint[:, 0]
    assert (ra > 350.0).any() and (ra < 10.0).any()


def _near_pole(plan: VisitPlan, hdus: fits.HDUList) -> None:
    footprint = WCS(_image_hdu(hdus).header).calc_footprint()
    assert 80.0 < abs(_image_hdu(hdus).header["CRVAL2"]) < 90.0
    assert np.abs(footprint[:, 1]).min() > 80.0


def _is_mef(plan: VisitPlan, hdus: fits.HDUList) -> None:
    assert len(hdus) == 4 and hdus[0].data is None
    assert [h.name for h in hdus[1:]] == list(EXTENSIONS)
    assert hdus["IMAGE"].data.dtype == np.dtype(">f4")
    assert hdus["VARIANCE"].data.dtype == np.dtype(">f4")
    assert hdus["MASK"].data.dtype == np.dtype(">i4")
    wcs_keys = [k for k in hdus["IMAGE"].header if k[:2] in ("CT", "CR", "CD", "A_", "B_", "AP")]
    for name in EXTENSIONS[1:]:
        assert hdus[name].data.shape == (plan.size, plan.size)
        assert all(hdus[name].header[k] == hdus["IMAGE"].header[k] for k in wcs_keys)


def _is_single(plan: VisitPlan, hdus: fits.HDUList) -> None:
    assert len(hdus) == 1
    assert hdus[0].data.dtype == np.dtype(">f4") and hdus[0].data.shape == (plan.size, plan.size)


KINDS = {
    "tan": (lambda p: p.field.design.sip_order == 0, _is_tan),
    "sip": (lambda p: p.field.design.sip_order > 0, _is_sip),
    "rotated": (lambda p: abs(p.field.design.rotation_deg) > 10.0, _is_rotated),
    "ra0": (lambda p: p.field.design.crosses_ra0, _crosses_ra0),
    "pole": (lambda p: p.field.near_pole, _near_pole),
    "mef": (lambda p: p.mef, _is_mef),
    "single": (lambda p: not p.mef, _is_single),
}


def test_default_set_covers_fields_bands_and_visits(rendered, plans):
    assert [p.name for p in rendered] == [p.file_name for p in plans]
    assert len(rendered) == len(DEFAULT_FIELDS) * len(BANDS) * 2
    for field in {p.field.name for p in plans}:
        for band in BANDS:
            visits = [p for p in plans if p.field.name == field and p.band == band]
            assert len(visits) == 2
            # Overlapping but not identical pointings and rotations.
            a, b = visits
            assert (a.ra, a.dec, a.rotation_deg) != (b.ra, b.dec, b.rotation_deg)
            width = a.field.design.half_width_deg(a.size) * 2
            assert abs(a.dec - b.dec) < 0.2 * width


@pytest.mark.parametrize("kind", list(KINDS))
def test_catalog_star_at_predicted_pixel(kind, rendered, plans, objects):
    selects, check_kind = KINDS[kind]
    chosen = [(plan, path) for plan, path in zip(plans, rendered, strict=True) if selects(plan)]
    assert len(chosen) >= len(BANDS) * 2
    ids = objects.column("objectId").to_numpy()
    for plan, path in chosen:
        field = plan.field
        assert field.anchor_id is not None
        # The anchor is a catalog row, at the catalog's position.
        row = int(np.flatnonzero(ids == field.anchor_id)[0])
        assert field.anchor_ra == objects.column("coord_ra")[row].as_py()
        assert field.anchor_dec == objects.column("coord_dec")[row].as_py()
        with fits.open(path) as hdus:
            check_kind(plan, hdus)
            image = _image_hdu(hdus)
            wcs = WCS(image.header)
            assert wcs.has_celestial and wcs.celestial.naxis == 2
            x, y = wcs.all_world2pix(field.anchor_ra, field.anchor_dec, 0)
            assert 10 < x < plan.size - 10 and 10 < y < plan.size - 10
            fwhm = float(_header(hdus, "SEEING")) / plan.field.design.pixel_scale_arcsec
            cx, cy = _centroid(image.data, float(x), float(y), fwhm)
            assert math.hypot(cx - x, cy - y) < 0.5, (path.name, cx - x, cy - y)


def test_headers_carry_observation_keywords(rendered, plans):
    for plan, path in zip(plans, rendered, strict=True):
        with fits.open(path) as hdus:
            for key in OBSERVATION_KEYWORDS:
                assert key in hdus[0].header, (path.name, key)
            assert _header(hdus, "FILTER") == plan.band
            assert _header(hdus, "OBJECT") == plan.field.name
            assert _header(hdus, "EXPTIME") == 30.0
            assert _image_hdu(hdus).header["BUNIT"] == "adu"
            assert _header(hdus, "SEEING") == _header(hdus, "FWHM") > 0
            start = Time(_header(hdus, "DATE-OBS"), scale="tai")
            assert start.mjd == pytest.approx(_header(hdus, "MJD-OBS"), abs=1e-8)
            assert _header(hdus, "MJD-END") == pytest.approx(
                _header(hdus, "MJD-OBS") + 30.0 / 86400.0, abs=1e-9
            )
            if plan.mef:
                assert hdus["IMAGE"].header["INHERIT"] is True
                assert hdus["VARIANCE"].header["BUNIT"] == "adu**2"


def test_pixels_flux_noise_variance_and_mask(rendered, plans, objects):
    saturated_seen = 0
    for plan, path in zip(plans, rendered, strict=True):
        if not plan.mef:
            continue
        with fits.open(path) as hdus:
            image = hdus["IMAGE"].data.astype(np.float64)
            variance = hdus["VARIANCE"].data
            mask = hdus["MASK"].data
            header = hdus[0].header
            sky, read_noise = header["SKYLEVEL"], header["RDNOISE"]
            # Background: the sky level with the noise the variance plane states.
            quiet = (mask & (1 << MASK_PLANES["DET"])) == 0
            assert np.median(image[quiet]) == pytest.approx(sky, rel=0.01)
            assert np.std(image[quiet]) == pytest.approx(math.sqrt(sky + read_noise**2), rel=0.05)
            assert np.median(variance[quiet]) == pytest.approx(sky + read_noise**2, rel=1e-3)
            assert hdus["MASK"].header["MP_EDGE"] == MASK_PLANES["EDGE"]
            edge = 1 << MASK_PLANES["EDGE"]
            assert (mask[0, :] & edge).all() and (mask[:, -1] & edge).all()
            assert not mask[plan.size // 2, plan.size // 2] & edge
            # Saturated pixels are exactly the clipped ones.
            clipped = image >= header["SATURATE"]
            assert np.array_equal(clipped, (mask & (1 << MASK_PLANES["SAT"])) != 0)
            saturated_seen += int(clipped.sum())
            # The anchor's light adds up to its catalog magnitude in this band.
            wcs = WCS(hdus["IMAGE"].header)
            x, y = wcs.all_world2pix(plan.field.anchor_ra, plan.field.anchor_dec, 0)
            ix, iy = round(float(x)), round(float(y))
            half = round(3.0 * header["SEEING"] / plan.field.design.pixel_scale_arcsec)
            box = np.s_[iy - half : iy + half + 1, ix - half : ix + half + 1]
            flux = float((image[box] - sky).sum())
            flux_sigma = math.sqrt(float(variance[box].sum()))
            zero_point = header["MAGZERO"]
        ids = objects.column("objectId").to_numpy()
        row = int(np.flatnonzero(ids == plan.field.anchor_id)[0])
        magnitude = objects.column(f"{plan.band}_psfMag")[row].as_py()
        expected = 10 ** (-0.4 * (magnitude - zero_point))
        # Within 4 sigma of the noise, plus the light outside the box.
        assert abs(flux - expected) < 4 * flux_sigma + 0.015 * expected, path.name
    assert saturated_seen > 0  # bright catalog stars saturate somewhere in the set


def test_same_seed_same_bytes_any_subset(rendered, objects, tmp_path):
    """A field renders to the same bytes alone or with the others; another seed differs."""
    field = DEFAULT_FIELDS[3]
    alone = render_demo_images(tmp_path / "a", objects=objects, fields=[field], seed=SEED)
    again = render_demo_images(tmp_path / "b", objects=objects, fields=[field], seed=SEED)
    other = render_demo_images(tmp_path / "c", objects=objects, fields=[field], seed=SEED + 1)
    full = {p.name: p for p in rendered}

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert [digest(p) for p in alone] == [digest(p) for p in again]
    assert [digest(p) for p in alone] == [digest(full[p.name]) for p in alone]
    for a, b in zip(alone, other, strict=True):
        with fits.open(a) as first, fits.open(b) as second:
            assert not np.array_equal(_image_hdu(first).data, _image_hdu(second).data)


def test_catalog_from_files_matches_arrow(objects, object_files):
    from_files = load_catalog(object_files, DEFAULT_FIELDS, 512)
    from_arrow = load_catalog(objects, DEFAULT_FIELDS, 512)
    assert 0 < len(from_files) < objects.num_rows
    assert np.array_equal(from_files.object_id, from_arrow.object_id)
    assert np.array_equal(from_files.mags, from_arrow.mags, equal_nan=True)
    # Only objects near some field are kept, and every field has its anchor.
    fields = demo_fields(plan_demo_images(from_files, seed=SEED))
    assert [f.name for f in fields] == [d.name for d in DEFAULT_FIELDS]
    assert all(f.anchor_id in set(from_files.object_id.tolist()) for f in fields)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 8}, "size"),
        ({"visits_per_band": 0}, "visits_per_band"),
        ({"bands": ["g", "H"]}, "unknown bands"),
        ({"fields": [DEFAULT_FIELDS[0], DEFAULT_FIELDS[0]]}, "unique"),
    ],
)
def test_bad_arguments(kwargs, message, objects):
    catalog = load_catalog(objects, DEFAULT_FIELDS, 512)
    with pytest.raises(ValueError, match=message):
        plan_demo_images(catalog, **kwargs)
