"""``ingest_images``: FITS images into ``ivoa.ObsCore``, as one transaction.

1. Expand the inputs (directories are walked for ``*.fits``, ``*.fit``,
   ``*.fits.gz``, sorted) and read every file's headers and footprint; a
   file without a usable celestial WCS is skipped with its reason (or, with
   ``strict``, fails the whole ingest).
2. Compare with the published ObsCore: an image whose identifier is there
   with the same SHA-256 is skipped; one with other content is an error
   naming the file (nothing is changed).
3. Store the files under ``DATA/images/<collection>/`` (atomic, never
   overwriting; see :mod:`partition.images.storage`).
4. Write the new rows to a Parquet file and append them with
   :func:`partition.ingest.ingest_table`: the new ObsCore version becomes
   visible at one commit. If that fails, the files stored in step 3 are
   removed again.

Ingests of images are serialised by a lock of their own (beside the table
lock ``ingest_table`` takes), so two of them cannot store the same file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from partition.images.footprint import FootprintError, image_footprint
from partition.images.header import HeaderError, read_image_header
from partition.images.rows import (
    OBSCORE_TABLE,
    StoredImage,
    obscore_row,
    obscore_spec,
    obscore_table,
    publisher_did,
)
from partition.images.storage import (
    FITS_SUFFIXES,
    SAFE_NAME,
    Content,
    content_of,
    obs_id_of,
    remove_files,
    store_file,
    stored_relpath,
)
from partition.ingest import PLAIN_FILE, IngestOptions, current_version_or_none, ingest_table
from partition.transaction import table_lock
from qcat.config import SETTINGS
from qcat.errors import ConfigError, IngestError, InputError, QcatError
from qcat.metadata.records import VersionRecord
from qcat.metadata.store import SQLITE_FILE_NAME, MetadataStore
from qcat.progress import progress

#: ObsCore is written sorted by the footprint's lowest declination, in small row groups:
#: a search's constant declination bounds (services/sia/sia_adql.py) then let DuckDB skip
#: the row groups outside them instead of decoding every row (docs/images.md, "Storage").
OBSCORE_ORDER = ("s_dec_min",)
#: DuckDB writes at least 2,048 rows (its vector size) per row group, whatever is asked.
OBSCORE_ROW_GROUP_ROWS = 2048

#: Name of the lock serialising image ingests (``DATA/locks/<name>.lock``).
LOCK_NAME = "ivoa.obscore-images"


@dataclass(frozen=True)
class SkippedImage:
    """An input not ingested, and why."""

    path: Path
    reason: str


@dataclass
class ImageIngestResult:
    """What :func:`ingest_images` did."""

    collection: str
    #: The ObsCore version after the ingest (``None``: there is still none).
    version: VersionRecord | None = None
    rows_added: int = 0
    #: ``obs_publisher_did`` of every image added.
    added: list[str] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Planned:
    source: Path
    stored: StoredImage
    content: Content
    row: dict[str, Any]


def fits_files(inputs: Iterable[Path]) -> list[Path]:
    """Files named by ``inputs``: files as given, directories walked for FITS files (sorted).

    :class:`InputError` for a path that does not exist.
    """
    out: list[Path] = []
    for p in inputs:
        path = Path(p)
        if path.is_dir():
            found = [
                f
                for f in path.rglob("*")
                if f.is_file()
                and not f.name.startswith(".")
                and f.name.lower().endswith(FITS_SUFFIXES)
            ]
            out.extend(sorted(found))
        elif path.is_file():
            out.append(path)
        else:
            raise InputError("no such file or directory", path=str(path))
    return out


def published_obscore(
    data_dir: Path, columns: Sequence[str], filters: Any = None
) -> pa.Table | None:
    """``columns`` of the published ``ivoa.ObsCore`` rows (pyarrow ``filters`` applied);
    ``None`` when the data directory has no ObsCore yet."""
    if not (data_dir / SQLITE_FILE_NAME).exists():
        return None
    store = MetadataStore.for_data_dir(data_dir)
    try:
        version = current_version_or_none(store, OBSCORE_TABLE)
    finally:
        store.close()
    if version is None:
        return None
    return pq.read_table(
        data_dir / version.path / PLAIN_FILE, columns=list(columns), filters=filters
    )


def _published(data_dir: Path) -> dict[str, str]:
    """``obs_publisher_did`` -> ``file_sha256`` of the published ObsCore rows."""
    table = published_obscore(data_dir, ["obs_publisher_did", "file_sha256"])
    if table is None:
        return {}
    return dict(
        zip(
            table.column("obs_publisher_did").to_pylist(),
            table.column("file_sha256").to_pylist(),
            strict=True,
        )
    )


def _check_name(value: str, what: str) -> None:
    if not SAFE_NAME.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} must start with a letter or digit and hold only letters, "
            "digits and _ . + - (it is part of file paths, URLs and IVOA identifiers)"
        )


def ingest_images(
    data_dir: Path,
    collection: str,
    inputs: Sequence[Path],
    *,
    strict: bool = False,
    facility: str | None = None,
    instrument: str | None = None,
    authority: str | None = None,
    show_progress: bool = False,
) -> ImageIngestResult:
    """Ingest the FITS images ``inputs`` (files or directories) into ``collection``.

    Returns the rows added, the files skipped with their reasons and notes
    on values the headers did not give. Raises :class:`IngestError` (nothing
    changed) for an image whose identifier is published with other content,
    and with ``strict=True`` for any file that cannot be ingested.
    ``authority`` defaults to the ``image_authority`` setting.
    """
    _check_name(collection, "collection")
    authority = authority or str(SETTINGS["image_authority"].default)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    result = ImageIngestResult(collection=collection)
    files = fits_files(inputs)
    if not files:
        result.notes.append("no FITS files among the inputs: nothing to do")
        return result
    with table_lock(data_dir, LOCK_NAME):
        planned = _plan(
            data_dir,
            collection,
            authority,
            files,
            result,
            strict,
            facility,
            instrument,
            show_progress,
        )
        if not planned:
            store = MetadataStore.for_data_dir(data_dir)
            try:
                result.version = current_version_or_none(store, OBSCORE_TABLE)
            finally:
                store.close()
            return result
        created: list[Path] = []
        try:
            for item in planned:
                dest = data_dir / item.stored.file_path
                if store_file(item.source, dest, item.content):
                    created.append(dest)
            result.version = _commit(data_dir, [p.row for p in planned])
        except BaseException:
            remove_files(created)
            raise
    result.rows_added = len(planned)
    result.added = [p.stored.did for p in planned]
    return result


def _plan(
    data_dir: Path,
    collection: str,
    authority: str,
    files: list[Path],
    result: ImageIngestResult,
    strict: bool,
    facility: str | None,
    instrument: str | None,
    show_progress: bool,
) -> list[_Planned]:
    """Read every file and decide what to do with it; nothing is written here."""
    published = _published(data_dir)
    planned: list[_Planned] = []
    by_did: dict[str, _Planned] = {}
    with progress("reading image headers", len(files), enabled=show_progress) as bar:
        for path in files:
            bar.advance(1)
            try:
                item = _read(path, collection, authority, facility, instrument, result.notes)
            except (HeaderError, FootprintError, ConfigError, IngestError) as e:
                if strict:
                    raise IngestError(f"{path}: {e}; nothing was ingested (--strict)") from None
                result.skipped.append(SkippedImage(path, str(e)))
                continue
            did = item.stored.did
            earlier = by_did.get(did)
            if earlier is not None:
                same, where = earlier.content == item.content, f"is also {earlier.source}"
            elif did in published:
                same, where = published[did] == item.content.sha256, "is already published"
            else:
                by_did[did] = item
                planned.append(item)
                continue
            if not same:
                raise IngestError(
                    f"{path}: image {did} {where} with different content; nothing was "
                    "ingested (give the file another name or another collection)"
                )
            result.skipped.append(SkippedImage(path, f"already ingested as {did}"))
    return planned


def _read(
    path: Path,
    collection: str,
    authority: str,
    facility: str | None,
    instrument: str | None,
    notes: list[str],
) -> _Planned:
    obs_id = obs_id_of(path)
    _check_name(obs_id, "image name")
    image = read_image_header(path)
    footprint = image_footprint([(i.to_icrs, i.nx, i.ny) for i in image.images])
    content = content_of(path)
    stored = StoredImage(
        collection=collection,
        obs_id=obs_id,
        did=publisher_did(authority, collection, obs_id),
        file_path=stored_relpath(collection, obs_id),
        size=content.size,
        sha256=content.sha256,
    )
    row_notes: list[str] = []
    row = obscore_row(
        image, footprint, stored, facility=facility, instrument=instrument, notes=row_notes
    )
    notes.extend(f"{path}: {n}" for n in [*image.notes, *row_notes])
    return _Planned(path, stored, content, row)


def _commit(data_dir: Path, rows: list[dict[str, Any]]) -> VersionRecord | None:
    """Append ``rows`` to ivoa.ObsCore through the catalog ingest (one commit)."""
    with tempfile.TemporaryDirectory(prefix="qcat-obscore-") as tmp:
        path = Path(tmp) / "obscore-rows.parquet"
        pq.write_table(obscore_table(rows), path)
        try:
            options = IngestOptions(
                show_progress=False,
                plain_order=OBSCORE_ORDER,
                row_group_rows=OBSCORE_ROW_GROUP_ROWS,
            )
            done = ingest_table(data_dir, obscore_spec(), [path], options)
        except QcatError as e:
            raise IngestError(f"{OBSCORE_TABLE}: {e}; no image was ingested") from e
    return done.version
