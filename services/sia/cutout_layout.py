"""What a cutout needs to know of a FITS file, read once: headers, WCS, where the pixels are.

Parsing headers and building WCS objects (SIP included) costs far more than
cutting a small box, and the files under ``DATA/images`` are immutable, so
:func:`cached_layout` keeps the :class:`FileLayout` of recently cut files,
keyed by path and checked against the file's inode, size and modification
time on every use: a file replaced at the same path is read again, a new
path is a new entry.

A cached layout also holds the file memory-mapped (read-only,
``MADV_RANDOM``: a narrow box touches a few pages per row and read-ahead
would only fetch columns nobody asked for), so a cutout costs no ``open`` or
``mmap``; contiguous runs are sent as views on the same mapping, with
read-ahead asked for just their range (see :mod:`services.sia.cutout_pixels`).
"""

from __future__ import annotations

import mmap
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from services.sia.cutout_box import celestial_wcs

#: Most files whose layout is kept.
CACHE_FILES = 64

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


@dataclass(frozen=True)
class SkyAxes:
    """The celestial WCS of an image HDU and its (lon, lat) FITS axis numbers (1-based)."""

    wcs: WCS
    x_axis: int
    y_axis: int
    #: Equal for HDUs whose pixel boxes are equal (same celestial WCS and shape).
    key: tuple[Any, ...]


@dataclass(frozen=True)
class HduLayout:
    """One HDU: its header, and for an image its shape, pixel type and data offset."""

    index: int
    header: fits.Header  # the image header (for a tile-compressed image, the uncompressed one)
    shape: tuple[int, ...]  # FITS axis lengths, NAXIS1 first; () for anything but an image
    dtype: np.dtype[Any] | None  # raw, big-endian, as stored
    data_offset: int
    compressed: bool  # a tile-compressed image: pixels through astropy, not by offset
    sky: SkyAxes | None


@dataclass
class FileLayout:
    """Every HDU of one file, and (for a cached file) its mapping."""

    hdus: tuple[HduLayout, ...]
    mapping: mmap.mmap | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Output header templates by the set of HDUs cut (see cutout_fits).
    templates: dict[tuple[int, ...], Any] = field(default_factory=dict)
    #: Image geometries (cutout_box.ImageGeometry) by SkyAxes.key; used under ``lock``.
    geometries: dict[tuple[Any, ...], Any] = field(default_factory=dict)


def read_layout(source: str | os.PathLike[str] | IO[bytes]) -> FileLayout:
    """The layout of the FITS file ``source`` (headers only are read)."""
    named = isinstance(source, str | os.PathLike)
    hdul = fits.open(source, memmap=named, lazy_load_hdus=True, do_not_scale_image_data=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            hdus = []
            for index, hdu in enumerate(hdul):
                info = hdul.fileinfo(index) or {}
                hdus.append(_hdu_layout(index, hdu, hdul, int(info.get("datLoc", 0))))
    finally:
        if named:  # closing the list would close the caller's file object too
            hdul.close()
    return FileLayout(tuple(hdus))


def _hdu_layout(index: int, hdu: Any, hdul: fits.HDUList, data_offset: int) -> HduLayout:
    header = hdu.header.copy()
    is_image = isinstance(hdu, _IMAGE_HDUS) and not isinstance(hdu, fits.GroupsHDU)
    if not is_image:
        return HduLayout(index, header, (), None, data_offset, False, None)
    naxis = int(header.get("NAXIS", 0))
    shape = tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1))
    dtype_name = _DTYPES.get(int(header.get("BITPIX", 0)))
    dtype = np.dtype(dtype_name) if dtype_name else None
    sky = _sky_axes(header, hdul, shape) if len(shape) >= 2 else None
    compressed = isinstance(hdu, fits.CompImageHDU)
    return HduLayout(index, header, shape, dtype, data_offset, compressed, sky)


def _sky_axes(header: fits.Header, hdul: fits.HDUList, shape: tuple[int, ...]) -> SkyAxes | None:
    """The celestial WCS of an image HDU, or ``None`` when it has none astropy can read."""
    if not any(key.startswith("CTYPE") for key in header):
        return None
    try:
        full = WCS(header, fobj=hdul)
    except Exception:  # a header astropy cannot read as a WCS is an image without one
        return None
    sky = celestial_wcs(full)
    if sky is None or full.wcs.lng < 0 or full.wcs.lat < 0:
        return None
    sky.wcs.set()  # once here, so requests sharing it only read it
    x_axis, y_axis = full.wcs.lng + 1, full.wcs.lat + 1
    distorted = any(
        getattr(sky, name, None) is not None for name in ("cpdis1", "cpdis2", "det2im1", "det2im2")
    )
    # Lookup-table distortions are not in the header string: such an HDU shares no box.
    text = sky.to_header_string(relax=True)
    key = (id(sky),) if distorted else (text, shape[x_axis - 1], shape[y_axis - 1])
    return SkyAxes(sky, x_axis, y_axis, key)


class _LayoutCache:
    """Path -> (file stamp, layout), least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[tuple[int, int, int], FileLayout]] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # layouts read from files (for tests)

    def get(self, path: Path) -> FileLayout:
        name = str(path)
        stat = os.stat(name)
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(name)
                return entry[1]
        layout, stamp = _open_layout(name)  # the stamp of what was opened, in case of a race
        with self._lock:
            self.reads += 1
            self._entries[name] = (stamp, layout)
            self._entries.move_to_end(name)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return layout

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _open_layout(name: str) -> tuple[FileLayout, tuple[int, int, int]]:
    """The layout of a file, with the file mapped; the file's stamp.

    The mapping holds the file itself (it is unmapped once the layout and
    every block handed out from it are gone), so the file is closed here.
    """
    with open(name, "rb", buffering=0) as file:
        stat = os.fstat(file.fileno())
        layout = read_layout(file)
        if stat.st_size > 0:
            layout.mapping = mmap.mmap(file.fileno(), stat.st_size, access=mmap.ACCESS_READ)
            if hasattr(mmap, "MADV_RANDOM"):
                layout.mapping.madvise(mmap.MADV_RANDOM)
    return layout, (stat.st_ino, stat.st_size, stat.st_mtime_ns)


LAYOUTS = _LayoutCache(CACHE_FILES)


def cached_layout(path: Path) -> FileLayout:
    """The layout of the (immutable) file ``path``, read once while it stays the same file."""
    return LAYOUTS.get(path)
