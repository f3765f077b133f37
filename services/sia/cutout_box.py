"""The pixel box of a sky region in an image with a celestial WCS.

The box of ``region ∩ image`` in pixel coordinates is the box of that set's
boundary, which is made of the region's boundary inside the image and the
image's edge inside the region. Both are sampled at half a pixel:

* the region's boundary (:func:`~services.sia.cutout_region.sample_boundary`)
  is mapped to pixels with ``all_world2pix`` (SIP and other distortions
  included); a sample counts when it falls on the image and maps back to the
  same sky position (which drops positions on the far side of the sky that a
  projection folds onto the image);
* the image's edge is mapped to the sky with ``all_pix2world`` and tested
  against the region (exact spherical tests), only when part of the region
  lies outside the image.

A region holding the whole image yields the whole image, a region around or
over a pole is handled like any other (the sampling is on the sphere), and a
region that misses the image yields ``None``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import ICRS, SkyCoord
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame

from qcat.geometry.vectors import angle, to_radec, unit_vectors
from services.sia.cutout_region import (
    CutoutRegion,
    interior_points,
    region_contains,
    sample_boundary,
)

#: A boundary sample counts as on the image if it maps back within this many pixels.
ROUND_TRIP_PX = 0.05
#: Samples per pixel along boundaries.
SAMPLES_PER_PIXEL = 2.0


@dataclass(frozen=True)
class PixelBox:
    """Inclusive 0-based pixel ranges along the celestial pixel axes (x: longitude axis)."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def width(self) -> int:
        """Pixels along x."""
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        """Pixels along y."""
        return self.y1 - self.y0 + 1


def celestial_wcs(wcs: WCS) -> WCS | None:
    """The two-axis celestial part of ``wcs``, or ``None`` when it has none."""
    if not wcs.has_celestial:
        return None
    return wcs if wcs.naxis == 2 else wcs.celestial


def pixel_box(wcs: WCS, nx: int, ny: int, region: CutoutRegion) -> PixelBox | None:
    """The pixels of an ``nx`` x ``ny`` image (celestial ``wcs``) that ``region`` touches."""
    frame = _Frame(wcs)
    centre, radius, scale = _image_cap(frame, nx, ny)
    step = scale / SAMPLES_PER_PIXEL
    points = np.concatenate(
        [sample_boundary(region, centre, radius, step), interior_points(region)]
    )
    xs, ys = frame.on_image(points, nx, ny, scale)
    if xs.size < len(points):  # part of the region lies off the image: add the edge inside it
        ex, ey = _edge(nx, ny)
        ra, dec = frame.to_sky(ex, ey)
        inside = region_contains(region, ra, dec) & np.isfinite(ra)
        xs = np.concatenate([xs, ex[inside]])
        ys = np.concatenate([ys, ey[inside]])
    if xs.size == 0:
        return None
    return PixelBox(
        x0=_first(xs.min(), nx),
        x1=_first(xs.max(), nx),
        y0=_first(ys.min(), ny),
        y1=_first(ys.max(), ny),
    )


def _first(v: float, n: int) -> int:
    """The pixel holding coordinate ``v`` (pixel i spans i - 0.5 .. i + 0.5), clipped."""
    return int(min(max(math.floor(v + 0.5), 0), n - 1))


def _edge(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """The image's outline (pixel corners' sides), a sample every half pixel."""
    x = np.arange(0.0, nx * 2.0 + 1.0) / 2.0 - 0.5
    y = np.arange(0.0, ny * 2.0 + 1.0) / 2.0 - 0.5
    lo_y, hi_y = np.full_like(x, -0.5), np.full_like(x, ny - 0.5)
    lo_x, hi_x = np.full_like(y, -0.5), np.full_like(y, nx - 0.5)
    return np.concatenate([x, x, lo_x, hi_x]), np.concatenate([lo_y, hi_y, y, y])


def _image_cap(frame: _Frame, nx: int, ny: int) -> tuple[np.ndarray, float, float]:
    """Centre (unit vector), radius (radians) of a cap holding the image; pixel size (radians)."""
    cx, cy, right, top = (nx - 1) / 2.0, (ny - 1) / 2.0, nx - 0.5, ny - 0.5
    # The centre, the corners and the middles of the sides.
    px = np.array([cx, -0.5, right, -0.5, right, cx, cx, -0.5, right])
    py = np.array([cy, -0.5, -0.5, top, top, -0.5, top, cy, cy])
    ra, dec = frame.to_sky(px, py)
    scale = math.radians(float(np.min(proj_plane_pixel_scales(frame.wcs))))
    if not np.all(np.isfinite(ra)):
        return unit_vectors(0.0, 0.0), math.pi, scale
    v = unit_vectors(ra, dec)
    radius = float(np.max(angle(v[1:], v[0][None, :])))
    return v[0], radius * 1.02 + 2.0 * scale, scale


class _Frame:
    """Pixel <-> ICRS through a celestial WCS, whatever its own sky frame."""

    def __init__(self, wcs: WCS) -> None:
        self.wcs = wcs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                frame = wcs_to_celestial_frame(wcs)
            except ValueError:
                frame = ICRS()
        self._frame = None if isinstance(frame, ICRS) else frame

    def to_sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ICRS ra, dec (degrees) of 0-based pixel positions."""
        with np.errstate(invalid="ignore"):
            lon, lat = self.wcs.all_pix2world(x, y, 0)
        if self._frame is None:
            return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        icrs = SkyCoord(lon, lat, unit="deg", frame=self._frame).icrs
        return np.asarray(icrs.ra.deg), np.asarray(icrs.dec.deg)

    def to_pixels(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel positions of ICRS positions (NaN where the projection has none)."""
        if self._frame is not None:
            native = SkyCoord(ra, dec, unit="deg", frame="icrs").transform_to(self._frame)
            sph = native.spherical
            ra, dec = np.asarray(sph.lon.deg), np.asarray(sph.lat.deg)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = self.wcs.all_world2pix(ra, dec, 0, quiet=True)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def on_image(
        self, points: np.ndarray, nx: int, ny: int, scale: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions of the sky ``points`` (unit vectors) that fall on the image."""
        ra, dec = to_radec(points)
        x, y = self.to_pixels(ra, dec)
        with np.errstate(invalid="ignore"):
            ok = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return x[idx], y[idx]
        back_ra, back_dec = self.to_sky(x[idx], y[idx])
        miss = angle(unit_vectors(back_ra, back_dec), points[idx])
        with np.errstate(invalid="ignore"):
            same = miss <= ROUND_TRIP_PX * scale
        return x[idx][same], y[idx][same]
