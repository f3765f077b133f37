"""Images: FITS headers -> ObsCore rows in ``ivoa.ObsCore`` (``qcat ingest-images``).

Modules, one concept each: :mod:`~partition.images.header` (what a FITS
file's headers say), :mod:`~partition.images.footprint` (the polygon on the
sky), :mod:`~partition.images.bands` (filter -> wavelengths),
:mod:`~partition.images.times` (time range), :mod:`~partition.images.rows`
(ObsCore rows), :mod:`~partition.images.storage` (stored copies) and
:mod:`~partition.images.ingest` (the transaction). See docs/images.md.
"""

from partition.images.ingest import ImageIngestResult, SkippedImage, ingest_images
from partition.images.rows import OBSCORE_TABLE, obscore_spec, publisher_did

__all__ = [
    "OBSCORE_TABLE",
    "ImageIngestResult",
    "SkippedImage",
    "ingest_images",
    "obscore_spec",
    "publisher_did",
]
