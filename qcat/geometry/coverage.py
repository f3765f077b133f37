"""Which HEALPix cells a region touches: conservative ``_healpix_29`` ranges.

The coverage is built top-down. A NESTED pixel of order k lies within
``R_k`` of its centre, where ``R_k`` is healpy's ``max_pixrad`` (the largest
centre-to-corner distance at that order) widened by :data:`RADIUS_SLACK`. A
pixel is kept when its centre is within ``R_k`` (plus :data:`ROUNDING_RAD`)
of the region, so a kept pixel may touch the region and a dropped one cannot:

    if a point p of the region lies in pixel P, then
    distance(centre(P), region) <= distance(centre(P), p) <= R_k.

Kept pixels whose centre is deeper than ``R_k`` inside the region lie wholly
inside and are not refined; the others are split into their four children
and tested again, one order deeper, until order 29 or until the next order
would hold more than ``budget`` cells. Every point of the region stays in a
kept pixel at every order (its ancestors were all kept), so the union is a
superset. Finally neighbouring ranges are joined across the smallest gaps
until at most ``max_ranges`` remain, the smallest superset with that many
ranges. The tests check the bound on ``R_k`` and the superset property on
random and near-boundary points.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np

from partition.layout import HEALPIX_ORDER, Partition, PartitionSet
from qcat.geometry.errors import GeometryError
from qcat.geometry.regions import Circle, Region, as_shape, signed_distance

#: ``max_pixrad`` is attained at a corner; 1% more covers any bulge of curved edges.
RADIUS_SLACK = 1.01
#: Rounding of the unit-vector distances and of healpy's pixel assignment (radians).
ROUNDING_RAD = 1e-12
#: Most cells refined at one order (bounds the work per region).
DEFAULT_BUDGET = 4096
#: Ranges the chunk selection works with before matching partitions.
CHUNK_RANGES = 4096


def pixel_radius(order: int) -> float:
    """Upper bound (radians) on the distance from a pixel centre to any point of the pixel."""
    return float(hp.max_pixrad(1 << order)) * RADIUS_SLACK + ROUNDING_RAD


def cells_to_ranges(order: int, cells: np.ndarray) -> np.ndarray:
    """Half-open order-29 ranges of NESTED cells at ``order``, shape ``(n, 2)``."""
    shift = 2 * (HEALPIX_ORDER - order)
    cells = np.asarray(cells, dtype=np.int64)
    return np.stack([cells << shift, (cells + 1) << shift], axis=-1)


def merge_ranges(ranges: np.ndarray) -> np.ndarray:
    """Sorted, disjoint, non-touching union of half-open ranges."""
    r = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    if len(r) == 0:
        return r
    r = r[np.argsort(r[:, 0], kind="stable")]
    ends = np.maximum.accumulate(r[:, 1])
    # A range starts a new run when it begins after everything before it ended.
    new = np.r_[True, r[1:, 0] > ends[:-1]]
    starts = r[new, 0]
    last = np.r_[np.flatnonzero(new)[1:] - 1, len(r) - 1]
    return np.stack([starts, ends[last]], axis=-1)


def limit_ranges(ranges: np.ndarray, max_ranges: int) -> np.ndarray:
    """At most ``max_ranges`` ranges covering ``ranges``, filling the smallest gaps first.

    Filling the smallest gaps gives the smallest possible total length for
    that number of ranges, so the result is the tightest such superset.
    """
    if max_ranges < 1:
        raise GeometryError(f"max_ranges must be at least 1, got {max_ranges}")
    r = merge_ranges(ranges)
    if len(r) <= max_ranges:
        return r
    gaps = r[1:, 0] - r[:-1, 1]
    fill = np.argsort(gaps, kind="stable")[: len(r) - max_ranges]
    keep_break = np.ones(len(gaps), dtype=bool)
    keep_break[fill] = False
    new = np.r_[True, keep_break]
    starts = r[new, 0]
    last = np.r_[np.flatnonzero(new)[1:] - 1, len(r) - 1]
    return np.stack([starts, r[last, 1]], axis=-1)


def cover(region: Region, *, margin_deg: float = 0.0, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """Merged order-29 ranges covering every point within ``margin_deg`` of ``region``."""
    if not (math.isfinite(margin_deg) and margin_deg >= 0.0):
        raise GeometryError(f"margin must be a non-negative number of degrees, got {margin_deg!r}")
    margin = math.radians(margin_deg)
    order, cells = _first_cells(region, margin)
    found: list[np.ndarray] = []
    while True:
        centres = np.stack(hp.pix2vec(1 << order, cells, nest=True), axis=-1)
        s = signed_distance(region, centres) - margin
        reach = pixel_radius(order)
        kept = s <= reach
        whole = s <= -reach
        found.append(cells_to_ranges(order, cells[whole]))
        partial = cells[kept & ~whole]
        if order == HEALPIX_ORDER or len(partial) == 0 or 4 * len(partial) > budget:
            found.append(cells_to_ranges(order, partial))
            break
        cells = (partial[:, None] * 4 + np.arange(4, dtype=np.int64)).ravel()
        order += 1
    return merge_ranges(np.concatenate(found))


def _first_cells(region: Region, margin: float) -> tuple[int, np.ndarray]:
    """Where the refinement of :func:`cover` starts: order 0, or for a small circle
    the deepest order whose pixels are at least twice its (grown) radius.

    Above that order no pixel can lie wholly inside the circle, so nothing is
    found there; the start cells are every pixel whose centre is within
    ``R_k`` (plus the rounding allowance) of the circle, a superset of the
    pixels the refinement from order 0 would have kept at that order.
    Skipping the empty orders saves most of the work for a small cone.
    """
    whole_sky = (0, np.arange(12, dtype=np.int64))
    shape = as_shape(region)
    if not isinstance(shape, Circle):
        return whole_sky
    radius = math.radians(shape.radius) + margin
    order = 0
    while order < HEALPIX_ORDER and pixel_radius(order + 1) >= 2.0 * radius:
        order += 1
    if order == 0:
        return whole_sky
    # healpy lists exactly the pixels whose centres lie within the disc (not inclusive).
    reach = radius + pixel_radius(order) + ROUNDING_RAD
    cells = hp.query_disc(1 << order, shape.vector, reach, inclusive=False, nest=True)
    return order, np.sort(np.asarray(cells, dtype=np.int64))


def region_ranges(
    region: Region,
    max_ranges: int = 64,
    *,
    margin_deg: float = 0.0,
    budget: int = DEFAULT_BUDGET,
) -> np.ndarray:
    """Half-open ``_healpix_29`` ranges, shape ``(n, 2)`` with ``n <= max_ranges``, whose
    union holds every point of ``region`` (grown by ``margin_deg``).

    Sorted and disjoint; a superset of the region, as tight as the refinement
    ``budget`` (see :func:`cover`) and ``max_ranges`` allow.
    """
    return limit_ranges(cover(region, margin_deg=margin_deg, budget=budget), max_ranges)


def _overlapping(ranges: np.ndarray, parts: PartitionSet) -> list[Partition]:
    """Partitions whose order-29 range meets one of the sorted disjoint ``ranges``."""
    if len(ranges) == 0 or len(parts) == 0:
        return []
    # The last range starting before a partition's end is the only one that can reach it.
    idx = np.searchsorted(ranges[:, 0], parts.ends, side="left") - 1
    hit = (idx >= 0) & (ranges[np.clip(idx, 0, None), 1] > parts.starts)
    return [parts[int(i)] for i in np.flatnonzero(hit)]


def chunks_for_region(
    region: Region, parts: PartitionSet, *, max_ranges: int = CHUNK_RANGES
) -> list[Partition]:
    """The chunks (partitions) that can hold points of ``region``, in ``_healpix_29`` order."""
    return _overlapping(region_ranges(region, max_ranges), parts)


def chunks_within(
    region: Region, parts: PartitionSet, margin_deg: float, *, max_ranges: int = CHUNK_RANGES
) -> list[Partition]:
    """The chunks that can hold points within ``margin_deg`` of ``region`` (neighbour joins)."""
    return _overlapping(region_ranges(region, max_ranges, margin_deg=margin_deg), parts)
