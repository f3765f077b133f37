"""Tables sent with a query (TAP_UPLOAD): staged where the workers can read them.

An upload is small next to the catalog, so it is treated like the other
unpartitioned tables: broadcast, i.e. every chunk task reads all of it and
matches it against its own chunk. That is exact for joins with a
partitioned table (each catalog row lives in one chunk) and runs where the
data is. The workers only read files below ``DATA/tables/``, so the upload
is written there, as Parquet, under the query's id, and removed when the
query ends.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from qcat.czar.catalog import TableSnapshot
from qcat.metadata.records import VersionRecord
from qcat.schema import TableSpec

#: Where uploads are staged, relative to the data directory (inside ``tables/``).
UPLOADS_DIR = "tables/_uploads"


@dataclass(frozen=True)
class UploadTable:
    """One uploaded table: its description (schema ``TAP_UPLOAD``) and its rows."""

    spec: TableSpec
    table: pa.Table


@dataclass(frozen=True)
class StagedUploads:
    """A query's uploads written under the data directory, as catalog tables."""

    directory: Path
    tables: dict[str, TableSnapshot]

    def remove(self) -> None:
        """Delete the staged files (the query is over)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def stage_uploads(data_dir: Path, query_id: str, uploads: list[UploadTable]) -> StagedUploads:
    """Write ``uploads`` for query ``query_id``; their snapshots are keyed by qualified name."""
    relative = f"{UPLOADS_DIR}/{query_id}"
    directory = Path(data_dir) / relative
    directory.mkdir(parents=True, exist_ok=False)
    tables: dict[str, TableSnapshot] = {}
    try:
        for upload in uploads:
            spec = upload.spec
            path = f"{relative}/{spec.name.lower()}.parquet"
            pq.write_table(upload.table.cast(spec.arrow_schema()), Path(data_dir) / path)
            version = VersionRecord(
                table=spec.qualified_name,
                version=0,
                path=relative,
                created_at=datetime.now(UTC),
                num_rows=upload.table.num_rows,
                num_partitions=0,
                margin_path=None,
                margin_arcsec=None,
                index_path=None,
                attached=False,
                properties={"upload": True},
            )
            tables[spec.qualified_name.lower()] = TableSnapshot(spec, version, (), path)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return StagedUploads(directory, tables)
