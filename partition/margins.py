"""Margin (overlap) rows: rows outside a partition but within a width of it.

The margin catalog of partition P holds every row that is not in P and whose
angular distance to P's region is at most the margin width, so a neighbour
search of that radius around any row of P is answered by P plus its margin.

How :func:`margin_pairs` finds them, for each row:

1. Candidates. At the *margin order* k (:func:`margin_order_for`) a disc of
   radius ``width`` around a point never leaves the point's pixel and its
   (up to eight) neighbours. Every partition overlapping one of those pixels
   is a candidate, except the row's own partition.
2. What to measure. A candidate partition of order <= k contains the whole
   order-k pixel q it was found through. If the row is within ``width`` of
   the partition, the nearest point of the partition lies in the disc, hence
   in one of those order-k pixels, so measuring the distance to each such q
   decides exactly. A deeper partition is measured to directly. Either way
   the measured pixel is no larger than an order-k pixel, which keeps the
   exact test cheap.
3. Cheap bounds. A disc of :data:`INNER_RADIUS` around a pixel's centre
   lies in the pixel, and all of the pixel lies within ``max_pixrad`` of the
   centre: a centre within ``width + INNER_RADIUS / nside`` accepts, one
   farther than ``width + max_pixrad`` rejects.
4. Exact test. HEALPix edges are not great circles. The boundary is sampled
   (``healpy.boundaries``, ``step`` points per edge) and the distance to the
   closed polyline of great-circle arcs through the samples is computed
   exactly. That polyline lies within ``EDGE_SAG * size / step**2`` of the
   true boundary, so the true distance lies within the same amount of the
   computed one. Pairs this does not decide are sampled twice as densely,
   and again, until the bound is below :func:`margin_tolerance_arcsec`.

All geometry is done on unit vectors, so the RA wrap needs no special case and
the poles none either; at the eight vertices where only three base pixels
meet, pixels have seven neighbours (healpy reports -1 for the missing one).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import healpy as hp
import numpy as np

from partition.layout import HEALPIX_ORDER, Partition, PartitionSet
from qcat.errors import ConfigError
from qcat.geometry.coverage import cells_to_ranges, merge_ranges

ARCSEC_RAD = math.pi / (180.0 * 3600.0)

#: Reach of a pixel's neighbourhood, in radians times ``nside``: from any
#: point of an order-k pixel, the sky outside that pixel and its neighbours is
#: at least ``NEIGHBOURHOOD_REACH / 2**k`` radians away. Measured over every
#: pixel of orders 0-3 and, up to order 9, around the poles, the base-pixel
#: vertices and at random, the smallest such distance is 0.62 / nside (in the
#: polar caps beside the base-pixel boundaries; it tends to 0.625 / nside at
#: high order and is 0.80 / nside at order 0). 0.5 keeps 20% in hand.
NEIGHBOURHOOD_REACH = 0.5

#: Largest gap between a pixel edge and the great-circle arcs through
#: ``step`` uniform samples per edge, as ``EDGE_SAG * size / step**2`` with
#: ``size = sqrt(pi / 3) / nside``. Measured: at most 0.207 (pixels touching
#: the poles, whose edges bend on the scale of the pixel); far from the poles
#: the gap also shrinks with the pixel size. 0.25 keeps 20% in hand.
EDGE_SAG = 0.25

#: Every pixel holds the disc of radius ``INNER_RADIUS / nside`` radians
#: around its centre. Measured smallest centre-to-edge distance: 0.345 / nside
#: (0.50 at order 0, tending to 0.345 at high order). 0.3 keeps 13% in hand.
INNER_RADIUS = 0.3

#: Rounding of the unit-vector arithmetic, radians (2e-9 arcsec).
ROUNDING_RAD = 1e-14

#: Boundary samples per edge in the first exact pass; each later pass doubles it.
FIRST_STEP = 2
#: Most samples per edge ever used; past it the test decides on that sampling.
MAX_STEP = 4096
#: Most samples per edge :func:`distance_to_pixel_arcsec` uses on one pixel;
#: a larger pixel is measured through its sub-pixels instead.
DIRECT_MAX_STEP = 256

#: Work sizes that bound memory: rows per block, candidate (row, partition)
#: pairs per batch, boundary samples held per pass of the distance kernel.
ROW_BLOCK = 1 << 16
CANDIDATE_BUDGET = 1 << 20
SAMPLE_BUDGET = 1 << 18


def margin_order_for(width_arcsec: float) -> int:
    """Deepest HEALPix order whose pixels' neighbourhoods reach past ``width_arcsec``.

    At the returned order k, a disc of radius ``width_arcsec`` around any
    point lies within the point's order-k pixel and its neighbours. The bound
    relied on is :data:`NEIGHBOURHOOD_REACH`: ``width <= 0.5 / 2**k`` radians
    (the measured reach is at least 0.62 / 2**k). 60 arcsec gives order 10,
    1 arcsec order 16, 1 degree order 4. Raises :class:`ConfigError` for a
    width that is not positive and finite or is above 0.5 rad (28.6 degrees).
    """
    width = _width_rad(width_arcsec)
    if width > NEIGHBOURHOOD_REACH:
        limit = NEIGHBOURHOOD_REACH / ARCSEC_RAD
        raise ConfigError(
            f"margin width {width_arcsec} arcsec is too large (width_arcsec); "
            f"at most {limit:.0f} arcsec"
        )
    order = min(HEALPIX_ORDER, math.floor(math.log2(NEIGHBOURHOOD_REACH / width)))
    # log2 can round across an integer; settle the exact condition directly.
    while NEIGHBOURHOOD_REACH / (1 << order) < width:
        order -= 1
    while order < HEALPIX_ORDER and NEIGHBOURHOOD_REACH / (1 << (order + 1)) >= width:
        order += 1
    return order


def margin_tolerance_arcsec(width_arcsec: float) -> float:
    """How close to ``width_arcsec`` a distance may be and still be misjudged.

    :func:`margin_pairs` decides every (row, partition) pair correctly whose
    true distance differs from the width by more than this: 1e-4 of the
    width, at most 1 milliarcsecond (for widths up to about 4.5 degrees;
    beyond, :data:`MAX_STEP` caps the sampling and the bound grows slowly).
    """
    return min(1e-3, 1e-4 * _width_rad(width_arcsec) / ARCSEC_RAD)


def distance_to_pixel_arcsec(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    order: int,
    pixel: int,
    *,
    max_error_arcsec: float = 1e-3,
) -> np.ndarray:
    """Angular distance in arcsec from each point to a NESTED pixel's region; 0 inside.

    Uses the same boundary-polyline kernel as :func:`margin_pairs`, sampled so
    the result is within ``max_error_arcsec`` (at least 1e-6) of the true
    distance. A pixel too large for that is measured through its sub-pixels at a deeper order
    (the distance to a region is the smallest distance to its parts), keeping
    only sub-pixels that can hold the nearest point; the cost stays small for
    points near the pixel and grows for points far from a large pixel.
    """
    if not 0 <= order <= HEALPIX_ORDER:
        raise ValueError(f"order must be between 0 and {HEALPIX_ORDER}, got {order}")
    if not 0 <= pixel < 12 << (2 * order):
        raise ValueError(f"pixel {pixel} does not exist at order {order}")
    if not (math.isfinite(max_error_arcsec) and max_error_arcsec >= 1e-6):
        raise ValueError(f"max_error_arcsec must be at least 1e-6, got {max_error_arcsec}")
    points = _unit_vectors(ra_deg, dec_deg)
    out = np.zeros(len(points))
    if len(points) == 0:
        return out
    error = max_error_arcsec * ARCSEC_RAD
    inside = hp.vec2pix(1 << order, *points.T, nest=True) == pixel
    work_order = order
    while work_order < HEALPIX_ORDER and _sag_bound(work_order, DIRECT_MAX_STEP) > error:
        work_order += 1
    step = 1
    while step < DIRECT_MAX_STEP and _sag_bound(work_order, step) > error:
        step *= 2
    rows, pixels = _nearest_subpixels(points, np.flatnonzero(~inside), order, pixel, work_order)
    d = _polyline_distance(points[rows], work_order, pixels, step)
    starts = _run_starts(rows)
    if len(starts):
        out[rows[starts]] = np.minimum.reduceat(d, starts)
    return out / ARCSEC_RAD


def neighbourhood_ranges(partition: Partition, width_arcsec: float) -> np.ndarray:
    """Order-29 ranges covering every point within ``width_arcsec`` of ``partition``.

    The partition's own range and, at the margin order k of the width
    (:func:`margin_order_for`), the neighbours of the order-k cells along its
    boundary: a point within the width of the partition is within it of a
    boundary cell, so it lies in that cell or a neighbour. A partition
    smaller than an order-k cell is covered by that cell and its neighbours.
    Half-open ranges, shape ``(n, 2)``, sorted and merged; a superset (the
    exact distance test is the caller's).
    """
    k = margin_order_for(width_arcsec)
    order, pixel = partition.order, partition.pixel
    if k <= order:
        # The order-k cell holding the partition stands in for it.
        order, pixel = k, pixel >> (2 * (order - k))
        boundary = np.array([pixel], dtype=np.int64)
    else:
        # In the NESTED scheme a pixel's sub-pixels at order k are the (x, y) cells of
        # its face scaled by n = 2**(k - order): the boundary ones have x or y at an edge.
        x0, y0, face = (int(v) for v in hp.pix2xyf(1 << order, pixel, nest=True))
        n = 1 << (k - order)
        along = np.arange(n, dtype=np.int64)
        first, last = np.zeros(n, dtype=np.int64), np.full(n, n - 1, dtype=np.int64)
        xs = np.concatenate([first, last, along, along]) + x0 * n
        ys = np.concatenate([along, along, first, last]) + y0 * n
        boundary = np.asarray(hp.xyf2pix(1 << k, xs, ys, face, nest=True), dtype=np.int64)
    near = np.asarray(hp.get_all_neighbours(1 << k, boundary, nest=True), dtype=np.int64).ravel()
    cells = np.unique(np.concatenate([boundary, near[near >= 0]]))
    own = cells_to_ranges(order, np.array([pixel], dtype=np.int64))
    return merge_ranges(np.concatenate([own, cells_to_ranges(k, cells)]))


def points_reach_ranges(ra_deg: np.ndarray, dec_deg: np.ndarray, width_arcsec: float) -> np.ndarray:
    """Order-29 ranges covering every point within ``width_arcsec`` of any given point.

    At the margin order k of the width a disc of that radius around a point
    lies in the point's order-k pixel and its neighbours, so those pixels of
    every point, as half-open ranges ``(n, 2)``, sorted and merged, are a
    superset of where a match can be (the exact distance test is the
    caller's). Points with a missing (NaN) or impossible coordinate are left
    out: they are near nothing. Raises :class:`ConfigError` for a width
    :func:`margin_order_for` refuses.
    """
    k = margin_order_for(width_arcsec)
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    usable = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    if not usable.any():
        return np.empty((0, 2), dtype=np.int64)
    nside = 1 << k
    own = np.asarray(
        hp.ang2pix(nside, np.mod(ra[usable], 360.0), dec[usable], nest=True, lonlat=True),
        dtype=np.int64,
    )
    own = np.unique(own)
    near = np.asarray(hp.get_all_neighbours(nside, own, nest=True), dtype=np.int64).ravel()
    return merge_ranges(cells_to_ranges(k, np.concatenate([own, near[near >= 0]])))


def margin_pairs(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    healpix29: np.ndarray,
    partitions: PartitionSet,
    width_arcsec: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(row_index, partition_index)`` pairs: rows in the margin of ``partitions[i]``.

    Row r is in the margin of partition i when r lies outside it and its
    angular distance to the partition's region is at most ``width_arcsec``
    (exact up to :func:`margin_tolerance_arcsec`). ``healpix29`` is each
    row's order-29 index (:func:`partition.healpix.radec_to_healpix29`); rows
    in no partition still join the margins of partitions near them. Both
    arrays are int64, sorted by partition index, then row index.
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    h29 = np.asarray(healpix29, dtype=np.int64)
    if not ra.shape == dec.shape == h29.shape or ra.ndim != 1:
        raise ValueError(
            f"ra, dec and healpix29 must be 1-d and equally long: "
            f"{ra.shape}, {dec.shape}, {h29.shape}"
        )
    order = margin_order_for(width_arcsec)
    width = _width_rad(width_arcsec)
    tolerance = margin_tolerance_arcsec(width_arcsec) * ARCSEC_RAD
    part_order = np.array([p.order for p in partitions], dtype=np.int64)
    part_pixel = np.array([p.pixel for p in partitions], dtype=np.int64)
    part_centre = np.zeros((len(partitions), 3))
    for k in np.unique(part_order).tolist():
        at_k = np.flatnonzero(part_order == k)
        part_centre[at_k] = np.stack(hp.pix2vec(1 << k, part_pixel[at_k], nest=True), axis=-1)
    found_rows: list[np.ndarray] = [np.empty(0, np.int64)]
    found_parts: list[np.ndarray] = [np.empty(0, np.int64)]
    for start in range(0, len(h29) if len(partitions) else 0, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, len(h29))
        points = _unit_vectors(ra[start:stop], dec[start:stop])
        for rows, parts, cells in _candidates(h29[start:stop], partitions, order):
            deep = part_order[parts] > order
            test_order = np.where(deep, part_order[parts], order)
            test_pixel = np.where(deep, part_pixel[parts], cells)
            centres = part_centre[parts]
            if not deep.all():
                shallow = np.flatnonzero(~deep)
                cell_centres = hp.pix2vec(1 << order, cells[shallow], nest=True)
                centres[shallow] = np.stack(cell_centres, axis=-1)
            hit = _within(points[rows], test_order, test_pixel, centres, width, tolerance)
            found_rows.append(rows[hit] + start)
            found_parts.append(parts[hit])
    rows = np.concatenate(found_rows)
    parts = np.concatenate(found_parts)
    by_part = np.lexsort((rows, parts))
    rows, parts = rows[by_part], parts[by_part]
    # A partition shallower than the margin order is met through several pixels.
    first = _run_starts(parts * len(h29) + rows)
    return rows[first], parts[first]


def _width_rad(width_arcsec: float) -> float:
    """The margin width in radians; :class:`ConfigError` unless positive and finite."""
    try:
        width = float(width_arcsec)
    except (TypeError, ValueError):
        width = math.nan
    if not (math.isfinite(width) and width > 0):
        raise ConfigError(
            f"margin width must be a positive number of arcseconds, got {width_arcsec!r} "
            "(width_arcsec)"
        )
    return width * ARCSEC_RAD


def _candidates(
    h29: np.ndarray, partitions: PartitionSet, order: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches of ``(row, partition, order-k cell)`` candidate triples.

    A row's cells are its order-``order`` pixel and that pixel's neighbours;
    a candidate is any partition overlapping one of the cells other than the
    row's own. Batches hold about :data:`CANDIDATE_BUDGET` triples, so many
    small partitions inside one cell cannot exhaust memory.
    """
    shift = 2 * (HEALPIX_ORDER - order)
    home = h29 >> shift
    neighbours = np.asarray(hp.get_all_neighbours(1 << order, home, nest=True), dtype=np.int64)
    cells = np.sort(np.vstack([home[None, :], neighbours]).T, axis=1)
    # Low orders can list a pixel twice; -1 marks missing neighbours.
    cells[:, 1:][cells[:, 1:] == cells[:, :-1]] = -1
    own = partitions.locate(h29)
    # A cell inside the row's own partition overlaps no other partition.
    own_start = np.where(own >= 0, partitions.starts[own], 0)[:, None]
    own_end = np.where(own >= 0, partitions.ends[own], 0)[:, None]
    other = (cells >= 0) & ((cells << shift < own_start) | ((cells + 1) << shift > own_end))
    rows = np.broadcast_to(np.arange(len(h29), dtype=np.int64)[:, None], cells.shape)[other]
    cells = cells[other]
    # Partitions are disjoint ranges sorted by start, so their ends are sorted too.
    first = np.searchsorted(partitions.ends, cells << shift, side="right")
    last = np.searchsorted(partitions.starts, (cells + 1) << shift, side="left")
    count = np.maximum(last - first, 0)
    total = np.cumsum(count)
    i = 0
    while i < len(count):
        done = total[i - 1] if i else 0
        j = max(i + 1, int(np.searchsorted(total, done + CANDIDATE_BUDGET, side="right")))
        c = count[i:j]
        offset = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
        r = np.repeat(rows[i:j], c)
        parts = np.repeat(first[i:j], c) + offset
        cell = np.repeat(cells[i:j], c)
        keep = parts != own[r]
        yield r[keep], parts[keep], cell[keep]
        i = j


def _within(
    points: np.ndarray,
    orders: np.ndarray,
    pixels: np.ndarray,
    centres: np.ndarray,
    width: float,
    tolerance: float,
) -> np.ndarray:
    """Whether each point is within ``width`` (rad) of the pixel paired with it.

    ``centres`` are the pixels' centre vectors. Points are assumed outside
    their pixels. Decided by the centre bounds first (a disc of
    :data:`INNER_RADIUS` around the centre lies in the pixel, and the pixel
    lies within ``max_pixrad`` of it), then by boundary polylines refined
    until the sampling bound is below ``tolerance`` (or :data:`MAX_STEP`).
    """
    to_centre = _angle(points, centres)
    result = np.zeros(len(points), dtype=bool)
    for order in np.unique(orders).tolist():
        idx = np.flatnonzero(orders == order)
        near = to_centre[idx] <= width + INNER_RADIUS / (1 << order)
        result[idx[near]] = True
        pending = idx[~near & (to_centre[idx] - _pixel_radius(order) <= width)]
        step = FIRST_STEP
        while len(pending):
            d = _polyline_distance(points[pending], order, pixels[pending], step)
            sag = _sag_bound(order, step)
            if sag <= tolerance or step >= MAX_STEP:
                result[pending] = d <= width
                break
            result[pending[d + sag <= width]] = True
            pending = pending[(d + sag > width) & (d - sag <= width)]
            step *= 2
    return result


def _nearest_subpixels(
    points: np.ndarray, rows: np.ndarray, order: int, pixel: int, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixels at ``target`` of ``(order, pixel)`` that may hold each row's nearest point.

    Returns ``(row, sub-pixel)`` pairs, rows ascending. A sub-pixel is
    dropped when even its nearest possible point (centre distance minus
    radius) is farther than some sibling's centre, which lies in the region.
    """
    pixels = np.full(len(rows), pixel, dtype=np.int64)
    for deeper in range(order + 1, target + 1):
        rows = np.repeat(rows, 4)
        pixels = (np.repeat(pixels, 4) << 2) + np.tile(np.arange(4, dtype=np.int64), len(pixels))
        centres = np.stack(hp.pix2vec(1 << deeper, pixels, nest=True), axis=-1)
        to_centre = _angle(points[rows], centres)
        starts = _run_starts(rows)
        nearest = np.minimum.reduceat(to_centre, starts)
        bound = np.repeat(nearest, np.diff(np.r_[starts, len(rows)]))
        keep = to_centre - _pixel_radius(deeper) <= bound
        rows, pixels = rows[keep], pixels[keep]
    return rows, pixels


def _polyline_distance(points: np.ndarray, order: int, pixels: np.ndarray, step: int) -> np.ndarray:
    """Distance (rad) from each point to the sampled boundary of the pixel paired with it.

    The boundary is the closed polyline of great-circle arcs through
    ``step`` samples per edge. For each arc, the nearest point is either the
    foot of the perpendicular onto its great circle (when that foot lies on
    the arc) or one of its ends.
    """
    out = np.empty(len(points))
    samples = 4 * step
    block = max(1, SAMPLE_BUDGET // samples)
    # Sorting by pixel lets a block share each pixel's boundary among its points.
    by_pixel = np.argsort(pixels, kind="stable")
    for start in range(0, len(points), block):
        sel = by_pixel[start : start + block]
        unique, which = np.unique(pixels[sel], return_inverse=True)
        bounds = hp.boundaries(1 << order, unique, step=step, nest=True)
        ends = np.reshape(bounds, (len(unique), 3, samples)).transpose(0, 2, 1)
        nexts = np.roll(ends, -1, axis=1)
        normals = _cross(ends, nexts)
        length = np.linalg.norm(normals, axis=-1)
        normals /= np.where(length > 0, length, 1.0)[..., None]
        # p . past_start >= 0 and p . before_end >= 0: the foot lies on the arc.
        past_start = _cross(normals, ends)
        before_end = _cross(nexts, normals)
        arcs = np.stack([ends, normals, past_start, before_end], axis=2)
        p = points[sel]
        mine = arcs[which]
        dots = np.einsum("bmjk,bk->bmj", mine[:, :, 1:], p)
        on_arc = (length[which] > 0) & (dots[..., 1] >= 0) & (dots[..., 2] >= 0)
        # sin(distance to an arc's great circle) = |p . normal|; arcsin is monotonic.
        sin_across = np.where(on_arc, np.abs(dots[..., 0]), np.inf).min(axis=1)
        to_arcs = np.where(np.isfinite(sin_across), np.arcsin(np.minimum(sin_across, 1.0)), np.inf)
        # Vertices by their chords, not dot products, which lose small angles.
        offset = mine[:, :, 0] - p[:, None, :]
        chord = np.sqrt(np.einsum("bmk,bmk->bm", offset, offset).min(axis=1))
        out[sel] = np.minimum(2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0)), to_arcs)
    return out


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Indices where each run of equal values in a sorted array begins."""
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]])


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors of positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cross product over the last axis (numpy's own is slow on small vectors)."""
    ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx], axis=-1)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle (rad) between unit vectors, from the chord (exact at small angles)."""
    chord = np.linalg.norm(u - v, axis=-1)
    return 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))


def _pixel_radius(order: int) -> float:
    """Upper bound (rad) on the distance from a pixel's centre to any of its points."""
    # max_pixrad is attained at a corner; the edges never bulge past it (checked).
    return float(hp.max_pixrad(1 << order)) * (1 + 1e-9) + ROUNDING_RAD


def _sag_bound(order: int, step: int) -> float:
    """Bound (rad) on the gap between a pixel's true boundary and its sampled polyline."""
    size = math.sqrt(math.pi / 3.0) / (1 << order)
    return EDGE_SAG * size / step**2 + ROUNDING_RAD
