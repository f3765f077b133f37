"""Small FITS images with known WCS and a bright star, and an ivoa.ObsCore over them.

Every pixel of a test image holds a distinct value (``x + 1000 * y`` plus a
star), so a cutout pixel can be traced back to the original pixel it came
from. The ObsCore table is written here (plain Parquet, ingested with
``partition.ingest.ingest_table``), with the columns SODA reads.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.wcs import WCS

from partition.ingest import IngestOptions, ingest_table
from qcat.schema import infer_spec

PIXEL_DEG = 0.2 / 3600.0
STAR_PEAK = 1.0e7


@dataclass(frozen=True)
class SkyImage:
    """An image written by :func:`write_image`: where its star is."""

    path: Path
    star_ra: float
    star_dec: float
    star_x: float  # 0-based pixel of the star in the original
    star_y: float
    shape: tuple[int, int]  # (ny, nx)


def wcs_header(
    nx: int,
    ny: int,
    ra: float,
    dec: float,
    *,
    rotation_deg: float = 0.0,
    sip: bool = False,
    scale: float = PIXEL_DEG,
) -> fits.Header:
    """A TAN (or TAN-SIP) header centred on (ra, dec), rotated by ``rotation_deg``."""
    header = fits.Header()
    suffix = "-SIP" if sip else ""
    header["CTYPE1"] = "RA---TAN" + suffix
    header["CTYPE2"] = "DEC--TAN" + suffix
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    header["CRPIX1"], header["CRPIX2"] = nx / 2.0 + 0.5, ny / 2.0 + 0.5
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    header["CD1_1"], header["CD1_2"] = -scale * c, scale * s
    header["CD2_1"], header["CD2_2"] = scale * s, scale * c
    header["RADESYS"] = "ICRS"
    if sip:
        header["A_ORDER"], header["B_ORDER"] = 2, 2
        header["A_2_0"], header["A_1_1"], header["A_0_2"] = 3e-5, 1e-5, -2e-5
        header["B_2_0"], header["B_1_1"], header["B_0_2"] = -1e-5, 2e-5, 3e-5
    header["DATE-OBS"] = "2024-01-02T03:04:05"
    header["MJD-OBS"] = 60311.128
    header["EXPTIME"] = 30.0
    header["FILTER"] = "r"
    return header


def pixels(nx: int, ny: int, star: tuple[float, float] | None) -> np.ndarray:
    """Distinct values per pixel (``x + 1000 y``), plus a Gaussian star at ``star``."""
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    data = x + 1000.0 * y
    if star is not None:
        data += STAR_PEAK * np.exp(-((x - star[0]) ** 2 + (y - star[1]) ** 2) / (2 * 1.5**2))
    return data


def write_image(
    path: Path,
    header: fits.Header,
    star_pixel: tuple[float, float],
    *,
    mef: bool = False,
) -> SkyImage:
    """A single-HDU image, or (``mef``) an empty primary + SCI, VAR (with WCS) and MASK (none)."""
    nx, ny = int(header["CRPIX1"] * 2 - 1), int(header["CRPIX2"] * 2 - 1)
    wcs = WCS(header)
    star_ra, star_dec = (float(v) for v in wcs.all_pix2world([star_pixel], 0)[0])
    data = pixels(nx, ny, star_pixel).astype(np.float64)
    if mef:
        primary = fits.PrimaryHDU(header=fits.Header([("ORIGIN", "qcat tests")]))
        sci = fits.ImageHDU(data, header, name="SCI")
        var = fits.ImageHDU(data * 2.0, header, name="VAR")
        mask = fits.ImageHDU((data % 7).astype(np.int16), name="MASK")
        fits.HDUList([primary, sci, var, mask]).writeto(path, overwrite=True)
    else:
        fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return SkyImage(path, star_ra, star_dec, star_pixel[0], star_pixel[1], (ny, nx))


@dataclass(frozen=True)
class Stored:
    """An image as ingested: its ID and the ObsCore values given for it."""

    did: str
    collection: str
    obs_id: str
    image: SkyImage
    em_min: float = 5.5e-7
    em_max: float = 7.0e-7
    t_min: float = 60311.128
    t_max: float = 60311.1284
    pol_states: str | None = None


def ingest_obscore(
    data: Path, images: list[tuple[str, SkyImage, dict[str, object]]]
) -> list[Stored]:
    """Copy ``(collection, image, overrides)`` into ``DATA/images`` and publish ivoa.ObsCore."""
    stored = []
    rows: dict[str, list[object]] = {
        k: []
        for k in (
            "obs_publisher_did",
            "obs_collection",
            "obs_id",
            "file_path",
            "s_ra",
            "s_dec",
            "s_fov",
            "s_region",
            "em_min",
            "em_max",
            "t_min",
            "t_max",
            "pol_states",
            "file_format",
            "file_size",
        )
    }
    for collection, image, overrides in images:
        obs_id = image.path.name.removesuffix(".fits")
        target = data / "images" / collection / f"{obs_id}.fits"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.path, target)
        s = Stored(f"ivo://qcat/{collection}?{obs_id}", collection, obs_id, image, **overrides)  # type: ignore[arg-type]
        stored.append(s)
        values = {
            "obs_publisher_did": s.did,
            "obs_collection": collection,
            "obs_id": obs_id,
            "file_path": str(target.relative_to(data)),
            "s_ra": image.star_ra,
            "s_dec": image.star_dec,
            "s_fov": 0.1,
            "s_region": "POLYGON ICRS 0 0 1 0 1 1",
            "em_min": s.em_min,
            "em_max": s.em_max,
            "t_min": s.t_min,
            "t_max": s.t_max,
            "pol_states": s.pol_states,
            "file_format": "image/fits",
            "file_size": target.stat().st_size,
        }
        for key, value in values.items():
            rows[key].append(value)
    table = pa.table(rows, schema=_schema())
    source = data.parent / f"obscore-{len(stored)}.parquet"
    pq.write_table(table, source)
    spec = infer_spec(table.schema, "ivoa.ObsCore")
    ingest_table(data, spec, [source], IngestOptions(show_progress=False))
    return stored


def _schema() -> pa.Schema:
    text, real = pa.string(), pa.float64()
    return pa.schema(
        [
            ("obs_publisher_did", text),
            ("obs_collection", text),
            ("obs_id", text),
            ("file_path", text),
            ("s_ra", real),
            ("s_dec", real),
            ("s_fov", real),
            ("s_region", text),
            ("em_min", real),
            ("em_max", real),
            ("t_min", real),
            ("t_max", real),
            ("pol_states", text),
            ("file_format", text),
            ("file_size", pa.int64()),
        ]
    )
