"""Verify published files against their recorded sizes and checksums."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from partition.checksums import FileProblem, verify_file
from qcat.metadata.store import MetadataStore


@dataclass
class VerifyReport:
    """Result of a verification run."""

    files_checked: int = 0
    problems: list[FileProblem] = field(default_factory=list)


def verify_data_dir(data_dir: Path, table: str | None = None) -> VerifyReport:
    """Check every file of the current version of ``table`` (default: all tables)."""
    store = MetadataStore.for_data_dir(data_dir)
    try:
        if table is not None:
            store.table(table)  # NotFoundError naming the table
        records = store.files(table)
    finally:
        store.close()
    report = VerifyReport()
    for rec in records:
        report.files_checked += 1
        problem = verify_file(data_dir, rec.path, rec.size, rec.sha256)
        if problem is not None:
            report.problems.append(problem)
    return report
