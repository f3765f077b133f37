"""What a FITS file's headers say: its image HDUs with a celestial WCS.

Only headers are read (``.fits.gz`` is decompressed by astropy on the way).
An HDU counts when it is a 2-D image (or a cube whose further axes have one
pixel) and astropy builds a celestial WCS from its header; keywords of the
primary header are inherited by extensions (an extension's own win), as
multi-extension files from survey pipelines expect. Positions are converted
to ICRS from whatever frame the WCS uses (FK5, FK4, galactic, ecliptic ...)
with astropy.coordinates; distortions (SIP, TPV, lookup tables) are applied
by ``all_pix2world``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcat.errors import QcatError


class HeaderError(QcatError):
    """The file cannot be read as FITS, or has no image with a celestial WCS."""


@dataclass(frozen=True)
class CelestialImage:
    """One image HDU with a celestial WCS."""

    #: Position of the HDU in the file (0: primary).
    index: int
    extname: str | None
    #: Pixels along the first and second axis (NAXIS1, NAXIS2).
    nx: int
    ny: int
    #: The astropy ``WCS`` (celestial axes only).
    wcs: Any
    #: Name of the WCS's frame as astropy calls it (``icrs``, ``fk5``, ``galactic`` ...).
    frame_name: str
    #: The astropy frame instance (``None`` for ICRS: no conversion needed).
    frame: Any = None

    def to_icrs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ICRS ``(ra, dec)`` in degrees of 0-based pixel coordinates (distortions applied)."""
        lon, lat = self.wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        if self.frame is None:
            return lon % 360.0, lat
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        ok = np.isfinite(lon) & np.isfinite(lat)
        ra = np.full_like(lon, np.nan)
        dec = np.full_like(lat, np.nan)
        if ok.any():
            icrs = SkyCoord(lon[ok] * u.deg, lat[ok] * u.deg, frame=self.frame).icrs
            ra[ok] = icrs.ra.deg
            dec[ok] = icrs.dec.deg
        return ra % 360.0, dec


@dataclass(frozen=True)
class FitsImage:
    """A FITS file's celestial images and the keywords describing the observation."""

    path: Path
    images: tuple[CelestialImage, ...]
    #: Primary header cards overridden by those of the first celestial image's HDU.
    keywords: Mapping[str, Any]
    #: The comments of those keywords (units are often only said there).
    comments: Mapping[str, str]
    #: HDUs skipped, with why (for the ingest's notes).
    notes: tuple[str, ...] = ()


def _image_shape(header: Any) -> tuple[int, int] | None:
    naxis = int(header.get("NAXIS", 0) or 0)
    if naxis < 2:
        return None
    nx, ny = int(header.get("NAXIS1", 0) or 0), int(header.get("NAXIS2", 0) or 0)
    if nx <= 0 or ny <= 0:
        return None
    extra = [int(header.get(f"NAXIS{i}", 1) or 1) for i in range(3, naxis + 1)]
    if any(n != 1 for n in extra):
        return None
    return nx, ny


def _celestial(index: int, hdu: Any, hdul: Any) -> tuple[CelestialImage | None, str | None]:
    """The HDU as a :class:`CelestialImage`, or ``None`` and why not."""
    from astropy.wcs import WCS
    from astropy.wcs.utils import wcs_to_celestial_frame

    name = hdu.name or f"HDU {index}"
    if getattr(hdu, "is_image", False) is False:
        return None, None  # tables are not images; nothing to say
    shape = _image_shape(hdu.header)
    if shape is None:
        return None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(hdu.header, fobj=hdul)
    except Exception as e:  # astropy raises many kinds for bad WCS keywords
        return None, f"{name}: unusable WCS ({e})"
    if not wcs.has_celestial:
        return None, f"{name}: no celestial WCS"
    if wcs.naxis > 2:
        if sorted((wcs.wcs.lng, wcs.wcs.lat)) != [0, 1]:
            return None, f"{name}: the celestial axes are not the first two"
        wcs = wcs.celestial
    try:
        frame = wcs_to_celestial_frame(wcs)
    except ValueError as e:
        return None, f"{name}: celestial frame not understood ({e})"
    frame_name = str(frame.name)
    return (
        CelestialImage(
            index=index,
            extname=hdu.name or None,
            nx=shape[0],
            ny=shape[1],
            wcs=wcs,
            frame_name=frame_name,
            frame=None if frame_name == "icrs" else frame,
        ),
        None,
    )


def read_image_header(path: Path) -> FitsImage:
    """Read ``path``'s headers; :class:`HeaderError` when it has no usable celestial image."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                images: list[CelestialImage] = []
                notes: list[str] = []
                primary = hdul[0].header
                first_header: Any = None
                for index, hdu in enumerate(hdul):
                    image, why = _celestial(index, hdu, hdul)
                    if why:
                        notes.append(why)
                    if image is not None:
                        images.append(image)
                        if first_header is None:
                            first_header = hdu.header
    except (OSError, ValueError, TypeError, IndexError) as e:
        raise HeaderError(f"not a readable FITS file ({e})") from None
    if not images:
        detail = "; ".join(notes) if notes else "no 2-D image HDU has a WCS"
        raise HeaderError(f"no image with a celestial WCS ({detail})")
    keywords: dict[str, Any] = {}
    comments: dict[str, str] = {}
    for header in (primary, first_header):
        for card in header.cards:
            if card.keyword and card.keyword not in ("COMMENT", "HISTORY", ""):
                keywords[card.keyword] = card.value
                comments[card.keyword] = str(card.comment or "")
    return FitsImage(Path(path), tuple(images), keywords, comments, tuple(notes))
