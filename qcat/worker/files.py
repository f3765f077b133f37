"""Where a task's relation files may live: inside ``DATA/tables/`` only.

Paths come from the network, so each is checked twice: syntactically (see
:func:`qcat.worker.task.check_relative_path`) and after resolving symlinks,
so a link inside the tables directory cannot point outside it.
"""

from __future__ import annotations

from pathlib import Path

from qcat.worker.errors import TaskError
from qcat.worker.task import ChunkTask, check_relative_path


def tables_root(data_dir: Path) -> Path:
    """The resolved ``tables/`` directory of a data directory."""
    return (Path(data_dir) / "tables").resolve()


def resolve_task_files(data_dir: Path, task: ChunkTask) -> dict[str, list[Path]]:
    """Absolute, symlink-free paths of every relation file of ``task``.

    Raises :class:`TaskError` naming the path when one is not a ``.parquet``
    file inside ``DATA/tables/``, or does not exist.
    """
    data = Path(data_dir).resolve()
    root = tables_root(data)
    out: dict[str, list[Path]] = {}
    for name, files in task.relations.items():
        resolved = []
        for rel in files:
            pure = check_relative_path(task.task_id, name, rel)
            where = f"task {task.task_id}: relation {name!r}: file {rel!r}"
            path = (data / pure).resolve()
            if not path.is_relative_to(root):
                raise TaskError(f"{where} is outside the tables directory")
            if not path.is_file():
                raise TaskError(f"{where} does not exist")
            if path.suffix != ".parquet":
                raise TaskError(f"{where} links to a file that is not .parquet")
            resolved.append(path)
        out[name] = resolved
    return out


def servable_path(path: str) -> bool:
    """Whether a metadata path (relative to the data directory) is under ``tables/``.

    Attached HATS catalogs keep their files where they are (absolute paths);
    a locked-down worker cannot read them.
    """
    pure = Path(path)
    return not pure.is_absolute() and ".." not in pure.parts and pure.parts[:1] == ("tables",)
