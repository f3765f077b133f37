"""Tiny FITS images with every kind of celestial WCS the image ingest must understand.

Each maker returns a header for an ``nx`` x ``ny`` image; :func:`write_fits`
writes it with a small data array (single HDU, or primary + SCI + VAR + MASK).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
from astropy.io import fits


def _cd(scale_deg: float, rotation_deg: float, flip: bool = True) -> dict[str, float]:
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    sx = -scale_deg if flip else scale_deg
    return {"CD1_1": sx * c, "CD1_2": scale_deg * s, "CD2_1": -sx * s, "CD2_2": scale_deg * c}


def celestial_header(
    nx: int,
    ny: int,
    lon: float,
    lat: float,
    *,
    projection: str = "TAN",
    frame: str = "ICRS",
    scale_arcsec: float = 0.5,
    rotation_deg: float = 0.0,
    sip: float = 0.0,
) -> fits.Header:
    """A WCS header centred on (lon, lat) in ``frame`` (ICRS, FK5, FK4, GALACTIC).

    ``sip`` > 0 adds a SIP distortion whose quadratic terms move the corners
    by about ``sip`` pixels (TAN only).
    """
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"], h["NAXIS2"] = nx, ny
    lon_name, lat_name = ("GLON", "GLAT") if frame == "GALACTIC" else ("RA--", "DEC-")
    suffix = "-SIP" if sip else ""
    h["CTYPE1"] = f"{lon_name}-{projection}{suffix}"
    h["CTYPE2"] = f"{lat_name}-{projection}{suffix}"
    h["CRVAL1"], h["CRVAL2"] = lon, lat
    h["CRPIX1"], h["CRPIX2"] = (nx + 1) / 2.0, (ny + 1) / 2.0
    for key, value in _cd(scale_arcsec / 3600.0, rotation_deg).items():
        h[key] = value
    if frame in ("ICRS", "FK5", "FK4"):
        h["RADESYS"] = frame
    if frame == "FK5":
        h["EQUINOX"] = 2000.0
    if frame == "FK4":
        h["EQUINOX"] = 1950.0
    if projection == "ZPN":
        # a mildly non-linear zenithal polynomial (radians in, radians out)
        h["PV2_0"], h["PV2_1"], h["PV2_3"] = 0.0, 1.0, 2000.0
    if sip:
        half = max(nx, ny) / 2.0
        k = sip / half**2
        h["A_ORDER"], h["B_ORDER"] = 2, 2
        h["A_2_0"], h["A_0_2"], h["A_1_1"] = k, 0.5 * k, 0.3 * k
        h["B_2_0"], h["B_0_2"], h["B_1_1"] = 0.4 * k, k, -0.2 * k
    h["MJD-OBS"] = 60400.25
    h["EXPTIME"] = 30.0
    h["FILTER"] = "g"
    h["TELESCOP"] = "Test Telescope"
    h["INSTRUME"] = "TestCam"
    h["OBJECT"] = "field-1"
    return h


def write_fits(path: Path, header: fits.Header, *, mef: bool = False, seed: int = 0) -> Path:
    """Write an image with ``header`` (``.fits.gz`` names are gzip-compressed)."""
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    data = np.random.default_rng(seed).normal(100.0, 5.0, (ny, nx)).astype(np.float32)
    if mef:
        primary = fits.PrimaryHDU(header=fits.Header([("ORIGIN", "qcat tests")]))
        hdus = fits.HDUList(
            [
                primary,
                fits.ImageHDU(data, header, name="SCI"),
                fits.ImageHDU(data * 2, header, name="VAR"),
                fits.ImageHDU(np.zeros((ny, nx), np.int16), name="MASK"),
            ]
        )
    else:
        hdus = fits.HDUList([fits.PrimaryHDU(data, header)])
    if path.name.endswith(".gz"):
        raw = path.with_name(path.name[:-3] + ".tmp")
        hdus.writeto(raw, overwrite=True)
        path.write_bytes(gzip.compress(raw.read_bytes()))
        raw.unlink()
    else:
        hdus.writeto(path, overwrite=True)
    return path
