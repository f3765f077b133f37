"""Stored image files: ``DATA/images/<collection>/<obs_id>.fits``, immutable.

A copy is written to a temporary name in the destination directory,
fsynced, then linked to its final name (``os.link`` fails when the name
exists, so a file is never overwritten, not even by a concurrent ingest) and
the directory is fsynced. A gzip-compressed input is stored decompressed:
SODA reads sections of the file in place, which needs plain FITS.
The SHA-256 and size recorded in ObsCore are those of the stored bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from qcat.errors import IngestError

IMAGES_DIR = "images"
_CHUNK = 1 << 20
#: Names allowed for collections and obs_ids: safe in a path, a URL and an IVOA identifier.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]*")
FITS_SUFFIXES = (".fits.gz", ".fits", ".fit")


@dataclass(frozen=True)
class Content:
    """What a file holds once stored: SHA-256 (hex) and size of the (decompressed) bytes."""

    sha256: str
    size: int


def obs_id_of(path: Path) -> str:
    """The file name without ``.fits``, ``.fits.gz`` or ``.fit`` (any case)."""
    name = path.name
    for suffix in FITS_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def stored_relpath(collection: str, obs_id: str) -> str:
    """The stored file's path relative to the data directory."""
    return f"{IMAGES_DIR}/{collection}/{obs_id}.fits"


@contextlib.contextmanager
def _open_content(path: Path) -> Iterator[BinaryIO]:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as f:
            yield f  # type: ignore[misc]
    else:
        with path.open("rb") as f:
            yield f


def content_of(path: Path) -> Content:
    """The SHA-256 and size ``path`` will have when stored (gzip inputs decompressed)."""
    digest, size = hashlib.sha256(), 0
    try:
        with _open_content(path) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, EOFError) as e:
        raise IngestError(f"{path}: cannot read ({e})") from None
    return Content(digest.hexdigest(), size)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_file(source: Path, dest: Path, expected: Content) -> bool:
    """Copy ``source`` to ``dest`` atomically; return whether a new file was created.

    When ``dest`` already holds exactly ``expected`` nothing is written
    (``False``); when it holds anything else, :class:`IngestError`. The copy
    must match ``expected`` (the file must not change while it is ingested).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        return _same_or_fail(dest, expected, source)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{time.time_ns()}")
    try:
        digest, size = hashlib.sha256(), 0
        with _open_content(source) as src, tmp.open("xb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if Content(digest.hexdigest(), size) != expected:
            raise IngestError(f"{source}: the file changed while it was being ingested")
        try:
            os.link(tmp, dest)
        except FileExistsError:
            return _same_or_fail(dest, expected, source)
        _fsync_dir(dest.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _same_or_fail(dest: Path, expected: Content, source: Path) -> bool:
    if content_of(dest) == expected:
        return False
    raise IngestError(
        f"{source}: {dest} already exists with different content (left by an earlier, "
        "interrupted ingest?); stored images are never overwritten: remove it or rename the input"
    )


def remove_files(paths: list[Path]) -> None:
    """Remove files this ingest created (after a failure), then sync their directories."""
    for path in paths:
        path.unlink(missing_ok=True)
    for directory in {p.parent for p in paths}:
        if directory.is_dir():
            _fsync_dir(directory)
