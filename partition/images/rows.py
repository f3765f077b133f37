"""ObsCore rows of images, and the ``ivoa.ObsCore`` table they go into.

One row per image file; :func:`obscore_row` turns what the header says
(:class:`~partition.images.header.FitsImage`), its footprint and where it is
stored into the row's values, :func:`obscore_table` makes an Arrow table of
rows with the schema of ``partition/images/obscore.yaml``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from partition.images.bands import band_for
from partition.images.footprint import Footprint
from partition.images.header import FitsImage
from partition.images.times import time_range
from qcat.schema import TableSpec, spec_from_felis

OBSCORE_TABLE = "ivoa.ObsCore"
FELIS_FILE = Path(__file__).with_name("obscore.yaml")
FITS_MIME = "image/fits"
DATALINK_FORMAT = "application/x-votable+xml;content=datalink"
DATALINK_PATH = "/datalink/links"

#: Header keywords giving the PSF FWHM, in the order they are trusted.
_PSF_KEYWORDS = ("PSF_FWHM", "PSFFWHM", "SEEING", "FWHM", "FWHMPSF")
_FILTER_KEYWORDS = ("FILTER", "BAND", "FILTNAM", "FILTER1", "FILTNAME")
#: BUNIT spellings of fluxes; anything else (adu, counts, electrons, none) is counts.
_FLUX_UNITS = ("jy", "erg", "w/m", "w m", "w.m", "mag", "maggy", "flam", "fnu")


@functools.cache
def obscore_spec() -> TableSpec:
    """The ``ivoa.ObsCore`` table described by ``obscore.yaml``."""
    return spec_from_felis(FELIS_FILE, OBSCORE_TABLE)


def publisher_did(authority: str, collection: str, obs_id: str) -> str:
    """``ivo://<authority>/<collection>?<obs_id>``: the image's identifier."""
    return f"ivo://{authority}/{collection}?{obs_id}"


def access_url(did: str) -> str:
    """The image's DataLink URL, relative to the service (made absolute when served)."""
    return f"{DATALINK_PATH}?ID={quote(did, safe='')}"


@dataclass(frozen=True)
class StoredImage:
    """Where one image file is kept and what it holds."""

    collection: str
    obs_id: str
    did: str
    #: Path relative to the data directory.
    file_path: str
    size: int
    sha256: str


def _text(keywords: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = keywords.get(key)
        if value is not None and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _psf_fwhm(image: FitsImage, pixel_scale: float) -> float | None:
    """PSF FWHM in arcsec; a value whose comment says pixels is converted."""
    for key in _PSF_KEYWORDS:
        value = image.keywords.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        fwhm = float(value)
        if not math.isfinite(fwhm) or fwhm <= 0:
            continue
        if "pix" in image.comments.get(key, "").lower():
            fwhm *= pixel_scale
        return fwhm
    return None


def _o_ucd(keywords: Mapping[str, Any]) -> str:
    unit = (_text(keywords, "BUNIT") or "").lower()
    return "phot.flux.density" if any(u in unit for u in _FLUX_UNITS) else "phot.count"


def obscore_row(
    image: FitsImage,
    footprint: Footprint,
    stored: StoredImage,
    *,
    facility: str | None = None,
    instrument: str | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The ObsCore values of one image (``facility``/``instrument`` override the header).

    What the header does not say is appended to ``notes``.
    """
    notes = notes if notes is not None else []
    kw = image.keywords
    first = image.images[0]
    times = time_range(kw)
    if times.t_min is None:
        notes.append("no MJD-OBS or DATE-OBS: t_min/t_max are NULL")
    filter_name = _text(kw, *_FILTER_KEYWORDS)
    band = band_for(filter_name)
    if filter_name is None:
        notes.append("no FILTER or BAND keyword: em_min/em_max are NULL")
    elif band is None:
        notes.append(f"filter {filter_name!r} is not known: em_min/em_max are NULL")
    fwhm = _psf_fwhm(image, footprint.pixel_scale)
    dec_min, dec_max = footprint.dec_extent()
    return {
        "dataproduct_type": "image",
        "calib_level": 2,
        "obs_collection": stored.collection,
        "obs_id": stored.obs_id,
        "obs_publisher_did": stored.did,
        "access_url": access_url(stored.did),
        "access_format": DATALINK_FORMAT,
        "access_estsize": max(1, math.ceil(stored.size / 1024)),
        "target_name": _text(kw, "OBJECT", "TARGNAME", "TARGET"),
        "s_ra": footprint.ra,
        "s_dec": footprint.dec,
        "s_fov": footprint.fov,
        "s_region": footprint.stcs(),
        "s_resolution": fwhm if fwhm is not None else 2.0 * footprint.pixel_scale,
        "s_xel1": first.nx,
        "s_xel2": first.ny,
        "s_pixel_scale": footprint.pixel_scale,
        "t_min": times.t_min,
        "t_max": times.t_max,
        "t_exptime": times.exptime,
        "t_resolution": times.exptime,
        "t_xel": 1,
        "em_min": band.em_min if band else None,
        "em_max": band.em_max if band else None,
        "em_res_power": band.res_power if band else None,
        "em_xel": 1,
        "o_ucd": _o_ucd(kw),
        "pol_states": None,
        "pol_xel": None,
        "facility_name": facility or _text(kw, "TELESCOP", "OBSERVAT"),
        "instrument_name": instrument or _text(kw, "INSTRUME"),
        "band_name": filter_name,
        "file_path": stored.file_path,
        "file_format": FITS_MIME,
        "file_size": stored.size,
        "file_sha256": stored.sha256,
        "s_dec_min": dec_min,
        "s_dec_max": dec_max,
    }


def obscore_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The rows as an Arrow table with the ObsCore schema (missing values are NULL)."""
    return pa.Table.from_pylist([dict(r) for r in rows], schema=obscore_spec().arrow_schema())
