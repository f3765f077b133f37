"""Small FITS images with known WCS and a bright star, and an ivoa.ObsCore over them.

Every pixel of a test image holds a distinct value (``x + 1000 * y`` plus a
star), so a cutout pixel can be traced back to the original pixel it came
from. The images are published in the real ``ivoa.ObsCore`` (the schema of
``partition/images/obscore.yaml``) by the image ingest,
``partition.images.ingest_images``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.wcs import WCS

from partition.images import OBSCORE_TABLE, ingest_images, obscore_spec
from partition.images.rows import obscore_table
from partition.ingest import PLAIN_FILE, IngestOptions, current_version_or_none, ingest_table
from qcat.metadata.store import MetadataStore

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
    """An image as published: its ID and the ObsCore values the ingest gave it."""

    did: str
    collection: str
    obs_id: str
    image: SkyImage
    em_min: float
    em_max: float
    t_min: float
    t_max: float
    pol_states: str | None


def ingest_obscore(
    data: Path, images: list[tuple[str, SkyImage, dict[str, object]]]
) -> list[Stored]:
    """Publish ``(collection, image, overrides)`` in ivoa.ObsCore as the image ingest does.

    Images without overrides go through :func:`partition.images.ingest_images`
    (one ingest per collection). ``overrides`` (ObsCore column -> value) set
    what no header gives the ingest, e.g. ``pol_states``: such images are
    ingested into a scratch data directory first, and their rows, changed,
    are published with the ObsCore spec (``obscore_spec()``) beside a copy
    of the stored file.
    """
    plain = [(c, image) for c, image, overrides in images if not overrides]
    for collection in dict.fromkeys(c for c, _ in plain):
        paths = [image.path for c, image in plain if c == collection]
        result = ingest_images(data, collection, paths, strict=True)
        assert result.rows_added == len(paths), result
    changed = [(c, image, overrides) for c, image, overrides in images if overrides]
    if changed:
        _publish_changed(data, changed)
    rows = published_rows(data)
    out = []
    for collection, image, _ in images:
        obs_id = image.path.name.removesuffix(".fits")
        row = rows[(collection, obs_id)]
        out.append(
            Stored(
                row["obs_publisher_did"],
                collection,
                obs_id,
                image,
                row["em_min"],
                row["em_max"],
                row["t_min"],
                row["t_max"],
                row["pol_states"],
            )
        )
    return out


def _publish_changed(data: Path, images: list[tuple[str, SkyImage, Mapping[str, object]]]) -> None:
    with tempfile.TemporaryDirectory(prefix="qcat-obscore-test-") as tmp:
        scratch = Path(tmp) / "data"
        for collection, image, _ in images:
            ingest_images(scratch, collection, [image.path], strict=True)
        computed = published_rows(scratch)
        rows = []
        for collection, image, overrides in images:
            row = dict(computed[(collection, image.path.name.removesuffix(".fits"))])
            unknown = set(overrides) - set(row)
            assert not unknown, f"not ObsCore columns: {unknown}"
            row.update(overrides)
            target = data / row["file_path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(scratch / row["file_path"], target)
            rows.append(row)
        source = Path(tmp) / "obscore-rows.parquet"
        pq.write_table(obscore_table(rows), source)
        ingest_table(data, obscore_spec(), [source], IngestOptions(show_progress=False))


def published_rows(data: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The published ivoa.ObsCore rows by ``(obs_collection, obs_id)``."""
    store = MetadataStore.for_data_dir(data)
    try:
        version = current_version_or_none(store, OBSCORE_TABLE)
    finally:
        store.close()
    assert version is not None, "no ivoa.ObsCore published"
    table = pq.read_table(data / version.path / PLAIN_FILE)
    return {(r["obs_collection"], r["obs_id"]): r for r in table.to_pylist()}
