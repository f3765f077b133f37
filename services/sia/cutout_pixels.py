"""Reading a box of raw pixels from a FITS file: only its bytes, in blocks.

A box is one slice per numpy axis (the last is FITS ``NAXIS1``). Pixels are
read as stored (big-endian, ``BZERO``/``BSCALE`` not applied) and yielded as
bytes ready to write, block by block along the first axis, so a full-CCD
cutout never sits in memory whole:

* a box whose rows are whole image rows is one contiguous byte range: its
  blocks are views on the file's mapping (:func:`mapped_blocks`), no copy;
* a narrower box is a numpy view on the file's mapping, mapped from the
  box's first row to its last only; copying a block of it touches the pages
  of the box's columns in each row and no other;
* a file object (not cached, no mapping) is read with ``seek`` + ``read``,
  one run of contiguous bytes at a time;
* a tile-compressed image is decompressed by astropy's ``section``.
"""

from __future__ import annotations

import itertools
import mmap
import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
from astropy.io import fits

from services.sia.cutout_layout import FileLayout, HduLayout

#: Bytes per block of output (about; a block is whole rows of the first axis).
BLOCK_BYTES = 1 << 20


def box_bytes(hdu: HduLayout, slices: tuple[slice, ...]) -> int:
    """Bytes of raw pixels in the box ``slices`` of ``hdu``."""
    assert hdu.dtype is not None
    count = 1
    for s in slices:
        count *= s.stop - s.start
    return count * hdu.dtype.itemsize


class PixelReader:
    """Reads boxes of one file: through its cached mapping, or a file object's seeks."""

    def __init__(self, layout: FileLayout, source: str | os.PathLike[str] | IO[bytes]) -> None:
        self.layout = layout
        self.source = source
        self._astropy: fits.HDUList | None = None

    def blocks(
        self, hdu: HduLayout, slices: tuple[slice, ...], block_bytes: int = BLOCK_BYTES
    ) -> Iterator[bytes | memoryview]:
        """The box's raw bytes (big-endian, C order), in blocks of about ``block_bytes``."""
        if hdu.compressed:
            yield self._decompressed(hdu, slices)
            return
        assert hdu.dtype is not None
        full = tuple(reversed(hdu.shape))  # numpy order
        strides = _strides(full, hdu.dtype.itemsize)
        # Axes after `k` are whole: each run of the box is contiguous from axis k on.
        k = len(full) - 1
        while k > 0 and slices[k].start == 0 and slices[k].stop == full[k]:
            k -= 1
        if self.layout.mapping is None:
            yield from self._seek_runs(hdu, slices, strides, k, block_bytes)
        elif k == 0:
            start = hdu.data_offset + slices[0].start * strides[0]
            size = box_bytes(hdu, slices)
            assert self.layout.mapping is not None
            yield from mapped_blocks(self.layout.mapping, start, size, block_bytes)
        else:
            yield from self._mapped(hdu, slices, full, strides, block_bytes)

    def _mapped(
        self,
        hdu: HduLayout,
        slices: tuple[slice, ...],
        full: tuple[int, ...],
        strides: tuple[int, ...],
        block_bytes: int,
    ) -> Iterator[bytes]:
        assert hdu.dtype is not None and self.layout.mapping is not None
        first, last = slices[0].start, slices[0].stop
        rows = map_rows(self.layout, hdu, first, last, full, strides)
        view = rows[(slice(None), *slices[1:])]
        per_block = max(1, block_bytes // max(view[0].nbytes, 1))
        for a in range(0, last - first, per_block):
            stop = hdu.data_offset + min(first + a + per_block, last) * strides[0]
            check_file_holds(self.layout.mapping, stop)
            yield view[a : a + per_block].tobytes()

    def _seek_runs(
        self,
        hdu: HduLayout,
        slices: tuple[slice, ...],
        strides: tuple[int, ...],
        k: int,
        block_bytes: int,
    ) -> Iterator[bytes]:
        source = self.source
        assert not isinstance(source, str | os.PathLike)
        run = (slices[k].stop - slices[k].start) * strides[k]
        outer = [range(s.start, s.stop) for s in slices[:k]]
        buffer = bytearray()
        for index in itertools.product(*outer):
            offset = sum(i * st for i, st in zip(index, strides, strict=False))
            source.seek(hdu.data_offset + offset + slices[k].start * strides[k])
            chunk = source.read(run)
            if len(chunk) != run:
                raise OSError("the FITS file ends inside its data")
            buffer += chunk
            if len(buffer) >= block_bytes:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)

    def _decompressed(self, hdu: HduLayout, slices: tuple[slice, ...]) -> bytes:
        if self._astropy is None:
            source: Any = self.source
            if not isinstance(source, str | os.PathLike):
                source.seek(0)
            self._astropy = fits.open(
                source, lazy_load_hdus=True, do_not_scale_image_data=True, memmap=False
            )
        data = np.asarray(self._astropy[hdu.index].section[slices])
        assert hdu.dtype is not None
        return data.astype(hdu.dtype, copy=False).tobytes()

    def close(self) -> None:
        """Close what reading compressed images opened (never the caller's file object)."""
        if self._astropy is not None and isinstance(self.source, str | os.PathLike):
            self._astropy.close()
        self._astropy = None


def map_rows(
    layout: FileLayout,
    hdu: HduLayout,
    first: int,
    last: int,
    full: tuple[int, ...],
    strides: tuple[int, ...],
) -> np.ndarray:
    """The rows ``first .. last - 1`` (first numpy axis) of ``hdu`` as a view on the mapping."""
    assert layout.mapping is not None and hdu.dtype is not None
    return np.ndarray(
        (last - first, *full[1:]),
        dtype=hdu.dtype,
        buffer=layout.mapping,
        offset=hdu.data_offset + first * strides[0],
    )


def mapped_blocks(
    mapping: mmap.mmap, start: int, size: int, block_bytes: int = BLOCK_BYTES
) -> Iterator[memoryview]:
    """Bytes ``start .. start + size`` of a file's mapping, in blocks that are views on it.

    No copy is made: the socket's send copies from the page cache, the one
    copy a file's bytes need on their way out (``os.sendfile`` makes the
    same one). Each block's pages are read in before it is yielded, in the
    thread that asks for it, so that sending it never waits for the disk:
    large answers produce their blocks in worker threads and send them from
    the event loop (``services/turns.py``).
    """
    if start < 0 or start + size > len(mapping):
        raise OSError("the FITS file ends inside its data")
    view = memoryview(mapping)
    end = start + size
    while start < end:
        stop = min(start + block_bytes, end)
        check_file_holds(mapping, stop)
        _read_in(mapping, start, stop)
        yield view[start:stop]
        start = stop


def check_file_holds(mapping: mmap.mmap, stop: int) -> None:
    """Raise :class:`OSError` unless the mapped file still reaches byte ``stop``.

    Published files never change, but one cut short by hand after it was
    mapped must not take the service down: reading a mapped page past the
    end of its file kills the process (SIGBUS). ``mmap.size()`` is the
    file's size now, so the check is made before each block is touched.
    """
    if mapping.size() < stop:
        raise OSError("the image file was cut short while it was being read")


def _read_in(mapping: mmap.mmap, start: int, stop: int) -> None:
    """Bring bytes ``start .. stop`` of the mapping into memory (one read per page)."""
    aligned = start - start % mmap.PAGESIZE
    if hasattr(mapping, "madvise"):  # read-ahead of the whole block, not page by page
        mapping.madvise(mmap.MADV_WILLNEED, aligned, stop - aligned)
    np.frombuffer(mapping, np.uint8, stop - aligned, aligned)[:: mmap.PAGESIZE].max()


def _strides(full: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides = [itemsize] * len(full)
    for axis in range(len(full) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * full[axis + 1]
    return tuple(strides)
