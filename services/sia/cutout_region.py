"""Sky regions of a cutout and their boundaries, sampled as dense as a pixel.

A cutout region is a :class:`~qcat.geometry.Circle`, a
:class:`~qcat.geometry.Polygon` (both exact on the sphere) or a
:class:`SkyRange` (the DALI/SODA ``RANGE``: an interval of ra times an
interval of dec). :func:`boundary_curves` describes the region's boundary as
parametric curves ``t in [0, 1] -> unit vector``; :func:`sample_boundary`
samples the parts of them near an image finely enough (a fraction of a
pixel) that the pixel box computed from the samples is exact to the pixel,
without sampling a huge region's whole boundary that finely; it says which
fine samples lie between which coarse ones, so that a caller may map only
the fine samples that can matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qcat.geometry import Circle, Polygon
from qcat.geometry.regions import contains_np
from qcat.geometry.vectors import angle, normalize, to_radec, unit_vectors

#: A boundary curve: parameters in [0, 1] -> (n, 3) unit vectors.
Curve = Callable[[np.ndarray], np.ndarray]

COARSE_SAMPLES = 256  # first pass over every curve
MAX_FINE_SAMPLES = 200_000  # cap on the refined samples of one region


@dataclass(frozen=True)
class SkyRange:
    """``ra_min <= ra <= ra_max`` and ``dec_min <= dec <= dec_max`` (degrees, ICRS).

    ``ra_min > ra_max`` is an interval crossing ra = 0 (e.g. 350 .. 10);
    ``full_ra`` covers every ra.
    """

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float
    full_ra: bool = False

    @property
    def ra_span(self) -> float:
        """Width of the ra interval in degrees."""
        if self.full_ra:
            return 360.0
        return (self.ra_max - self.ra_min) % 360.0


CutoutRegion = Circle | Polygon | SkyRange


def region_contains(region: CutoutRegion, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Which of the positions (degrees) lie in ``region`` (boundary included)."""
    if not isinstance(region, SkyRange):
        return contains_np(region, ra, dec)
    dec = np.asarray(dec, dtype=np.float64)
    in_dec = (dec >= region.dec_min) & (dec <= region.dec_max)
    if region.full_ra:
        return np.asarray(in_dec)
    offset = (np.asarray(ra, dtype=np.float64) - region.ra_min) % 360.0
    return np.asarray(in_dec & (offset <= region.ra_span))


def interior_points(region: CutoutRegion) -> np.ndarray:
    """A few (n, 3) unit vectors inside the region (its centre)."""
    if isinstance(region, Circle):
        return unit_vectors(region.ra, region.dec)[None, :]
    if isinstance(region, Polygon):
        v = unit_vectors(
            np.array([p[0] for p in region.vertices]), np.array([p[1] for p in region.vertices])
        )
        centre = normalize(v.sum(axis=0))
        ra, dec = to_radec(centre)
        return centre[None, :] if bool(contains_np(region, ra, dec)) else np.empty((0, 3))
    mid_ra = region.ra_min + region.ra_span / 2.0
    return unit_vectors(mid_ra, (region.dec_min + region.dec_max) / 2.0)[None, :]


def boundary_curves(region: CutoutRegion) -> list[tuple[Curve, float]]:
    """The region's boundary as curves, each with its length (radians)."""
    if isinstance(region, Circle):
        return [(_circle_curve(region), 2.0 * math.pi * math.sin(math.radians(region.radius)))]
    if isinstance(region, Polygon):
        v = unit_vectors(
            np.array([p[0] for p in region.vertices]), np.array([p[1] for p in region.vertices])
        )
        ends = np.roll(v, -1, axis=0)
        return [(_arc_curve(a, b), float(angle(a, b))) for a, b in zip(v, ends, strict=True)]
    return _range_curves(region)


@dataclass(frozen=True)
class BoundarySamples:
    """Samples of a region's boundary: coarse everywhere, fine in some coarse intervals.

    ``coarse`` holds every curve's coarse samples (in curve order); the
    refined interval ``i`` runs from coarse sample ``ends[i, 0]`` to
    ``ends[i, 1]`` along ``lengths[i]`` radians of boundary, and its fine
    samples are the rows of ``fine`` with ``interval == i``.
    """

    coarse: np.ndarray  # (n, 3) unit vectors
    fine: np.ndarray  # (k, 3) unit vectors
    interval: np.ndarray  # (k,) refined interval of each fine sample
    ends: np.ndarray  # (q, 2) coarse indices
    lengths: np.ndarray  # (q,) radians

    def all(self) -> np.ndarray:
        """Every sample, coarse and fine."""
        return np.concatenate([self.coarse, self.fine])


def sample_boundary(
    region: CutoutRegion, centre: np.ndarray, radius: float, step: float
) -> BoundarySamples:
    """The region's boundary: near the cap, samples at most ``step`` radians apart.

    ``centre`` (unit vector) and ``radius`` (radians) describe a cap holding
    the image; boundary parts farther from it are sampled only coarsely
    (they cannot bound the part of the region inside the image).
    """
    coarse: list[np.ndarray] = []
    fine: list[np.ndarray] = []
    interval: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    budget = MAX_FINE_SAMPLES
    first = 0  # index of the curve's first coarse sample
    refined = 0  # refined intervals so far
    for curve, length in boundary_curves(region):
        t = np.linspace(0.0, 1.0, COARSE_SAMPLES + 1)
        points = curve(t)
        coarse.append(points)
        spacing = length / COARSE_SAMPLES
        near = angle(points, centre[None, :]) <= radius + spacing
        # An interval matters when either end is near the cap.
        wanted = np.flatnonzero(near[:-1] | near[1:])
        if wanted.size and spacing > step:
            per_interval = min(math.ceil(spacing / step), max(budget // wanted.size, 2))
            budget = max(budget - per_interval * wanted.size, 0)
            fractions = np.arange(1, per_interval) / per_interval
            fine_t = (t[wanted][:, None] + fractions[None, :] / COARSE_SAMPLES).ravel()
            fine.append(curve(fine_t))
            ids = refined + np.arange(wanted.size)
            interval.append(np.repeat(ids, per_interval - 1))
            ends.append(np.stack([first + wanted, first + wanted + 1], axis=1))
            lengths.append(np.full(wanted.size, spacing))
            refined += wanted.size
        first += len(points)
    return BoundarySamples(
        np.concatenate(coarse) if coarse else np.empty((0, 3)),
        np.concatenate(fine) if fine else np.empty((0, 3)),
        np.concatenate(interval) if interval else np.empty(0, dtype=np.int64),
        np.concatenate(ends) if ends else np.empty((0, 2), dtype=np.int64),
        np.concatenate(lengths) if lengths else np.empty(0),
    )


def _circle_curve(circle: Circle) -> Curve:
    c = unit_vectors(circle.ra, circle.dec)
    east, north = _tangents(circle.ra, circle.dec)
    r = math.radians(circle.radius)

    def curve(t: np.ndarray) -> np.ndarray:
        theta = 2.0 * math.pi * t[:, None]
        direction = np.cos(theta) * north + np.sin(theta) * east
        return np.asarray(math.cos(r) * c + math.sin(r) * direction)

    return curve


def _tangents(ra_deg: float, dec_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """East and north unit vectors at a position (at a pole, oriented by ``ra``)."""
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    east = np.array([-math.sin(ra), math.cos(ra), 0.0])
    north = np.array([-math.sin(dec) * math.cos(ra), -math.sin(dec) * math.sin(ra), math.cos(dec)])
    return east, north


def _arc_curve(a: np.ndarray, b: np.ndarray) -> Curve:
    """The minor great-circle arc from ``a`` to ``b`` (spherical interpolation)."""
    omega = float(angle(a, b))

    def curve(t: np.ndarray) -> np.ndarray:
        if omega < 1e-15:
            return np.repeat(a[None, :], len(t), axis=0)
        s = math.sin(omega)
        wa = np.sin((1.0 - t) * omega) / s
        wb = np.sin(t * omega) / s
        return normalize(wa[:, None] * a + wb[:, None] * b)

    return curve


def _range_curves(box: SkyRange) -> list[tuple[Curve, float]]:
    span = box.ra_span
    dec_width = box.dec_max - box.dec_min
    d_dec = math.radians(dec_width)

    def meridian(ra: float) -> Curve:
        return lambda t: unit_vectors(np.full_like(t, ra), box.dec_min + t * dec_width)

    def parallel(dec: float) -> Curve:
        return lambda t: unit_vectors(box.ra_min + t * span, np.full_like(t, dec))

    curves: list[tuple[Curve, float]] = [
        (parallel(box.dec_min), math.radians(span) * math.cos(math.radians(box.dec_min))),
        (parallel(box.dec_max), math.radians(span) * math.cos(math.radians(box.dec_max))),
    ]
    if not box.full_ra:
        curves += [(meridian(box.ra_min), d_dec), (meridian(box.ra_max), d_dec)]
    return curves
