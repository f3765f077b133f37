"""The Parquet files of partitions: codecs, row groups and dictionaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from partition.hats_writer import (
    INCOMPRESSIBLE_CODEC,
    PARTITION_COMPRESSION,
    ROW_GROUP_BYTES,
    ROW_GROUP_ROWS_RANGE,
    PartitionedWriter,
    row_group_rows_for,
)
from partition.ingest import IngestOptions, ingest_table
from partition.layout import Partition, PartitionSet
from qcat.metadata.store import MetadataStore
from tests.conftest import make_demo


def _column_chunk(path: Path, name: str, row_group: int = 0) -> pq.ColumnChunkMetaData:
    meta = pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    return meta.row_group(row_group).column(names.index(name))


def test_repeating_numbers_are_dictionary_encoded_per_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    batch = pa.record_batch(
        {
            "flag": pa.array(rng.choice([0.0, 1.0, None], n), pa.float64()),  # a float flag
            "noisy": pa.array(rng.normal(size=n)),
            "bits": pa.array(rng.choice([0, 4, 1 << 40], n)),
            "ids": pa.array(np.arange(n, dtype=np.int64)),
        }
    )
    # The second partition's flag is noisy: each file decides on its own rows.
    second = batch.set_column(0, "flag", pa.array(rng.normal(size=n)))
    parts = PartitionSet([Partition(0, 1), Partition(0, 2)])
    writer = PartitionedWriter(tmp_path, parts, batch.schema, row_group_rows=20_000)
    writer.write(batch, np.zeros(n, dtype=np.int64))
    writer.write(second, np.ones(n, dtype=np.int64))
    first_file, second_file = (w.path for w in writer.close())

    def dictionary(path: Path, name: str) -> bool:
        return _column_chunk(path, name).has_dictionary_page

    assert dictionary(first_file, "flag") and dictionary(first_file, "bits")
    assert not dictionary(first_file, "noisy") and not dictionary(first_file, "ids")
    assert not dictionary(second_file, "flag")
    meta = pq.read_metadata(first_file)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [20_000] * 2 + [
        10_000
    ]
    # zstd where it pays (ids, the repeating flag), snappy for noise it cannot shrink.
    codecs = {name: _column_chunk(first_file, name).compression for name in batch.schema.names}
    assert codecs == {
        "flag": PARTITION_COMPRESSION.upper(),
        "noisy": INCOMPRESSIBLE_CODEC.upper(),
        "bits": PARTITION_COMPRESSION.upper(),
        "ids": PARTITION_COMPRESSION.upper(),
    }
    assert pq.read_table(first_file).combine_chunks().equals(pa.Table.from_batches([batch]))


def test_row_groups_are_sized_by_row_width_unless_set() -> None:
    wide = pa.schema([pa.field(f"c{i}", pa.float64()) for i in range(32)])  # 256 bytes a row
    narrow = pa.schema([pa.field("id", pa.int64()), pa.field("flag", pa.bool_())])
    text = pa.schema(
        [pa.field("id", pa.int64())] + [pa.field(f"s{i}", pa.string()) for i in range(4)]
    )
    assert row_group_rows_for(wide) == ROW_GROUP_BYTES // 256
    assert row_group_rows_for(text) == ROW_GROUP_BYTES // (8 + 4 * 16)
    # a very narrow row would give huge groups: capped, as a very wide one is floored
    assert row_group_rows_for(narrow) == ROW_GROUP_ROWS_RANGE[1]
    huge = pa.schema([pa.field(f"c{i}", pa.float64()) for i in range(4000)])
    assert row_group_rows_for(huge) == ROW_GROUP_ROWS_RANGE[0]
    assert row_group_rows_for(wide, 5000) == 5000  # asked for explicitly
    with pytest.raises(ValueError, match="got -1"):
        row_group_rows_for(wide, -1)


def test_ingest_gives_wide_tables_shorter_row_groups(tmp_path: Path) -> None:
    demo = make_demo(100_000)  # over the 12 order-0 pixels: the densest holds >21,732
    options = IngestOptions(threshold=10_000_000, show_progress=False)
    data = tmp_path / "data"
    some_sources = demo.sources.slice(0, 100_000)
    for spec, table in ((demo.object_spec, demo.objects), (demo.source_spec, some_sources)):
        source = tmp_path / f"{spec.qualified_name}.parquet"
        pq.write_table(table, source)
        ingest_table(data, spec, [source], options)
    store = MetadataStore.for_data_dir(data)
    try:
        groups = {}
        for name in ("demo.Object", "demo.Source"):
            version = store.current_version(name)
            assert version is not None
            # the count used is recorded with the version, and every file keeps to it
            groups[name] = version.properties["row_group_rows"]
            full_groups = 0
            for part in store.partitions(name):
                meta = pq.read_metadata(data / part.path)
                sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
                assert sizes[:-1] == [groups[name]] * (len(sizes) - 1)
                assert 0 < sizes[-1] <= groups[name]
                full_groups += len(sizes) - 1
            assert full_groups >= 1 or name == "demo.Source"  # (too few sources for one)
        # 28 Object columns against 10 Source columns
        assert groups["demo.Object"] < 25_000 < 45_000 < groups["demo.Source"]
    finally:
        store.close()
