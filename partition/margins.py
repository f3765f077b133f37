"""Margin (overlap) rows: rows outside a partition but within a width of it.

The margin catalog of partition P holds every row that is not in P and
whose angular distance to P's region is at most the margin width, so a
neighbour search around any row of P can be answered from P plus its
margin.

Finding them: candidates come from the row's pixel and its eight neighbours
at the *margin order*, an order whose pixels are so much wider than the
margin that a disc of that radius around a row never reaches beyond them.
Each candidate partition is then tested exactly: the distance from the row
to the partition's boundary, with the HEALPix edges (which are not great
circles) followed by great-circle arcs between boundary samples at most
:data:`SEGMENT_DEG` apart. A chord of that length departs from the true edge
by less than 0.02 arcsec, which is the tolerance of the test.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np

from partition.layout import HEALPIX_ORDER, PartitionSet

#: Longest boundary segment in the exact distance test, degrees.
SEGMENT_DEG = 0.05
#: Pairs evaluated at once in the distance test (bounds memory).
_PAIR_BLOCK = 1_000_000


def margin_order_for(width_arcsec: float) -> int:
    """Deepest order whose pixels are at least three margin widths across.

    HEALPix pixels of order k are about ``resol(k)`` across and never less
    than about half of that in any direction (the narrowest are near the
    poles), so with ``resol >= 3 * width`` a disc of radius ``width`` around
    a row stays inside the row's pixel and its eight neighbours.
    """
    for order in range(HEALPIX_ORDER, -1, -1):
        resol_arcsec = math.degrees(hp.nside2resol(1 << order)) * 3600
        if resol_arcsec >= 3 * width_arcsec:
            return order
    raise ValueError(f"margin width {width_arcsec} arcsec is too large (at most ~5 degrees)")


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def _boundary(order: int, pixel: int) -> np.ndarray:
    """Unit vectors around the pixel's boundary, at most SEGMENT_DEG apart."""
    edge_deg = math.degrees(hp.nside2resol(1 << order))
    step = max(1, math.ceil(edge_deg * 1.5 / SEGMENT_DEG))
    return np.asarray(hp.boundaries(1 << order, pixel, step=step, nest=True)).T


def _distance_to_polygon_deg(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Angular distance (deg) from unit vectors to a closed polyline of great-circle arcs."""
    a = ring
    b = np.roll(ring, -1, axis=0)
    n = np.cross(a, b)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = np.empty(len(points))
    block = max(1, _PAIR_BLOCK // len(ring))
    for s in range(0, len(points), block):
        p = points[s : s + block]
        # distance to each arc's great circle, valid where the foot lies on the arc
        sin_d = p @ n.T
        foot = p[:, None, :] - sin_d[..., None] * n[None, :, :]
        on_arc = (np.einsum("ijk,jk->ij", np.cross(a[None], foot), n) >= 0) & (
            np.einsum("ijk,jk->ij", np.cross(foot, b[None]), n) >= 0
        )
        d_line = np.abs(np.arcsin(np.clip(sin_d, -1, 1)))
        d_vertex = np.arccos(np.clip(p @ a.T, -1, 1))
        d = np.where(on_arc, np.minimum(d_line, d_vertex), d_vertex)
        out[s : s + block] = d.min(axis=1)
    return np.degrees(out)


def distance_to_pixel_arcsec(
    ra_deg: np.ndarray, dec_deg: np.ndarray, order: int, pixel: int
) -> np.ndarray:
    """Angular distance (arcsec) from each point to the pixel's region; 0 inside."""
    from partition.healpix import radec_to_healpix29

    pts = _unit_vectors(np.asarray(ra_deg, float), np.asarray(dec_deg, float))
    d = _distance_to_polygon_deg(pts, _boundary(order, pixel)) * 3600
    inside = (radec_to_healpix29(ra_deg, dec_deg) >> (2 * (HEALPIX_ORDER - order))) == pixel
    return np.where(inside, 0.0, d)


def margin_pairs(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    healpix29: np.ndarray,
    partitions: PartitionSet,
    width_arcsec: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(row, partition)`` pairs: row lies outside the partition, within ``width``.

    Sorted by partition index, then row.
    """
    h = np.asarray(healpix29, dtype=np.int64)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    if len(h) == 0 or len(partitions) == 0:
        return empty
    k = margin_order_for(width_arcsec)
    shift = 2 * (HEALPIX_ORDER - k)
    pix = h >> shift
    neighbours = hp.get_all_neighbours(1 << k, pix, nest=True)  # (8, n), -1 where none
    cand = np.vstack([pix[None, :], np.asarray(neighbours, dtype=np.int64)])
    rows = np.broadcast_to(np.arange(len(h)), cand.shape).ravel()
    cand = cand.ravel()
    ok = cand >= 0
    rows, cand = rows[ok], cand[ok]
    # partitions overlapping each candidate pixel's order-29 range
    lo, hi = cand << shift, (cand + 1) << shift
    first = np.searchsorted(partitions.ends, lo, side="right")
    last = np.searchsorted(partitions.starts, hi, side="left")
    count = np.maximum(last - first, 0)
    rows = np.repeat(rows, count)
    offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    parts = np.repeat(first, count) + offsets
    own = partitions.locate(h)
    keep = parts != own[rows]
    rows, parts = rows[keep], parts[keep]
    if len(rows) == 0:
        return empty
    pairs = np.unique(parts * len(h) + rows)
    parts, rows = pairs // len(h), pairs % len(h)
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    width_deg = width_arcsec / 3600.0
    selected = np.zeros(len(rows), dtype=bool)
    bounds = np.flatnonzero(np.diff(parts)) + 1
    for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(parts)], strict=True):
        part = partitions[int(parts[s])]
        r = rows[s:e]
        d = _distance_to_polygon_deg(_unit_vectors(ra[r], dec[r]), _boundary(part.order, part.pixel))
        selected[s:e] = d <= width_deg
    return rows[selected].astype(np.int64), parts[selected].astype(np.int64)
