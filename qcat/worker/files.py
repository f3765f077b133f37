"""Where a task's relation files may live: ``DATA/tables/`` and attached catalogs.

Paths come from the network, so each is checked twice: syntactically (see
:func:`qcat.worker.task.check_task_path`) and after resolving symlinks, so a
link cannot point anywhere else. A relative path must lie inside
``DATA/tables/``; an absolute one inside the directory of a HATS catalog the
operator attached (``qcat ingest --attach``), as the metadata store lists
them, never one the task names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qcat.worker.errors import TaskError
from qcat.worker.task import ChunkTask, check_task_path


class NotInAttachedCatalog(TaskError):
    """An absolute task path outside every attached catalog the worker knows of."""


def tables_root(data_dir: Path) -> Path:
    """The resolved ``tables/`` directory of a data directory."""
    return (Path(data_dir) / "tables").resolve()


def resolve_task_files(
    data_dir: Path, task: ChunkTask, attached: Sequence[Path] = ()
) -> dict[str, list[Path]]:
    """Absolute, symlink-free paths of every relation file of ``task``.

    ``attached`` are the resolved directories of the attached catalogs.
    Raises :class:`TaskError` naming the path when one is not a ``.parquet``
    file inside ``DATA/tables/`` (relative paths) or inside an attached
    catalog (absolute paths; :class:`NotInAttachedCatalog`), or does not exist.
    """
    data = Path(data_dir).resolve()
    root = tables_root(data)
    out: dict[str, list[Path]] = {}
    for name, files in task.relations.items():
        resolved = []
        for given in files:
            pure = check_task_path(task.task_id, name, given)
            where = f"task {task.task_id}: relation {name!r}: file {given!r}"
            path = (data / pure).resolve()  # an absolute ``pure`` replaces ``data``
            if not pure.is_absolute():
                if not path.is_relative_to(root):
                    raise TaskError(f"{where} is outside the tables directory")
            elif not any(path.is_relative_to(a) for a in attached):
                raise NotInAttachedCatalog(f"{where} is not in an attached catalog")
            if not path.is_file():
                raise TaskError(f"{where} does not exist")
            if path.suffix != ".parquet":
                raise TaskError(f"{where} links to a file that is not .parquet")
            resolved.append(path)
        out[name] = resolved
    return out


def servable_path(path: str, attached: Sequence[Path] = ()) -> bool:
    """Whether a metadata path can be read by a worker.

    Paths relative to the data directory must be under ``tables/``; absolute
    ones (files of attached HATS catalogs) under one of ``attached``.
    """
    pure = Path(path)
    if pure.is_absolute():
        return ".." not in pure.parts and any(pure.is_relative_to(a) for a in attached)
    return ".." not in pure.parts and pure.parts[:1] == ("tables",)
