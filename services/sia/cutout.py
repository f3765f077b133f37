"""Cut a FITS file to a sky region: pure, no HTTP (SODA's spatial cutout).

Every image HDU with a celestial WCS is cut to the pixel box of the region
(:func:`~services.sia.cutout_box.pixel_box`); image HDUs without a WCS but
with the shape of a cut HDU (a variance or mask plane) are cut the same way.
Only the needed pixels are read: the file is memory-mapped and the box is
read through ``hdu.section``, so a 200 x 200 cutout of a 4k x 4k image
touches about 200 rows, not the image. Pixel values are copied raw
(``BZERO``/``BSCALE`` kept), so the cutout holds exactly the stored values.

Headers are kept card for card, except that ``CRPIXi`` (of every alternate
WCS) moves with the cut, ``LTV1``/``LTV2`` record the offset (IRAF's
physical = logical - LTV, so the original pixel grid can be recovered) and
stale ``CHECKSUM``/``DATASUM`` are dropped. SIP and other polynomial
distortions are relative to CRPIX, so they stay valid. The primary header
is always kept. HDUs that are neither (tables, images of other shapes) are
left out.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from services.sia.cutout_box import PixelBox, celestial_wcs, pixel_box
from services.sia.cutout_region import CutoutRegion
from services.sia.soda_errors import NoOverlap

_CRPIX = re.compile(r"^CRPIX(\d+)([A-Z]?)$")
_SCALING = ("BSCALE", "BZERO", "BLANK")
_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)


@dataclass(frozen=True)
class HduCut:
    """How one input HDU is cut: its box and the numpy axes of its x and y."""

    index: int
    box: PixelBox
    x_axis: int  # FITS axis number (1-based) of the box's x
    y_axis: int


@dataclass(frozen=True)
class CutoutPlan:
    """The HDUs a cutout keeps: cut image HDUs (by input index), and the primary."""

    cuts: tuple[HduCut, ...]
    naxes: tuple[int, ...]  # NAXIS of every input HDU, for slicing


def plan_cutout(hdul: fits.HDUList, region: CutoutRegion) -> CutoutPlan:
    """The pixel boxes of every image HDU of ``hdul`` (headers only are read).

    Raises :class:`NoOverlap` when the region misses every image.
    """
    cuts: dict[int, HduCut] = {}
    shapes: list[tuple[int, ...]] = []
    plain: list[int] = []
    for index, hdu in enumerate(hdul):
        shape = _shape(hdu)
        shapes.append(shape)
        if len(shape) < 2:
            continue
        sky = _sky_axes(hdu, hdul)
        if sky is None:
            plain.append(index)
            continue
        wcs, x_axis, y_axis = sky
        box = pixel_box(wcs, shape[x_axis - 1], shape[y_axis - 1], region)
        if box is not None:
            cuts[index] = HduCut(index, box, x_axis, y_axis)
    if not cuts:
        raise NoOverlap("the region does not overlap the image")
    for index in plain:
        twin = _twin(index, shapes, cuts)
        if twin is not None:
            cuts[index] = HduCut(index, twin.box, twin.x_axis, twin.y_axis)
    return CutoutPlan(tuple(cuts[i] for i in sorted(cuts)), tuple(len(s) for s in shapes))


def write_cutout(
    source: str | os.PathLike[str] | IO[bytes], region: CutoutRegion, out: IO[bytes]
) -> CutoutPlan:
    """Write the cutout of the FITS file ``source`` to ``out``; the plan it followed.

    ``source`` as a path is memory-mapped; a file object is read with seeks,
    the section's rows only (this is how tests count the bytes read).
    """
    memmap = isinstance(source, str | os.PathLike)
    with (
        warnings.catch_warnings(),
        fits.open(source, memmap=memmap, lazy_load_hdus=True, do_not_scale_image_data=True) as hdul,
    ):
        warnings.simplefilter("ignore", FITSFixedWarning)
        plan = plan_cutout(hdul, region)
        hdus: list[Any] = []
        by_index = {c.index: c for c in plan.cuts}
        if 0 not in by_index:
            hdus.append(_primary_header_only(hdul[0].header))
        for cut in plan.cuts:
            hdu = hdul[cut.index]
            data = hdu.section[_slices(cut, len(_shape(hdu)))]
            header = _shifted_header(hdu.header, cut)
            kind = fits.PrimaryHDU if cut.index == 0 else fits.ImageHDU
            out_hdu = kind(
                data=np.ascontiguousarray(data), header=header, do_not_scale_image_data=True
            )
            # The constructor drops the scaling cards of raw data; the values need them back.
            for key in _SCALING:
                if key in hdu.header:
                    out_hdu.header[key] = hdu.header[key]
            hdus.append(out_hdu)
        fits.HDUList(hdus).writeto(out, output_verify="silentfix")
    return plan


def cutout_bytes(path: Path, region: CutoutRegion) -> bytes:
    """The cutout as bytes (small cutouts; see :func:`write_cutout` to stream)."""
    buffer = io.BytesIO()
    write_cutout(path, region, buffer)
    return buffer.getvalue()


def _shape(hdu: Any) -> tuple[int, ...]:
    """FITS axis lengths (NAXIS1 first) of an image HDU; () for anything else."""
    if not isinstance(hdu, _IMAGE_HDUS):
        return ()
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    return tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1))


def _sky_axes(hdu: Any, hdul: fits.HDUList) -> tuple[WCS, int, int] | None:
    """The celestial WCS of an image HDU and its (lon, lat) FITS axis numbers."""
    header = hdu.header
    if not any(key.startswith("CTYPE") for key in header):
        return None
    try:
        full = WCS(header, fobj=hdul)
    except Exception:  # a header astropy cannot read as a WCS is an image without one
        return None
    sky = celestial_wcs(full)
    if sky is None or full.wcs.lng < 0 or full.wcs.lat < 0:
        return None
    return sky, full.wcs.lng + 1, full.wcs.lat + 1


def _twin(index: int, shapes: Sequence[tuple[int, ...]], cuts: dict[int, HduCut]) -> HduCut | None:
    """The cut HDU a WCS-less image follows: the nearest earlier one of its shape, else later."""
    same = [i for i in cuts if shapes[i] == shapes[index]]
    earlier = [i for i in same if i < index]
    if earlier:
        return cuts[max(earlier)]
    return cuts[min(same)] if same else None


def _slices(cut: HduCut, naxis: int) -> tuple[slice, ...]:
    """Numpy slices (last FITS axis first) selecting the box, other axes whole."""
    slices = [slice(None)] * naxis
    slices[naxis - cut.x_axis] = slice(cut.box.x0, cut.box.x1 + 1)
    slices[naxis - cut.y_axis] = slice(cut.box.y0, cut.box.y1 + 1)
    return tuple(slices)


def _shifted_header(header: fits.Header, cut: HduCut) -> fits.Header:
    """``header`` with the reference pixels moved to the cut's grid, LTV set, checksums off."""
    out = header.copy()
    offsets = {cut.x_axis: cut.box.x0, cut.y_axis: cut.box.y0}
    for key in list(out.keys()):
        match = _CRPIX.match(key)
        if match and int(match.group(1)) in offsets:
            out[key] = float(out[key]) - offsets[int(match.group(1))]
    for axis, offset in offsets.items():
        ltv = f"LTV{axis}"
        out[ltv] = (float(header.get(ltv, 0.0)) - offset, "original pixel = this pixel - LTV")
    for key in ("CHECKSUM", "DATASUM"):
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


def _primary_header_only(header: fits.Header) -> fits.PrimaryHDU:
    """A data-less primary HDU keeping the original primary header's cards."""
    out = header.copy()
    for key in ("CHECKSUM", "DATASUM"):
        out.remove(key, ignore_missing=True, remove_all=True)
    naxis = int(out.get("NAXIS", 0))
    for i in range(1, naxis + 1):
        out.remove(f"NAXIS{i}", ignore_missing=True)
    out["NAXIS"] = 0
    return fits.PrimaryHDU(header=out)
