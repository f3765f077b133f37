"""One SODA cutout, from an ID and constraints to FITS bytes (shared by sync and async)."""

from __future__ import annotations

import shutil
from typing import IO

from services.sia.cutout import write_cutout
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


def make_cutout(images: ImageIndex, cutout: Cutout, out: IO[bytes]) -> ImageRecord:
    """Write ``cutout`` as a FITS file to ``out``; the image it came from.

    Without a spatial region the whole file is the answer (BAND, TIME and
    POL only decide whether it is one: the demo images have no spectral,
    time or polarization axis to cut).
    """
    record = find_image(images, cutout.id)
    check_constraints(cutout, record)
    if cutout.region is None:
        with record.path.open("rb") as source:
            shutil.copyfileobj(source, out)
    else:
        write_cutout(record.path, cutout.region, out)
    return record


def cutout_file_name(record: ImageRecord, region_given: bool) -> str:
    """The file name a client saves the cutout under."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.obs_id) or "image"
    return f"{stem}-cutout.fits" if region_given else f"{stem}.fits"
