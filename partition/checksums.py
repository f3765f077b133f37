"""File checksums: recorded at ingest, verified by ``qcat admin verify``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path, *, sync: bool = False) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks.

    With ``sync`` the file is also flushed to stable storage (``fsync``), so a
    checksum pass doubles as the durability barrier before a commit.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        if sync:
            os.fsync(f.fileno())
    return h.hexdigest()


@dataclass(frozen=True)
class FileProblem:
    """One stored file that does not match its record."""

    path: str
    problem: str  # "missing" | "size" | "checksum" | "unreadable"
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}: {self.detail}"


def verify_file(root: Path, rel_path: str, size: int, sha256: str) -> FileProblem | None:
    """Compare one file under ``root`` with its recorded size and checksum."""
    p = root / rel_path
    try:
        actual_size = p.stat().st_size
    except FileNotFoundError:
        return FileProblem(rel_path, "missing", "file does not exist")
    except OSError as e:
        return FileProblem(rel_path, "unreadable", str(e))
    if actual_size != size:
        return FileProblem(rel_path, "size", f"expected {size} bytes, found {actual_size}")
    try:
        digest = sha256_file(p)
    except OSError as e:
        return FileProblem(rel_path, "unreadable", str(e))
    if digest != sha256:
        return FileProblem(rel_path, "checksum", f"expected sha256 {sha256}, found {digest}")
    return None
