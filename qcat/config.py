"""Settings: every limit is a named setting with a default and help text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "QCAT_DATA"
DEFAULT_DATA_DIR = "qcat-data"


def resolve_data_dir(value: str | os.PathLike[str] | None) -> Path:
    """Return the data directory: ``value``, else ``$QCAT_DATA``, else ``./qcat-data``."""
    if value:
        return Path(value)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class Setting:
    """One named setting: its default and what it controls."""

    name: str
    default: int | float | str
    help: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "partition_threshold",
            1_000_000,
            "Largest number of rows one HATS partition may hold before it is split "
            "into its four children.",
        ),
        Setting(
            "highest_order",
            10,
            "Deepest HEALPix order a partition may have (order 10 pixels are ~3.4 arcmin).",
        ),
        Setting("lowest_order", 0, "Shallowest HEALPix order a partition may have."),
        Setting(
            "row_group_rows",
            100_000,
            "Rows per Parquet row group in partition files (DuckDB prunes by row group).",
        ),
        Setting("margin_arcsec", 60.0, "Width of the margin (overlap) catalog in arcseconds."),
        Setting(
            "ingest_memory_limit",
            "2GB",
            "DuckDB memory limit while ingesting; beyond it DuckDB spills to disk.",
        ),
        Setting(
            "index_row_group_rows",
            16_384,
            "Rows per row group of the director index; a key lookup reads one group.",
        ),
    )
}
