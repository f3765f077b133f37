"""Attach an existing HATS catalog as a qcat table without rewriting its files.

Archives publish HATS catalogs (Gaia, ZTF, Rubin DP1); qcat serves them in
place. Attaching reads the catalog's properties, partition list and Parquet
footers, records every file's size and checksum (so ``qcat admin verify``
covers attached tables too), and builds a director index in the data
directory when the table has a key. The catalog's own files are only read.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from partition.checksums import sha256_file
from partition.director_index import write_director_index
from partition.hats_writer import HEALPIX_COLUMN, footer_stats, read_properties
from partition.ingest import (
    INDEX_FILE,
    IngestOptions,
    IngestResult,
    current_version_or_none,
)
from partition.layout import Partition, PartitionSet
from partition.transaction import publish_dir, recover, table_dir, table_lock
from qcat.errors import IngestError, SchemaError
from qcat.metadata.records import FileRecord, InputFileRecord, PartitionRecord
from qcat.metadata.store import MetadataStore
from qcat.schema import TableSpec, infer_spec, spec_from_felis

_NPIX = re.compile(r"Norder=(\d+)/Dir=\d+/Npix=(\d+)\.parquet$")
#: Columns HATS tools may store in partition files that are not table columns.
HATS_BOOKKEEPING = ("Norder", "Dir", "Npix", HEALPIX_COLUMN)


def _partitions(hats_dir: Path) -> list[Partition]:
    info = hats_dir / "partition_info.csv"
    if info.is_file():
        rows = info.read_text().split()
        header = [h.strip() for h in rows[0].split(",")]
        try:
            io, ip = header.index("Norder"), header.index("Npix")
        except ValueError:
            raise IngestError(f"{info}: header must name Norder and Npix") from None
        out = []
        for n, line in enumerate(rows[1:], start=2):
            cells = line.split(",")
            try:
                out.append(Partition(int(cells[io]), int(cells[ip])))
            except (ValueError, IndexError):
                raise IngestError(f"{info}: line {n}: not Norder,Npix: {line!r}") from None
        return out
    found = []
    for p in (hats_dir / "dataset").rglob("Npix=*.parquet"):
        m = _NPIX.search(p.as_posix())
        if m:
            found.append(Partition(int(m.group(1)), int(m.group(2))))
    return found


def attach_catalog(
    data_dir: Path,
    hats_dir: Path,
    table: str,
    *,
    schema_path: Path | None = None,
    key: str | None = None,
    options: IngestOptions | None = None,
) -> IngestResult:
    """Register the HATS catalog at ``hats_dir`` as table ``table``."""
    opts = options or IngestOptions()
    hats_dir = hats_dir.resolve()
    try:
        props = read_properties(hats_dir)
    except FileNotFoundError as e:
        raise IngestError(f"{hats_dir}: not a HATS catalog (no hats.properties)") from e
    kind = props.get("dataproduct_type", "")
    if kind not in ("object", "source"):
        raise IngestError(f"{hats_dir}: catalog type {kind!r} cannot be attached as a table")
    if props.get("hats_col_healpix", HEALPIX_COLUMN) != HEALPIX_COLUMN:
        raise IngestError(
            f"{hats_dir}: spatial index column is {props['hats_col_healpix']!r}; "
            f"qcat needs {HEALPIX_COLUMN} at order 29"
        )
    parts = _partitions(hats_dir)
    if not parts:
        raise IngestError(f"{hats_dir}: the catalog lists no partitions")
    pset = PartitionSet(parts)
    files = [hats_dir / "dataset" / p.path for p in pset]
    for f in files:
        if not f.is_file():
            raise IngestError(f"{f}: partition file listed in partition_info.csv is missing")
    common = hats_dir / "dataset" / "_common_metadata"
    arrow_schema = pq.read_schema(common if common.is_file() else files[0])
    if HEALPIX_COLUMN not in arrow_schema.names:
        raise IngestError(f"{files[0]}: no {HEALPIX_COLUMN} column")
    ra, dec = props.get("hats_col_ra"), props.get("hats_col_dec")
    spec = _attached_spec(arrow_schema, table, schema_path, ra, dec, key)

    store = MetadataStore.for_data_dir(data_dir)
    name = spec.qualified_name
    result = IngestResult(table=name, version=None, notes=list(spec.notes))
    try:
        with table_lock(data_dir, name.lower()):
            recover(data_dir, store, holding=[name.lower()])
            old = current_version_or_none(store, name)
            work_rel = f"staging/{name.lower()}-{time.time_ns()}"
            work = data_dir / work_rel
            work.mkdir(parents=True)
            marker = InputFileRecord(
                str(hats_dir),
                0,
                sha256_file(hats_dir / "partition_info.csv")
                if (hats_dir / "partition_info.csv").is_file()
                else "",
            )
            ingest_id = store.begin_ingest(name, "attach", [marker], work_rel, os.getpid())
            try:
                records, file_records, total = [], [], 0
                for p, f in zip(pset, files, strict=True):
                    meta = pq.read_metadata(f)
                    total += meta.num_rows
                    records.append(
                        PartitionRecord(p.order, p.pixel, meta.num_rows, str(f), footer_stats(meta))
                    )
                    file_records.append(
                        FileRecord(str(f), f.stat().st_size, sha256_file(f), "data")
                    )
                for extra in ("hats.properties", "partition_info.csv"):
                    f = hats_dir / extra
                    if f.is_file():
                        file_records.append(
                            FileRecord(str(f), f.stat().st_size, sha256_file(f), "metadata")
                        )
                version_rel = (table_dir(data_dir, name.lower()) / work.name).relative_to(data_dir)
                index_path = None
                if spec.director_key:
                    index_file = work / INDEX_FILE
                    index_file.parent.mkdir(parents=True)
                    _build_index(files, pset, spec.director_key, index_file, opts)
                    index_path = (version_rel / INDEX_FILE).as_posix()
                    file_records.append(
                        FileRecord(
                            index_path,
                            index_file.stat().st_size,
                            sha256_file(index_file, sync=True),
                            "index",
                        )
                    )
                shutil.rmtree(work / "tmp", ignore_errors=True)
                publish_dir(work, data_dir / version_rel)
                result.version = store.commit_version(
                    ingest_id,
                    spec,
                    path=version_rel.as_posix(),
                    num_rows=total,
                    partitions=records,
                    files=file_records,
                    margin_path=None,
                    margin_arcsec=None,
                    index_path=index_path,
                    attached=True,
                    properties={"hats_dir": str(hats_dir), **props},
                    expected_current=old.version if old else 0,
                )
                result.rows_added = total
            except BaseException as e:
                shutil.rmtree(work, ignore_errors=True)
                store.fail_ingest(ingest_id, str(e) or type(e).__name__)
                store.mark_cleaned(ingest_id)
                raise
    finally:
        store.close()
    return result


def _attached_spec(
    arrow_schema: pa.Schema,
    table: str,
    schema_path: Path | None,
    ra: str | None,
    dec: str | None,
    key: str | None,
) -> TableSpec:
    if schema_path is not None:
        spec = spec_from_felis(schema_path, table)
        missing = [c for c in spec.column_names if c not in arrow_schema.names]
        if missing:
            raise SchemaError(
                f"{schema_path}: columns {', '.join(missing)} of {table} are not in the catalog"
            )
        return spec.with_overrides(key=key) if key else spec
    payload = pa.schema([f for f in arrow_schema if f.name not in HATS_BOOKKEEPING])
    return infer_spec(payload, table, ra=ra, dec=dec, key=key)


def _build_index(
    files: list[Path], pset: PartitionSet, key: str, out: Path, opts: IngestOptions
) -> None:
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{opts.memory_limit}'")
    con.execute(f"SET temp_directory = '{out.parent.parent / 'tmp'}'")
    file_list = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    quoted = '"' + key.replace('"', '""') + '"'
    reader = con.sql(
        f"SELECT {quoted} AS k, {HEALPIX_COLUMN} AS h FROM read_parquet({file_list}) ORDER BY k"
    ).to_arrow_reader(262_144)

    def batches():  # type: ignore[no-untyped-def]
        for b in reader:
            idx = pset.locate(b.column("h").to_numpy())
            order, pixel = pset.orders_and_pixels(idx)
            yield pa.record_batch(
                {key: b.column("k"), "Norder": order, "Npix": pixel, HEALPIX_COLUMN: b.column("h")}
            )

    write_director_index(batches(), out, key_column=key, row_group_rows=opts.index_row_group_rows)
    con.close()
