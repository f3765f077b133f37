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

``all_world2pix`` is iterative when there are distortions, so for TAN images
(:class:`ImageGeometry`) the coarse samples are mapped first and the fine
samples only in the coarse intervals that could move the box or leave the
image; the box is the same as mapping every sample gives. An
:class:`ImageGeometry` also keeps what does not depend on the region (the
image's cap, its outline on the sky) for the next cutout.
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
    BoundarySamples,
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
    return ImageGeometry(wcs, nx, ny).box(region)


class ImageGeometry:
    """An image's celestial WCS and size, with what every box in it shares, computed once.

    Keep one per image (and lock it: astropy's WCS objects are not meant to
    be used by several threads at once) to cut many regions cheaply.
    """

    def __init__(self, wcs: WCS, nx: int, ny: int) -> None:
        self.frame = _Frame(wcs)
        self.nx, self.ny = nx, ny
        self.centre, self.radius, self.scale = _image_cap(self.frame, nx, ny)
        self.coarse_first = _coarse_first_applies(self.frame, nx, ny, self.radius, self.scale)
        self._edge: tuple[np.ndarray, ...] | None = None

    def box(self, region: CutoutRegion) -> PixelBox | None:
        """The pixels of the image that ``region`` touches; ``None`` when it misses them."""
        nx, ny = self.nx, self.ny
        samples = sample_boundary(region, self.centre, self.radius, self.scale / SAMPLES_PER_PIXEL)
        interior = interior_points(region)
        if self.coarse_first:
            xs, ys, all_on = self._coarse_first(samples, interior)
        else:
            xs, ys, valid = self._on_image(np.concatenate([samples.all(), interior]))
            xs, ys, all_on = xs[valid], ys[valid], bool(valid.all())
        if not all_on:  # part of the region lies off the image: add the edge inside it
            ex, ey, ra, dec = self.edge()
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

    def edge(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The image's outline: pixel x, y and ICRS ra, dec of a sample every half pixel."""
        if self._edge is None:
            ex, ey = _edge(self.nx, self.ny)
            ra, dec = self.frame.to_sky(ex, ey)
            self._edge = (ex, ey, ra, dec)
        ex, ey, ra, dec = self._edge
        return ex, ey, ra, dec

    def _coarse_first(
        self, samples: BoundarySamples, interior: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Map the coarse samples, then only the fine ones of intervals that can matter.

        A fine sample lies on the boundary between its interval's two coarse
        ends, so its pixel is within half the interval's length in pixels of
        their midpoint. An interval whose ends are on the image and whose
        reach stays inside the box found so far and inside the image cannot
        move the box, nor leave the image (TAN has no fold on the image's
        side of the sky): its fine samples are skipped. The box is the one
        mapping every sample gives.
        """
        nx, ny = self.nx, self.ny
        points = np.concatenate([samples.coarse, interior])
        x, y, valid = self._on_image(points)
        all_on = bool(valid.all())
        ends = samples.ends
        if ends.size == 0:
            return x[valid], y[valid], all_on
        a, b = ends[:, 0], ends[:, 1]
        # Pixels per radian is at least 1 / (2 scale) on the image (checked when made).
        reach = samples.lengths / self.scale  # half of twice the length in pixels
        mid_x, mid_y = (x[a] + x[b]) / 2.0, (y[a] + y[b]) / 2.0
        if valid.any():
            lo_x, hi_x = x[valid].min(), x[valid].max()
            lo_y, hi_y = y[valid].min(), y[valid].max()
        else:
            lo_x, hi_x, lo_y, hi_y = math.inf, -math.inf, math.inf, -math.inf
        with np.errstate(invalid="ignore"):
            inner = (
                valid[a]
                & valid[b]
                & (mid_x - reach > max(lo_x, -0.5))
                & (mid_x + reach < min(hi_x, nx - 0.5))
                & (mid_y - reach > max(lo_y, -0.5))
                & (mid_y + reach < min(hi_y, ny - 0.5))
            )
        wanted = np.flatnonzero(~inner[samples.interval])
        fx, fy, fine_valid = self._on_image(samples.fine[wanted])
        xs = np.concatenate([x[valid], fx[fine_valid]])
        ys = np.concatenate([y[valid], fy[fine_valid]])
        return xs, ys, all_on and bool(fine_valid.all())

    def _on_image(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixels of the sky ``points`` and which fall on the image.

        A point counts when it is on the image and its pixel maps back to
        the same sky position (a projection can fold far points onto it).
        """
        nx, ny = self.nx, self.ny
        ra, dec = to_radec(points)
        x, y = self.frame.to_pixels(ra, dec)
        with np.errstate(invalid="ignore"):
            ok = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
        idx = np.flatnonzero(ok)
        if idx.size:
            back_ra, back_dec = self.frame.to_sky(x[idx], y[idx])
            miss = angle(unit_vectors(back_ra, back_dec), points[idx])
            with np.errstate(invalid="ignore"):
                ok[idx] = miss <= ROUND_TRIP_PX * self.scale
        return x, y, ok


def _coarse_first_applies(frame: _Frame, nx: int, ny: int, radius: float, scale: float) -> bool:
    """Whether fine samples may be skipped (:meth:`ImageGeometry._coarse_first`).

    It needs a TAN projection (no fold on the image's side of the sky), an
    image well under a hemisphere, and pixels no smaller on the sky than half
    the nominal scale anywhere on the image (checked on a grid).
    """
    if not all(str(t)[4:8] == "-TAN" for t in frame.wcs.wcs.ctype):
        return False
    if radius > math.radians(10.0):
        return False
    grid_x, grid_y = np.meshgrid(np.linspace(-0.5, nx - 0.5, 17), np.linspace(-0.5, ny - 0.5, 17))
    gx, gy = grid_x.ravel(), grid_y.ravel()
    here = unit_vectors(*frame.to_sky(gx, gy))
    for dx, dy in ((1.0, 0.0), (0.0, 1.0), (0.7, 0.7), (0.7, -0.7)):
        step = angle(here, unit_vectors(*frame.to_sky(gx + dx, gy + dy)))
        with np.errstate(invalid="ignore"):
            if not np.all(step >= 0.75 * scale * math.hypot(dx, dy)):
                return False
    return True


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

    def native(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ICRS positions (degrees) in the WCS's own sky frame."""
        if self._frame is None:
            return ra, dec
        sph = SkyCoord(ra, dec, unit="deg", frame="icrs").transform_to(self._frame).spherical
        return np.asarray(sph.lon.deg), np.asarray(sph.lat.deg)

    def to_pixels(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel positions of ICRS positions (NaN where the projection has none)."""
        return self.to_pixels_native(*self.native(ra, dec))

    def to_pixels_native(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel positions of positions in the WCS's frame (distortions solved for)."""
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = self.wcs.all_world2pix(lon, lat, 0, quiet=True)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
