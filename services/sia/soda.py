"""One SODA cutout, from an ID and constraints to FITS bytes (shared by sync and async)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from services.sia.cutout import open_cutout
from services.sia.cutout_pixels import BLOCK_BYTES, mapped_blocks
from services.sia.image_index import ImageIndex, ImageRecord
from services.sia.soda_errors import NotFoundFault
from services.sia.soda_params import Cutout, check_constraints

FITS_MEDIA_TYPE = "image/fits"


def find_image(images: ImageIndex, image_id: str) -> ImageRecord:
    """The image ``image_id`` names; :class:`NotFoundFault` when none (or its file is gone)."""
    record = images.lookup([image_id]).get(image_id)
    if record is None or not record.path.is_file():
        raise NotFoundFault(f"no image has ID {image_id!r}")
    return record


class ByteStream(Protocol):
    """An answer of known size produced block by block (a cutout, or a whole file)."""

    size: int

    def chunks(self, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes | memoryview]:
        """The bytes, in blocks (closes the stream at the end)."""
        ...

    def read(self) -> bytes:
        """All the bytes at once."""
        ...

    def close(self) -> None:
        """Release the stream without reading it."""
        ...


class WholeFile:
    """A file answered as it is, in blocks that are views on its mapping."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as file:
            self.size = os.fstat(file.fileno()).st_size
            # The mapping outlives the file (and any block handed out, the mapping).
            self._mapping = (
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
            )

    def chunks(self, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes | memoryview]:
        """The file's bytes, ``block_bytes`` at a time."""
        try:
            if self._mapping is not None:
                yield from mapped_blocks(self._mapping, 0, self.size, block_bytes)
        finally:
            self.close()

    def read(self) -> bytes:
        """The whole file."""
        return b"".join(self.chunks())

    def close(self) -> None:
        """Let go of the mapping (it is unmapped once no block refers to it)."""
        self._mapping = None


def open_image_cutout(images: ImageIndex, cutout: Cutout) -> tuple[ImageRecord, ByteStream]:
    """The image ``cutout`` names and its answer, planned (errors raised) but not yet read.

    Without a spatial region the whole file is the answer (BAND, TIME and
    POL only decide whether it is one: the demo images have no spectral,
    time or polarization axis to cut).
    """
    record = find_image(images, cutout.id)
    check_constraints(cutout, record)
    if cutout.region is None:
        return record, WholeFile(record.path)
    return record, open_cutout(record.path, cutout.region)


def make_cutout(images: ImageIndex, cutout: Cutout, out: IO[bytes]) -> ImageRecord:
    """Write ``cutout`` as a FITS file to ``out``; the image it came from."""
    record, stream = open_image_cutout(images, cutout)
    for chunk in stream.chunks():
        out.write(chunk)
    return record


def cutout_file_name(record: ImageRecord, region_given: bool) -> str:
    """The file name a client saves the cutout under."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.obs_id) or "image"
    return f"{stem}-cutout.fits" if region_given else f"{stem}.fits"
