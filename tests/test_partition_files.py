"""The Parquet files of partitions: codecs, row groups and dictionaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from partition.hats_writer import (
    INCOMPRESSIBLE_CODEC,
    PARTITION_COMPRESSION,
    PartitionedWriter,
)
from partition.layout import Partition, PartitionSet


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
