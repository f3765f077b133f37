"""The catalog the demo images are rendered from: positions and ugrizy magnitudes.

Only what the renderer needs is kept (ids, positions, magnitudes, star or
galaxy), as plain numpy arrays. Objects come from the demo Object table, either
in memory (Arrow) or from its Parquet files; reading files keeps only the
objects inside given sky circles, so a 10M-object catalog costs one streaming
pass and little memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qcat.demo.photometry import BANDS
from qcat.demo.sky import unit_vectors

#: Object-table columns read for rendering.
CATALOG_COLUMNS: tuple[str, ...] = (
    "objectId",
    "coord_ra",
    "coord_dec",
    "refExtendedness",
    *(f"{band}_psfMag" for band in BANDS),
)


@dataclass(frozen=True)
class SkyCircle:
    """A circle on the sky (degrees) used to select catalog objects."""

    ra: float
    dec: float
    radius_deg: float

    def contains(self, vectors: np.ndarray) -> np.ndarray:
        """Which unit vectors (shape ``(n, 3)``) lie inside the circle."""
        centre = unit_vectors(np.array([self.ra]), np.array([self.dec]))[0]
        return np.asarray(vectors @ centre >= np.cos(np.radians(self.radius_deg)))


@dataclass(frozen=True)
class ImageCatalog:
    """Objects to draw: arrays of equal length ``n``; ``mags`` has shape ``(n, 6)``.

    Magnitudes are AB, NaN where the catalog has none (such objects are not
    drawn in that band). ``extended`` marks galaxies (drawn wider than the PSF).
    """

    object_id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    mags: np.ndarray
    extended: np.ndarray

    def __len__(self) -> int:
        return len(self.ra)

    @property
    def vectors(self) -> np.ndarray:
        """Unit vectors of the positions, shape ``(n, 3)``."""
        return unit_vectors(self.ra, self.dec)

    def take(self, keep: np.ndarray) -> ImageCatalog:
        """The objects selected by a boolean mask or index array."""
        return ImageCatalog(
            object_id=self.object_id[keep],
            ra=self.ra[keep],
            dec=self.dec[keep],
            mags=self.mags[keep],
            extended=self.extended[keep],
        )

    @classmethod
    def from_arrow(cls, data: pa.Table | pa.RecordBatch) -> ImageCatalog:
        """Read the :data:`CATALOG_COLUMNS` of demo.Object rows."""

        def column(name: str) -> np.ndarray:
            values = data.column(name)
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)

        mags = np.column_stack([column(f"{band}_psfMag") for band in BANDS])
        # A NULL extendedness (unclassified, faint) is drawn as a point source.
        extendedness = np.nan_to_num(column("refExtendedness"), nan=0.0)
        return cls(
            object_id=np.asarray(data.column("objectId").to_numpy(), dtype=np.int64),
            ra=column("coord_ra"),
            dec=column("coord_dec"),
            mags=mags,
            extended=extendedness > 0.5,
        )

    @classmethod
    def concat(cls, parts: Sequence[ImageCatalog]) -> ImageCatalog:
        """One catalog holding all ``parts`` in order."""
        if not parts:
            empty = np.empty(0)
            return cls(
                np.empty(0, np.int64), empty, empty, np.empty((0, len(BANDS))), empty.astype(bool)
            )
        return cls(
            object_id=np.concatenate([p.object_id for p in parts]),
            ra=np.concatenate([p.ra for p in parts]),
            dec=np.concatenate([p.dec for p in parts]),
            mags=np.concatenate([p.mags for p in parts]),
            extended=np.concatenate([p.extended for p in parts]),
        )

    def within(self, circles: Iterable[SkyCircle]) -> ImageCatalog:
        """The objects inside any of ``circles``."""
        vectors = self.vectors
        keep = np.zeros(len(self), dtype=bool)
        for circle in circles:
            keep |= circle.contains(vectors)
        return self.take(keep)


def read_catalog(
    paths: Sequence[Path], circles: Sequence[SkyCircle], *, batch_rows: int = 500_000
) -> ImageCatalog:
    """The objects of demo.Object Parquet files that lie inside any of ``circles``."""
    parts: list[ImageCatalog] = []
    for path in paths:
        with pq.ParquetFile(path) as reader:
            for batch in reader.iter_batches(batch_size=batch_rows, columns=list(CATALOG_COLUMNS)):
                part = ImageCatalog.from_arrow(batch).within(circles)
                if len(part):
                    parts.append(part)
    return ImageCatalog.concat(parts)
