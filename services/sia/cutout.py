"""Cut a FITS file to a sky region: pure, no HTTP (SODA's spatial cutout).

Every image HDU with a celestial WCS is cut to the pixel box of the region
(:func:`~services.sia.cutout_box.pixel_box`, computed once for HDUs sharing
a WCS and shape); image HDUs without a WCS but with the shape of a cut HDU
(a variance or mask plane) are cut the same way. HDUs that are neither
(tables, images of other shapes) are left out; the primary header is always
kept. Pixel values are copied raw (``BZERO``/``BSCALE`` kept), so the cutout
holds exactly the stored values.

The work is split so that it stays small whatever the file:

* headers and WCS are parsed once per file (:mod:`~services.sia.cutout_layout`);
* only the box's bytes are read (:mod:`~services.sia.cutout_pixels`);
* the output is card images and raw big-endian bytes
  (:mod:`~services.sia.cutout_fits`), produced block by block, so a cutout
  of a whole CCD streams instead of being built in memory:
  :func:`open_cutout` plans (and raises :class:`NoOverlap`) before any byte
  is produced, then :meth:`CutoutStream.chunks` yields the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.sia.cutout_box import ImageGeometry, PixelBox
from services.sia.cutout_fits import CutHdu, HeaderTemplate, make_templates, padding
from services.sia.cutout_layout import FileLayout, HduLayout, cached_layout, read_layout
from services.sia.cutout_pixels import BLOCK_BYTES, PixelReader, box_bytes
from services.sia.cutout_region import CutoutRegion
from services.sia.soda_errors import NoOverlap


@dataclass(frozen=True)
class HduCut:
    """How one input HDU is cut: its box and the FITS axis numbers of its x and y."""

    index: int
    box: PixelBox
    x_axis: int  # FITS axis number (1-based) of the box's x
    y_axis: int


@dataclass(frozen=True)
class CutoutPlan:
    """The HDUs a cutout keeps: cut image HDUs (by input index), and the primary."""

    cuts: tuple[HduCut, ...]
    naxes: tuple[int, ...]  # NAXIS of every input HDU, for slicing


def plan_cutout(layout: FileLayout, region: CutoutRegion) -> CutoutPlan:
    """The pixel boxes of every image HDU of the file ``layout`` describes.

    Raises :class:`NoOverlap` when the region misses every image.
    """
    cuts: dict[int, HduCut] = {}
    plain: list[int] = []
    boxes: dict[tuple[object, ...], PixelBox | None] = {}
    for hdu in layout.hdus:
        if len(hdu.shape) < 2 or hdu.dtype is None:
            continue
        sky = hdu.sky
        if sky is None:
            plain.append(hdu.index)
            continue
        if sky.key not in boxes:
            with layout.lock:  # WCS objects are shared between requests
                boxes[sky.key] = _geometry(layout, hdu).box(region)
        box = boxes[sky.key]
        if box is not None:
            cuts[hdu.index] = HduCut(hdu.index, box, sky.x_axis, sky.y_axis)
    if not cuts:
        raise NoOverlap("the region does not overlap the image")
    shapes = [h.shape if h.dtype is not None else () for h in layout.hdus]
    for index in plain:
        twin = _twin(index, shapes, cuts)
        if twin is not None:
            cuts[index] = HduCut(index, twin.box, twin.x_axis, twin.y_axis)
    naxes = tuple(len(h.shape) for h in layout.hdus)
    return CutoutPlan(tuple(cuts[i] for i in sorted(cuts)), naxes)


@dataclass(frozen=True)
class _Part:
    """One output HDU: its header bytes and, for a cut, the box to copy."""

    header: bytes
    hdu: HduLayout | None = None
    slices: tuple[slice, ...] = ()
    data_bytes: int = 0


class CutoutStream:
    """A planned cutout: its size in bytes, and its bytes (:meth:`chunks`)."""

    def __init__(self, plan: CutoutPlan, parts: Sequence[_Part], reader: PixelReader) -> None:
        self.plan = plan
        self._parts = tuple(parts)
        self._reader = reader
        self.size = sum(len(p.header) + p.data_bytes + len(padding(p.data_bytes)) for p in parts)

    def chunks(self, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes | memoryview]:
        """The FITS file, a header or about ``block_bytes`` of pixels at a time."""
        try:
            for part in self._parts:
                yield part.header
                if part.hdu is not None:
                    yield from self._reader.blocks(part.hdu, part.slices, block_bytes)
                    if pad := padding(part.data_bytes):
                        yield pad
        finally:
            self.close()

    def read(self) -> bytes:
        """The whole file at once (small cutouts)."""
        return b"".join(self.chunks(block_bytes=max(self.size, 1)))

    def close(self) -> None:
        """Release what reading opened (only tile-compressed images open anything)."""
        self._reader.close()


def open_cutout(source: str | os.PathLike[str] | IO[bytes], region: CutoutRegion) -> CutoutStream:
    """Plan the cutout of the FITS file ``source`` (raises :class:`NoOverlap`), ready to stream.

    A path uses the cached layout and mapping of the file (files are
    immutable); a file object is read afresh with seeks, the box's bytes only
    (this is how tests count the bytes read).
    """
    if isinstance(source, str | os.PathLike):
        layout = cached_layout(Path(source))
    else:
        layout = read_layout(source)
    plan = plan_cutout(layout, region)
    cuts = [CutHdu(layout.hdus[c.index], c.x_axis, c.y_axis) for c in plan.cuts]
    primary, templates = _templates(layout, cuts)
    parts: list[_Part] = []
    if primary is not None:
        parts.append(_Part(primary.render({}, {})))
    for cut, template in zip(plan.cuts, templates, strict=True):
        hdu = layout.hdus[cut.index]
        box = cut.box
        sizes = {cut.x_axis: box.width, cut.y_axis: box.height}
        offsets = {cut.x_axis: box.x0, cut.y_axis: box.y0}
        slices = _slices(cut, hdu.shape)
        header = template.render(sizes, offsets)
        parts.append(_Part(header, hdu, slices, box_bytes(hdu, slices)))
    return CutoutStream(plan, parts, PixelReader(layout, source))


def write_cutout(
    source: str | os.PathLike[str] | IO[bytes], region: CutoutRegion, out: IO[bytes]
) -> CutoutPlan:
    """Write the cutout of the FITS file ``source`` to ``out``; the plan it followed."""
    stream = open_cutout(source, region)
    for chunk in stream.chunks():
        out.write(chunk)
    return stream.plan


def cutout_bytes(path: Path, region: CutoutRegion) -> bytes:
    """The cutout as bytes (small cutouts; see :func:`open_cutout` to stream)."""
    buffer = io.BytesIO()
    write_cutout(path, region, buffer)
    return buffer.getvalue()


def _templates(
    layout: FileLayout, cuts: Sequence[CutHdu]
) -> tuple[HeaderTemplate | None, tuple[HeaderTemplate, ...]]:
    """The header templates of this set of cut HDUs, made once per file and set."""
    key = tuple(c.hdu.index for c in cuts)
    found = layout.templates.get(key)
    if found is None:
        found = make_templates(layout.hdus[0].header, cuts)
        layout.templates[key] = found
    return found


def _geometry(layout: FileLayout, hdu: HduLayout) -> ImageGeometry:
    """The image geometry of ``hdu`` (shared by HDUs with the same WCS), made once."""
    assert hdu.sky is not None
    sky = hdu.sky
    found = layout.geometries.get(sky.key)
    if found is None:
        nx, ny = hdu.shape[sky.x_axis - 1], hdu.shape[sky.y_axis - 1]
        found = layout.geometries[sky.key] = ImageGeometry(sky.wcs, nx, ny)
    return found


def _twin(index: int, shapes: Sequence[tuple[int, ...]], cuts: dict[int, HduCut]) -> HduCut | None:
    """The cut HDU a WCS-less image follows: the nearest earlier one of its shape, else later."""
    same = [i for i in cuts if shapes[i] == shapes[index]]
    earlier = [i for i in same if i < index]
    if earlier:
        return cuts[max(earlier)]
    return cuts[min(same)] if same else None


def _slices(cut: HduCut, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Numpy slices (last FITS axis first) selecting the box, other axes whole."""
    naxis = len(shape)
    slices = [slice(0, n) for n in reversed(shape)]
    slices[naxis - cut.x_axis] = slice(cut.box.x0, cut.box.x1 + 1)
    slices[naxis - cut.y_axis] = slice(cut.box.y0, cut.box.y1 + 1)
    return tuple(slices)
