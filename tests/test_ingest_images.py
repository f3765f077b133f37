"""``qcat ingest-images``: FITS headers -> footprints, bands, times -> ivoa.ObsCore, one commit.

Footprints are checked against an independent computation: pixel-edge and
interior points mapped straight with astropy (WCS + SkyCoord to ICRS) must
all lie inside the ``s_region`` polygon (tested with ``qcat.geometry``), and
the polygon must not be much larger than the image (area of a dense outline
polygon).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame

import partition.images.ingest as ingest_module
from partition.images import ingest_images, obscore_spec
from partition.images.bands import band_for
from partition.images.footprint import image_footprint
from partition.images.header import read_image_header
from partition.images.times import time_range
from qcat.errors import IngestError, InputError
from qcat.geometry import Polygon, area_sq_deg
from qcat.geometry.regions import contains_np
from qcat.metadata.store import MetadataStore
from tests.conftest import RunQcat
from tests.image_headers import celestial_header, write_fits

# -- independent footprint reference ----------------------------------------------------


def astropy_icrs(header: fits.Header, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """ICRS positions of 0-based pixels, straight from astropy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(header)
    lon, lat = wcs.all_pix2world(x, y, 0)
    coords = SkyCoord(lon * u.deg, lat * u.deg, frame=wcs_to_celestial_frame(wcs)).icrs
    return coords.ra.deg, coords.dec.deg


def edge_and_inside_pixels(nx: int, ny: int, n: int = 301) -> tuple[np.ndarray, np.ndarray]:
    """Dense points on the outer pixel edges plus random interior points."""
    t = np.linspace(0.0, 1.0, n)
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    xs = [x0 + t * (x1 - x0), np.full(n, x1), x0 + t * (x1 - x0), np.full(n, x0)]
    ys = [np.full(n, y0), y0 + t * (y1 - y0), np.full(n, y1), y0 + t * (y1 - y0)]
    rng = np.random.default_rng(3)
    xs.append(rng.uniform(x0, x1, 500))
    ys.append(rng.uniform(y0, y1, 500))
    return np.concatenate(xs), np.concatenate(ys)


def outline_area(header: fits.Header, nx: int, ny: int, n: int = 40) -> float:
    """Area (square degrees) of the image: a polygon through ``4 n`` outline points."""
    t = np.linspace(0.0, 1.0, n + 1)[:-1]
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    xs = np.concatenate([x0 + t * (x1 - x0), np.full(n, x1), x1 - t * (x1 - x0), np.full(n, x0)])
    ys = np.concatenate([np.full(n, y0), y0 + t * (y1 - y0), np.full(n, y1), y1 - t * (y1 - y0)])
    ra, dec = astropy_icrs(header, xs, ys)
    return area_sq_deg(Polygon(tuple(zip(ra.tolist(), dec.tolist(), strict=True))))


def parse_stcs(s_region: str) -> list[tuple[float, float]]:
    words = s_region.split()
    assert words[:2] == ["POLYGON", "ICRS"], s_region
    numbers = [float(w) for w in words[2:]]
    return list(zip(numbers[0::2], numbers[1::2], strict=True))


def angular_distance(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    return np.asarray(
        SkyCoord(ra1 * u.deg, dec1 * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg)).deg
    )


#: name -> (header arguments, nx, ny)
CASES: dict[str, tuple[dict[str, Any], int, int]] = {
    "tan": ({"lon": 150.0, "lat": 2.0}, 120, 80),
    "tan-rotated": ({"lon": 40.0, "lat": -30.0, "rotation_deg": 37.0}, 100, 140),
    "sin": ({"lon": 200.0, "lat": 45.0, "projection": "SIN", "rotation_deg": -15.0}, 90, 90),
    "zpn": ({"lon": 80.0, "lat": -60.0, "projection": "ZPN", "scale_arcsec": 20.0}, 100, 100),
    "tan-sip": ({"lon": 10.0, "lat": 5.0, "sip": 6.0, "rotation_deg": 20.0}, 150, 110),
    "galactic": ({"lon": 30.0, "lat": 1.0, "frame": "GALACTIC", "rotation_deg": 10.0}, 100, 80),
    "fk5": ({"lon": 120.0, "lat": 20.0, "frame": "FK5"}, 80, 80),
    "fk4": ({"lon": 120.0, "lat": 20.0, "frame": "FK4"}, 80, 80),
    "ra0": ({"lon": 0.005, "lat": -1.0, "rotation_deg": 5.0}, 120, 100),
    "pole": ({"lon": 45.0, "lat": 89.99, "rotation_deg": 30.0, "scale_arcsec": 1.0}, 100, 100),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_footprint_contains_the_image_and_is_tight(case: str, tmp_path: Path) -> None:
    kwargs, nx, ny = CASES[case]
    header = celestial_header(nx, ny, **kwargs)
    path = write_fits(tmp_path / f"{case}.fits", header)
    image = read_image_header(path)
    fp = image_footprint([(i.to_icrs, i.nx, i.ny) for i in image.images])

    vertices = parse_stcs(fp.stcs())
    assert 4 <= len(vertices) <= 8
    polygon = Polygon(tuple(vertices))
    xs, ys = edge_and_inside_pixels(nx, ny)
    ra, dec = astropy_icrs(header, xs, ys)
    inside = contains_np(polygon, ra, dec)
    assert inside.all(), f"{(~inside).sum()} points outside, e.g. {ra[~inside][:3]}"
    true_area = outline_area(header, nx, ny)
    assert area_sq_deg(polygon) <= true_area * 1.03, (area_sq_deg(polygon), true_area)
    assert area_sq_deg(polygon) >= true_area * 0.999

    # counter-clockwise seen from the centre of the sphere: the interior is to the right
    # of each edge seen from outside, i.e. (a x b) . centre < 0
    v = SkyCoord([p[0] for p in vertices] * u.deg, [p[1] for p in vertices] * u.deg)
    xyz = np.asarray(v.cartesian.xyz).T
    c = np.asarray(SkyCoord(fp.ra * u.deg, fp.dec * u.deg).cartesian.xyz)
    turns = [np.dot(np.cross(xyz[i], xyz[(i + 1) % len(xyz)]), c) for i in range(len(xyz))]
    assert all(t < 0 for t in turns)

    # centre: the central pixel; s_fov: every pixel within s_fov/2 of it
    c_ra, c_dec = astropy_icrs(header, np.array([(nx - 1) / 2]), np.array([(ny - 1) / 2]))
    assert float(angular_distance(fp.ra, fp.dec, c_ra[0], c_dec[0])) < 1e-9
    assert np.max(angular_distance(fp.ra, fp.dec, ra, dec)) <= fp.fov / 2
    assert fp.fov / 2 <= np.max(angular_distance(fp.ra, fp.dec, ra, dec)) * 1.05


def test_distortion_is_followed_not_just_the_corners(tmp_path: Path) -> None:
    """A strong SIP makes the edges bow out: corner-only polygons would miss their middles."""
    header = celestial_header(200, 200, 60.0, 10.0, sip=15.0)
    image = read_image_header(write_fits(tmp_path / "sip.fits", header))
    fp = image_footprint([(i.to_icrs, i.nx, i.ny) for i in image.images])
    polygon = Polygon(tuple(parse_stcs(fp.stcs())))
    xs, ys = edge_and_inside_pixels(200, 200)
    ra, dec = astropy_icrs(header, xs, ys)
    assert contains_np(polygon, ra, dec).all()
    corners_only = Polygon(
        tuple(
            zip(
                *astropy_icrs(
                    header,
                    np.array([-0.5, 199.5, 199.5, -0.5]),
                    np.array([-0.5, -0.5, 199.5, 199.5]),
                ),
                strict=True,
            )
        )
    )
    assert not contains_np(corners_only, ra, dec).all()


def test_pixel_scale_and_frames(tmp_path: Path) -> None:
    header = celestial_header(64, 64, 100.0, 30.0, scale_arcsec=0.7, rotation_deg=25.0)
    image = read_image_header(write_fits(tmp_path / "a.fits", header))
    fp = image_footprint([(i.to_icrs, i.nx, i.ny) for i in image.images])
    assert fp.pixel_scale == pytest.approx(0.7, rel=1e-6)
    galactic = celestial_header(64, 64, 0.0, 0.0, frame="GALACTIC")
    image = read_image_header(write_fits(tmp_path / "g.fits", galactic))
    fp = image_footprint([(i.to_icrs, i.nx, i.ny) for i in image.images])
    # the galactic centre is at RA 266.405, Dec -28.936 (ICRS)
    assert (fp.ra, fp.dec) == (pytest.approx(266.405, abs=1e-3), pytest.approx(-28.936, abs=1e-3))


# -- bands and times ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "system", "lo_nm", "hi_nm"),
    [
        ("g", "LSST", 400, 552),
        ("r_01", "LSST", 552, 691),
        ("y", "LSST", 948, 1060),
        ("HSC-G", "LSST", 400, 552),
        ("sdss g", "SDSS", 400, 550),
        ("z'", "SDSS", 840, 990),
        ("V", "Johnson-Cousins", 507, 595),
        ("Ks", "2MASS", 2028, 2290),
        ("i DECam SDSS c0003 7835.0 1470.0", "LSST", 691, 818),
    ],
)
def test_band_names(name: str, system: str, lo_nm: float, hi_nm: float) -> None:
    band = band_for(name)
    assert band is not None and band.system == system
    assert (band.em_min, band.em_max) == (pytest.approx(lo_nm * 1e-9), pytest.approx(hi_nm * 1e-9))
    assert band.res_power == pytest.approx((lo_nm + hi_nm) / 2 / (hi_nm - lo_nm))


@pytest.mark.parametrize("name", ["Halpha", "OPEN", "", None, "clear"])
def test_unknown_bands(name: str | None) -> None:
    assert band_for(name) is None


def test_times() -> None:
    r = time_range({"MJD-OBS": 60000.5, "EXPTIME": 86.4})
    assert (r.t_min, r.t_max, r.exptime) == (60000.5, pytest.approx(60000.501), 86.4)
    r = time_range({"DATE-OBS": "2024-01-02T00:00:00", "DATE-END": "2024-01-02T00:01:00"})
    assert r.t_min == pytest.approx(60311.0)
    assert r.exptime == pytest.approx(60.0, abs=1e-4)
    r = time_range({"DATE-OBS": "2024-01-02T12:00:00", "EXPOSURE": 30})
    assert r.t_max == pytest.approx(60311.5 + 30 / 86400)
    r = time_range({"MJD-OBS": 60000.0, "MJD-END": 60000.25})
    assert r.exptime == pytest.approx(21600.0)
    assert time_range({"OBJECT": "x"}) == time_range({})
    assert time_range({}).t_min is None


# -- the ingest -------------------------------------------------------------------------


def obscore_rows(data: Path) -> list[dict[str, Any]]:
    store = MetadataStore.for_data_dir(data)
    try:
        version = store.current_version("ivoa.ObsCore")
    finally:
        store.close()
    assert version is not None
    rows: list[dict[str, Any]] = pq.read_table(data / version.path / "table.parquet").to_pylist()
    return rows


def obscore_version(data: Path) -> int | None:
    if not (data / "qcat.sqlite").exists():
        return None
    store = MetadataStore.for_data_dir(data)
    try:
        v = store.current_version("ivoa.ObsCore")
        return None if v is None else v.version
    except Exception:
        return None
    finally:
        store.close()


def stored_files(data: Path) -> list[str]:
    root = data / "images"
    return sorted(p.relative_to(data).as_posix() for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A directory of images: single-HDU, MEF, gzip, in a subdirectory, and a non-FITS file."""
    src = tmp_path / "in"
    (src / "night2").mkdir(parents=True)
    write_fits(src / "v001-g.fits", celestial_header(100, 80, 150.0, 2.0))
    h = celestial_header(90, 90, 150.02, 2.01, rotation_deg=30)
    h["FILTER"] = "r"
    h["SEEING"] = (0.9, "[arcsec] PSF FWHM")
    write_fits(src / "v002-r.fits", h, mef=True)
    h = celestial_header(60, 60, 0.001, -0.5)
    del h["MJD-OBS"]
    h["DATE-OBS"] = "2024-03-01T05:00:00"
    h["FILTER"] = "Halpha"
    h["FWHM"] = (3.0, "PSF FWHM in pixels")
    write_fits(src / "night2" / "v003.fits.gz", h)
    (src / "notes.txt").write_text("not an image")
    return src


def test_ingest_rows_files_and_identifiers(tmp_path: Path, inputs: Path) -> None:
    data = tmp_path / "data"
    result = ingest_images(data, "demo", [inputs], facility="Override Scope")
    assert result.rows_added == 3 and not result.skipped
    # directories are walked in sorted path order: night2/ comes first
    assert result.added == [
        "ivo://qcat/demo?v003",
        "ivo://qcat/demo?v001-g",
        "ivo://qcat/demo?v002-r",
    ]
    assert any("Halpha" in n and "v003" in n for n in result.notes)
    rows = {r["obs_id"]: r for r in obscore_rows(data)}
    assert set(rows) == {"v001-g", "v002-r", "v003"}
    assert stored_files(data) == [
        "images/demo",
        "images/demo/v001-g.fits",
        "images/demo/v002-r.fits",
        "images/demo/v003.fits",
    ]
    for obs_id, row in rows.items():
        stored = data / row["file_path"]
        content = stored.read_bytes()
        assert content[:6] == b"SIMPLE"  # the gzip input is stored decompressed
        assert row["file_sha256"] == hashlib.sha256(content).hexdigest()
        assert row["file_size"] == len(content)
        assert row["access_estsize"] == math.ceil(len(content) / 1024)
        assert row["obs_publisher_did"] == f"ivo://qcat/demo?{obs_id}"
        assert unquote(row["access_url"]) == f"/datalink/links?ID=ivo://qcat/demo?{obs_id}"
        assert row["access_format"] == "application/x-votable+xml;content=datalink"
        assert row["dataproduct_type"] == "image" and row["calib_level"] == 2
        assert row["facility_name"] == "Override Scope"
        assert row["instrument_name"] == "TestCam"
        assert row["file_format"] == "image/fits"
        assert (row["t_xel"], row["em_xel"]) == (1, 1)
    g, r, h = rows["v001-g"], rows["v002-r"], rows["v003"]
    assert (g["s_xel1"], g["s_xel2"]) == (100, 80)
    assert (g["em_min"], g["em_max"], g["band_name"]) == (
        pytest.approx(400e-9),
        pytest.approx(552e-9),
        "g",
    )
    assert g["t_min"] == 60400.25 and g["t_max"] == pytest.approx(60400.25 + 30 / 86400)
    assert g["t_exptime"] == 30.0 and g["s_resolution"] == pytest.approx(1.0)  # 2 pixels
    assert r["s_resolution"] == pytest.approx(0.9) and r["band_name"] == "r"
    assert h["em_min"] is None and h["band_name"] == "Halpha"
    assert h["s_resolution"] == pytest.approx(1.5)  # 3 pixels of 0.5"
    assert h["t_min"] == pytest.approx(60370.2083333, abs=1e-6)
    assert h["s_ra"] == pytest.approx(0.001)
    # the row matches the spec of obscore.yaml exactly
    assert list(rows["v001-g"]) == obscore_spec().column_names


def test_ingest_is_idempotent_and_appends(tmp_path: Path, inputs: Path) -> None:
    data = tmp_path / "data"
    ingest_images(data, "demo", [inputs])
    version, files = obscore_version(data), stored_files(data)
    again = ingest_images(data, "demo", [inputs])
    assert again.rows_added == 0
    assert sorted(s.reason for s in again.skipped) == [
        f"already ingested as ivo://qcat/demo?{n}" for n in ("v001-g", "v002-r", "v003")
    ]
    assert obscore_version(data) == version and stored_files(data) == files
    # the same file in another collection is another image
    other = ingest_images(data, "other", [inputs / "v001-g.fits"])
    assert other.added == ["ivo://qcat/other?v001-g"]
    assert len(obscore_rows(data)) == 4


def test_conflicting_content_changes_nothing(tmp_path: Path, inputs: Path) -> None:
    data = tmp_path / "data"
    ingest_images(data, "demo", [inputs / "v001-g.fits"])
    version, files = obscore_version(data), stored_files(data)
    changed = tmp_path / "changed"
    changed.mkdir()
    write_fits(changed / "a-new.fits", celestial_header(50, 50, 20.0, 20.0))
    write_fits(changed / "v001-g.fits", celestial_header(100, 80, 150.0, 2.0), seed=9)
    with pytest.raises(
        IngestError, match=r"v001-g\.fits: image ivo://qcat/demo\?v001-g is already"
    ):
        ingest_images(data, "demo", [changed])
    assert obscore_version(data) == version and stored_files(data) == files


def test_bad_files_are_skipped_or_fail_the_strict_ingest(tmp_path: Path, inputs: Path) -> None:
    (inputs / "broken.fits").write_bytes(b"this is not FITS" * 10)
    no_wcs = fits.Header()
    fits.PrimaryHDU(np.zeros((10, 10), np.float32), no_wcs).writeto(inputs / "nowcs.fits")
    data = tmp_path / "data"
    with pytest.raises(IngestError, match=r"broken\.fits: not a readable FITS file"):
        ingest_images(data, "demo", [inputs], strict=True)
    assert obscore_version(data) is None and stored_files(data) == []
    result = ingest_images(data, "demo", [inputs])
    assert result.rows_added == 3
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert set(reasons) == {"broken.fits", "nowcs.fits"}
    assert "celestial WCS" in reasons["nowcs.fits"]
    with pytest.raises(InputError, match=r"missing\.fits: no such file"):
        ingest_images(data, "demo", [inputs / "missing.fits"])


def test_failed_commit_leaves_nothing_behind(
    tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    ingest_images(data, "demo", [inputs / "v001-g.fits"])
    version, files = obscore_version(data), stored_files(data)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ingest_module, "ingest_table", broken)
    with pytest.raises(OSError, match="No space left"):
        ingest_images(data, "demo", [inputs])
    assert obscore_version(data) == version and stored_files(data) == files
    assert not list((data / "images").rglob(".*"))  # no temporary copies either


def test_names_must_be_safe(tmp_path: Path, inputs: Path) -> None:
    from qcat.errors import ConfigError

    with pytest.raises(ConfigError, match="collection"):
        ingest_images(tmp_path / "data", "../up", [inputs])
    odd = tmp_path / "odd"
    odd.mkdir()
    write_fits(odd / "a b.fits", celestial_header(20, 20, 1.0, 1.0))
    result = ingest_images(tmp_path / "data", "demo", [odd])
    assert result.rows_added == 0 and "image name 'a b'" in result.skipped[0].reason


# -- command line ---------------------------------------------------------------------------


def test_cli(tmp_path: Path, inputs: Path, run_qcat: RunQcat) -> None:
    data = tmp_path / "data"
    (inputs / "broken.fits").write_bytes(b"garbage")
    done = run_qcat("ingest-images", "--data", data, "--collection", "demo", "--quiet", inputs)
    assert "demo: 3 image(s) added; ivoa.ObsCore version 1 has 3 images" in done.stdout
    assert f"skipped: {inputs / 'broken.fits'}: not a readable FITS file" in done.stderr
    # TAP_SCHEMA describes the new table (with utypes)
    store = MetadataStore.for_data_dir(data)
    try:
        version = store.current_version("TAP_SCHEMA.columns")
    finally:
        store.close()
    assert version is not None
    columns = pq.read_table(data / version.path / "table.parquet").to_pylist()
    s_region = next(c for c in columns if c["column_name"] == "s_region")
    assert s_region["utype"] == "obscore:Char.SpatialAxis.Coverage.Support.Area"
    assert s_region["xtype"] == "adql:REGION" and s_region["std"] == 1
    band = next(c for c in columns if c["column_name"] == "band_name")
    assert band["std"] == 0 and band["utype"] is None

    strict = run_qcat(
        "ingest-images", "--data", data, "--collection", "x", "--strict", inputs, check=False
    )
    assert strict.returncode == 1
    assert f"error: {inputs / 'broken.fits'}: not a readable FITS file" in strict.stderr
    missing = run_qcat(
        "ingest-images", "--data", data, "--collection", "x", tmp_path / "nope", check=False
    )
    assert missing.returncode == 1 and "nope: no such file or directory" in missing.stderr
    usage = run_qcat("ingest-images", "--data", data, inputs, check=False)
    assert usage.returncode == 2 and "--collection" in usage.stderr
    assert "Examples:" in run_qcat("ingest-images", "--help").stdout
