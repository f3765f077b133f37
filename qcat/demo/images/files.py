"""FITS layout of a demo image: header keywords and single-HDU or multi-extension files."""

from __future__ import annotations

import os
from pathlib import Path

from astropy.io import fits
from astropy.time import Time

from qcat.demo.images.photometry import GAIN, READ_NOISE, SATURATION
from qcat.demo.images.pixels import MASK_PLANES, Planes
from qcat.demo.images.visits import VisitPlan

TELESCOPE = "qcat demo telescope"
INSTRUMENT = "qcat demo camera"
#: Extension names of the multi-extension layout, in file order after the primary HDU.
EXTENSIONS = ("IMAGE", "VARIANCE", "MASK")


def observation_header(plan: VisitPlan, zero_point: float, sky: float) -> fits.Header:
    """Keywords describing the exposure (not the pixels' WCS)."""
    start = Time(plan.mjd_start, format="mjd", scale="tai")
    end = Time(plan.mjd_end, format="mjd", scale="tai")
    header = fits.Header()
    header["ORIGIN"] = ("qcat", "rendered from the qcat demo catalog")
    header["TELESCOP"] = (TELESCOPE, "telescope")
    header["INSTRUME"] = (INSTRUMENT, "instrument")
    header["OBJECT"] = (plan.field.name, "field name")
    header["FILTER"] = (plan.band, "filter band (LSST ugrizy)")
    header["VISIT"] = (plan.visit_id, "visit number (night * 1000 + exposure)")
    header["TIMESYS"] = ("TAI", "time scale of DATE-OBS, MJD-OBS, ...")
    header["DATE-OBS"] = (start.isot, "start of exposure")
    header["DATE-END"] = (end.isot, "end of exposure")
    header["MJD-OBS"] = (plan.mjd_start, "[d] start of exposure")
    header["MJD-END"] = (plan.mjd_end, "[d] end of exposure")
    header["EXPTIME"] = (plan.exptime, "[s] exposure time")
    header["SEEING"] = (round(plan.seeing_arcsec, 4), "[arcsec] PSF FWHM")
    header["FWHM"] = (round(plan.seeing_arcsec, 4), "[arcsec] PSF FWHM")
    header["GAIN"] = (GAIN, "[electron/adu] gain")
    header["RDNOISE"] = (READ_NOISE, "[adu] read noise")
    header["SATURATE"] = (SATURATION, "[adu] saturation level")
    header["SKYLEVEL"] = (sky, "[adu] sky background per pixel")
    header["MAGZERO"] = (round(zero_point, 4), "AB magnitude of 1 adu in EXPTIME")
    return header


def _mask_header() -> fits.Header:
    header = fits.Header()
    for name, bit in MASK_PLANES.items():
        header[f"MP_{name}"] = (bit, f"mask bit of plane {name}")
    return header


def visit_hdus(
    plan: VisitPlan, planes: Planes, wcs: fits.Header, observation: fits.Header
) -> fits.HDUList:
    """The HDUs of one visit: one image HDU, or an empty primary plus IMAGE/VARIANCE/MASK.

    In the multi-extension layout the primary header holds the observation
    keywords and each extension the WCS (``INHERIT = T`` points readers at
    the primary).
    """
    if not plan.mef:
        header = observation.copy()
        header.update(wcs)
        header["BUNIT"] = ("adu", "pixel unit")
        return fits.HDUList([fits.PrimaryHDU(planes.image, header=header)])
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU(header=observation)]
    units = {"IMAGE": "adu", "VARIANCE": "adu**2"}
    for name, data in zip(EXTENSIONS, (planes.image, planes.variance, planes.mask), strict=True):
        header = fits.Header()
        header["INHERIT"] = (True, "inherit the primary header's keywords")
        header.update(wcs)
        if name in units:
            header["BUNIT"] = (units[name], "pixel unit")
        if name == "MASK":
            header.update(_mask_header())
        hdus.append(fits.ImageHDU(data, header=header, name=name))
    return fits.HDUList(hdus)


def write_hdus(hdus: fits.HDUList, path: Path) -> None:
    """Write ``hdus`` to ``path`` via a temporary name, so no half-written file is seen."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        hdus.writeto(partial, overwrite=True)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
