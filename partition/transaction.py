"""Ingest transactions: one writer per table, staging, atomic publish, recovery.

The data directory holds::

    qcat.sqlite                      metadata store (the commit point)
    locks/<schema.table>.lock        held by the one ingest of a table
    staging/ingest-<id>/             work area of a running ingest
    tables/<schema.table>/ingest-<id>/   a published, immutable table version

A version becomes visible when the metadata store commits it (one database
transaction); before that its directory is renamed from staging into
``tables/`` (an atomic rename on one filesystem). Anything a crash leaves
behind, a staging directory or a renamed-but-never-committed version, is
unreferenced by the store and is removed by the next ingest's recovery.
Published data is never modified in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path

from qcat.errors import IngestError
from qcat.metadata.store import MetadataStore

#: Table versions kept besides the current one, so queries that started on
#: the previous version can finish.
KEEP_PREVIOUS_VERSIONS = 1


def table_dir(data_dir: Path, table: str) -> Path:
    """Directory holding the versions of ``table``."""
    return data_dir / "tables" / table


def staging_root(data_dir: Path) -> Path:
    """Directory of the running ingests' work areas."""
    return data_dir / "staging"


@contextlib.contextmanager
def table_lock(data_dir: Path, table: str) -> Iterator[None]:
    """Hold the exclusive ingest lock of ``table`` (fails at once if taken).

    The lock is an ``flock`` on a file: the kernel releases it when the
    holder dies, so a crashed ingest never blocks the next one.
    """
    locks = data_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{table}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(
                f"another ingest of {table} is running; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


def _lock_is_free(data_dir: Path, table: str) -> bool:
    path = data_dir / "locks" / f"{table}.lock"
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def recover(data_dir: Path, store: MetadataStore, holding: Collection[str] = ()) -> list[str]:
    """Clean up after interrupted ingests; return what was removed.

    ``holding`` names the tables whose locks the caller holds.

    An ingest recorded as running whose table lock is free has died: its
    staging area is removed and it is recorded as failed. Version
    directories that no committed version references (a crash between the
    rename and the commit), and old versions beyond the retention, are
    removed too.
    """
    removed: list[str] = []

    def free(table: str) -> bool:
        return table in holding or _lock_is_free(data_dir, table)

    for rec in store.ingests(status="running"):
        if not free(rec.table.lower()):
            continue
        staging = data_dir / rec.staging_path
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(rec.staging_path)
        store.fail_ingest(rec.id, "interrupted before commit; cleaned up by a later ingest")
        store.mark_cleaned(rec.id)
    live = {str(p) for p in store.live_paths()}
    root = staging_root(data_dir)
    if root.is_dir():
        for d in root.iterdir():
            rel = d.relative_to(data_dir).as_posix()
            if rel not in live:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(rel)
    tables_root = data_dir / "tables"
    if tables_root.is_dir():
        for tdir in tables_root.iterdir():
            keep = set(live)
            try:
                versions = store.versions(tdir.name)
            except Exception:  # table never committed: nothing to keep
                versions = []
            for v in sorted(versions, key=lambda v: v.version)[-(1 + KEEP_PREVIOUS_VERSIONS) :]:
                keep.add(v.path)
            for vdir in tdir.iterdir():
                rel = vdir.relative_to(data_dir).as_posix()
                if rel not in keep and free(tdir.name):
                    shutil.rmtree(vdir, ignore_errors=True)
                    removed.append(rel)
    return removed


def publish_dir(src: Path, dest: Path) -> None:
    """Move a finished version directory into place with one atomic rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dest)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
