"""Images by identifier, without the query engine: ``ivoa.ObsCore`` read into memory.

SODA and DataLink look every request's IDs up; going through ADQL and the
workers would cost milliseconds each. :class:`ImageIndex` reads the current
version of the plain ``ivoa.ObsCore`` table (one Parquet file) once, keeps
the rows keyed by ``obs_publisher_did`` and reads it again only when a newer
version has been published (each lookup asks the metadata store for the
current version numbers, one small query). The records, with their checked
paths, are made once per version.

Every record's file path is checked to lie inside ``DATA/images``: a row
pointing elsewhere (a tampered table, ``..``, a symlink out) is not served.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from qcat.errors import NotFoundError
from qcat.metadata.store import MetadataStore

log = logging.getLogger("qcat.images")

OBSCORE_TABLE = "ivoa.ObsCore"
IMAGES_DIR = "images"
PLAIN_FILE = "table.parquet"

_COLUMNS = (
    "obs_publisher_did",
    "obs_collection",
    "obs_id",
    "file_path",
    "s_ra",
    "s_dec",
    "s_fov",
    "s_region",
    "em_min",
    "em_max",
    "t_min",
    "t_max",
    "pol_states",
    "file_format",
    "file_size",
)


@dataclass(frozen=True)
class ImageRecord:
    """What SODA and DataLink need of one image (one ObsCore row)."""

    did: str
    collection: str
    obs_id: str
    path: Path  # absolute, inside DATA/images
    s_ra: float | None
    s_dec: float | None
    s_fov: float | None
    s_region: str
    em_min: float | None
    em_max: float | None
    t_min: float | None
    t_max: float | None
    pol_states: str | None
    file_format: str
    file_size: int | None


class ImageIndex:
    """``obs_publisher_did`` -> :class:`ImageRecord` for the current ObsCore version."""

    def __init__(self, data_dir: Path, *, store: MetadataStore | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.images_dir = (self.data_dir / IMAGES_DIR).resolve()
        self._own_store = store is None
        self._store = store
        self._lock = threading.Lock()
        self._version: int | None = None
        self._rows: dict[str, dict[str, Any]] = {}
        self._records: dict[str, ImageRecord | None] = {}

    def lookup(self, ids: Sequence[str]) -> dict[str, ImageRecord]:
        """The records of the ``ids`` that name an image (unknown ones are left out)."""
        rows, records = self._current()
        found: dict[str, ImageRecord] = {}
        for did in ids:
            if did in records:  # made once per version (it resolves the path)
                record = records[did]
            else:
                row = rows.get(did)
                if row is None:
                    continue
                record = records[did] = self._record(row)
            if record is not None:
                found[did] = record
        return found

    def version(self) -> int | None:
        """The ObsCore version the index holds (``None``: no ObsCore table)."""
        self._current()
        return self._version

    def close(self) -> None:
        """Close the metadata store if this index opened it."""
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

    # -- loading ----------------------------------------------------------------------

    def _current(self) -> tuple[dict[str, dict[str, Any]], dict[str, ImageRecord | None]]:
        """The current version's rows and the records made of them so far."""
        store = self._metadata()
        # One query for the version number; the version's path only when it changed.
        numbers = {name.lower(): n for name, n in store.current_versions().items()}
        number = numbers.get(OBSCORE_TABLE.lower())
        with self._lock:
            if number == self._version:
                return self._rows, self._records
        try:
            version = store.current_version(OBSCORE_TABLE)
        except NotFoundError:
            version = None
        with self._lock:
            number = None if version is None else version.version
            if number != self._version:
                self._rows = {} if version is None else self._load(version.path)
                self._records = {}
                self._version = number
            return self._rows, self._records

    def _metadata(self) -> MetadataStore:
        with self._lock:
            if self._store is None:
                self._store = MetadataStore.for_data_dir(self.data_dir)
            return self._store

    def _load(self, version_path: str) -> dict[str, dict[str, Any]]:
        path = Path(version_path)
        if not path.is_absolute():
            path = self.data_dir / path
        table = pq.read_table(path / PLAIN_FILE)
        names = {n.lower(): n for n in table.column_names}
        columns = {c: table.column(names[c]).to_pylist() for c in _COLUMNS if c in names}
        dids = columns.get("obs_publisher_did", [])
        rows = {
            did: {c: values[i] for c, values in columns.items()}
            for i, did in enumerate(dids)
            if did is not None
        }
        log.info("image index: %d images from %s", len(rows), path)
        return rows

    def _record(self, row: dict[str, Any]) -> ImageRecord | None:
        path = self._checked_path(row.get("file_path"))
        if path is None:
            return None
        return ImageRecord(
            did=row["obs_publisher_did"],
            collection=row.get("obs_collection") or "",
            obs_id=row.get("obs_id") or "",
            path=path,
            s_ra=_float(row.get("s_ra")),
            s_dec=_float(row.get("s_dec")),
            s_fov=_float(row.get("s_fov")),
            s_region=row.get("s_region") or "",
            em_min=_float(row.get("em_min")),
            em_max=_float(row.get("em_max")),
            t_min=_float(row.get("t_min")),
            t_max=_float(row.get("t_max")),
            pol_states=row.get("pol_states"),
            file_format=row.get("file_format") or "image/fits",
            file_size=None if row.get("file_size") is None else int(row["file_size"]),
        )

    def _checked_path(self, relative: str | None) -> Path | None:
        """The stored file's absolute path, or ``None`` if it would lie outside DATA/images."""
        if not relative or Path(relative).is_absolute():
            return None
        path = (self.data_dir / relative).resolve()
        if not path.is_relative_to(self.images_dir):
            log.warning("image path %r is outside %s; not served", relative, self.images_dir)
            return None
        return path


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
