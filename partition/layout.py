"""HATS partition layout: which (order, pixel) partitions tile the sky.

Partitions are NESTED HEALPix pixels of varying order that tile the sphere
without overlap (empty sky simply has no partition). In NESTED numbering a
pixel ``p`` of order ``k`` covers exactly the order-29 indices
``[p << 2(29-k), (p+1) << 2(29-k))``, so a layout is a sorted list of
disjoint ``_healpix_29`` ranges and locating a row is one binary search.

The adaptive layout follows HATS: start from order-0 pixels and split a pixel
into its four children while it holds more than ``threshold`` rows and the
highest order is not reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

HEALPIX_ORDER = 29  # order of the per-row ``_healpix_29`` index


@dataclass(frozen=True, order=True)
class Partition:
    """One HATS partition: NESTED pixel ``pixel`` at HEALPix order ``order``."""

    order: int
    pixel: int

    @property
    def shift(self) -> int:
        """Bits between this order and order 29."""
        return 2 * (HEALPIX_ORDER - self.order)

    @property
    def lo29(self) -> int:
        """First ``_healpix_29`` value inside the partition."""
        return self.pixel << self.shift

    @property
    def hi29(self) -> int:
        """First ``_healpix_29`` value after the partition (exclusive end)."""
        return (self.pixel + 1) << self.shift

    @property
    def dir(self) -> int:
        """HATS directory number: pixels are grouped by ten thousands."""
        return (self.pixel // 10_000) * 10_000

    @property
    def path(self) -> str:
        """Path of the partition file relative to the catalog's ``dataset/``."""
        return f"Norder={self.order}/Dir={self.dir}/Npix={self.pixel}.parquet"

    def __str__(self) -> str:
        return f"Norder={self.order}/Npix={self.pixel}"


class PartitionSet:
    """An ordered set of disjoint partitions with vectorised row lookup."""

    def __init__(self, partitions: Iterable[Partition]) -> None:
        parts = sorted(set(partitions), key=lambda p: p.lo29)
        self.partitions: tuple[Partition, ...] = tuple(parts)
        self.starts = np.array([p.lo29 for p in parts], dtype=np.int64)
        self.ends = np.array([p.hi29 for p in parts], dtype=np.int64)
        if len(parts) > 1 and np.any(self.starts[1:] < self.ends[:-1]):
            raise ValueError("partitions overlap")

    def __len__(self) -> int:
        return len(self.partitions)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.partitions)

    def __getitem__(self, i: int) -> Partition:
        return self.partitions[i]

    def orders_and_pixels(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HATS ``Norder`` (uint8) and ``Npix`` (int64) of partitions by index."""
        if not hasattr(self, "_orders"):
            self._orders = np.array([p.order for p in self.partitions], dtype=np.uint8)
            self._pixels = np.array([p.pixel for p in self.partitions], dtype=np.int64)
        return self._orders[index], self._pixels[index]

    def locate(self, healpix29: np.ndarray) -> np.ndarray:
        """Index into this set of the partition holding each value, or -1."""
        h = np.asarray(healpix29, dtype=np.int64)
        idx = np.searchsorted(self.starts, h, side="right") - 1
        inside = (idx >= 0) & (h < self.ends[np.clip(idx, 0, None)])
        return np.where(inside, idx, -1)


def adaptive_layout(
    counts: dict[int, int] | Sequence[tuple[int, int]] | tuple[np.ndarray, np.ndarray],
    count_order: int,
    *,
    threshold: int,
    lowest_order: int = 0,
    highest_order: int | None = None,
) -> list[tuple[Partition, int]]:
    """Choose partitions from row counts per pixel at ``count_order``.

    ``counts`` maps order-``count_order`` NESTED pixels to their row counts
    (pixels without rows may be absent): a mapping, ``(pixel, count)`` pairs,
    or two arrays ``(pixels, counts)``. A pixel is split into its four
    children while it holds more than ``threshold`` rows, it is shallower
    than ``highest_order`` (default ``count_order``), and splitting is
    possible. Pixels without rows get no partition. Returns
    ``(partition, rows)`` pairs in ``_healpix_29`` order.
    """
    top = count_order if highest_order is None else min(highest_order, count_order)
    if lowest_order > top:
        raise ValueError("lowest_order is above highest_order")
    if isinstance(counts, tuple) and len(counts) == 2 and isinstance(counts[0], np.ndarray):
        pix, cnt = (np.asarray(a, dtype=np.int64) for a in counts)
    else:
        items = dict(counts)
        pix = np.fromiter(items.keys(), dtype=np.int64, count=len(items))
        cnt = np.fromiter(items.values(), dtype=np.int64, count=len(items))
    order = np.argsort(pix, kind="stable")
    pix, cnt = pix[order], cnt[order]
    out: list[tuple[Partition, int]] = []

    def visit(order: int, pixel: int, lo: int, hi: int) -> None:
        # [lo, hi) is the slice of ``pix`` inside this pixel
        if lo >= hi:
            return
        total = int(cnt[lo:hi].sum())
        if total == 0:
            return
        if order >= lowest_order and (total <= threshold or order >= top):
            out.append((Partition(order, pixel), total))
            return
        shift = 2 * (count_order - order - 1)
        for child in range(4 * pixel, 4 * pixel + 4):
            c_lo = int(np.searchsorted(pix, child << shift, side="left"))
            c_hi = int(np.searchsorted(pix, (child + 1) << shift, side="left"))
            visit(order + 1, child, c_lo, c_hi)

    shift0 = 2 * count_order
    for base in range(12):
        lo = int(np.searchsorted(pix, base << shift0, side="left"))
        hi = int(np.searchsorted(pix, (base + 1) << shift0, side="left"))
        visit(0, base, lo, hi)
    return out
