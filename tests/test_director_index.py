"""Director index: every key is found in its partition, lookups read few row groups."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partition.director_index import (
    KEY_COLUMN_METADATA,
    MAX_STRING_KEY_BYTES,
    DirectorIndex,
    IndexStats,
    write_director_index,
)
from partition.layout import Partition
from qcat.errors import ConfigError, IngestError, InputError, IntegrityError

N_KEYS = 500_000
ROW_GROUP_ROWS = 16_384


def random_partitions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    orders = rng.integers(0, 12, size=n, dtype=np.int64)
    pixels = (rng.random(n) * (12 * 4.0**orders)).astype(np.int64)
    return orders, pixels


def irregular_batches(
    rng: np.random.Generator, columns: dict[str, pa.Array], max_size: int
) -> list[pa.RecordBatch]:
    """Consecutive slices of random sizes (some empty) covering all rows."""
    whole = pa.table(columns).combine_chunks().to_batches()[0]
    batches, offset = [], 0
    while offset < len(whole):
        # Empty and one-row batches are the edge cases of re-chunking.
        draw = rng.random()
        size = 0 if draw < 0.1 else 1 if draw < 0.2 else int(rng.integers(2, max_size))
        batches.append(whole.slice(offset, size))
        offset += size
    return batches


def int_columns(keys: np.ndarray, orders: np.ndarray, pixels: np.ndarray) -> dict[str, pa.Array]:
    return {
        "objectId": pa.array(keys, pa.int64()),
        "Norder": pa.array(orders, pa.int8()),
        "Npix": pa.array(pixels, pa.int64()),
    }


class BigIndex:
    """500k random unique int64 keys with random partitions, written once."""

    def __init__(self, directory: Path) -> None:
        rng = np.random.default_rng(20240601)
        keys = np.unique(rng.integers(-(2**62), 2**62, size=N_KEYS + 1000))[:N_KEYS]
        assert len(keys) == N_KEYS
        orders, pixels = random_partitions(rng, N_KEYS)
        self.keys, self.orders, self.pixels = keys, orders, pixels
        self.expected = {
            k: Partition(o, p)
            for k, o, p in zip(keys.tolist(), orders.tolist(), pixels.tolist(), strict=True)
        }
        batches = irregular_batches(rng, int_columns(keys, orders, pixels), 40_000)
        self.batch_sizes = [len(b) for b in batches]
        self.path = directory / "object_index.parquet"
        self.stats = write_director_index(
            iter(batches), self.path, key_column="objectId", row_group_rows=ROW_GROUP_ROWS
        )

    def row_group_of(self, key: int) -> int:
        """Row group holding ``key``, from its rank among the sorted keys."""
        return int(np.searchsorted(self.keys, key)) // ROW_GROUP_ROWS


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> BigIndex:
    return BigIndex(tmp_path_factory.mktemp("director_index"))


def test_stats_describe_the_written_file(big: BigIndex) -> None:
    groups = -(-N_KEYS // ROW_GROUP_ROWS)
    assert big.stats == IndexStats(
        rows=N_KEYS,
        row_groups=groups,
        min_key=int(big.keys[0]),
        max_key=int(big.keys[-1]),
        key_column="objectId",
    )


def test_irregular_batches_give_exact_row_groups(big: BigIndex) -> None:
    assert {0, 1} <= set(big.batch_sizes) and len(set(big.batch_sizes)) > 10
    metadata = pq.ParquetFile(big.path).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sizes[:-1] == [ROW_GROUP_ROWS] * (len(sizes) - 1)
    assert sizes[-1] == N_KEYS - ROW_GROUP_ROWS * (len(sizes) - 1)
    assert 0 < sizes[-1] < ROW_GROUP_ROWS


def test_file_schema_keeps_key_name_and_hats_columns(big: BigIndex) -> None:
    parquet = pq.ParquetFile(big.path)
    schema = parquet.schema_arrow
    assert schema.names == ["objectId", "Norder", "Npix"]
    assert [f.type for f in schema] == [pa.int64(), pa.uint8(), pa.int64()]
    assert parquet.metadata.metadata[KEY_COLUMN_METADATA] == b"objectId"
    stats = parquet.metadata.row_group(0).column(0).statistics
    assert stats.has_min_max and stats.min == big.keys[0]


def test_every_key_maps_to_its_partition(big: BigIndex) -> None:
    index = DirectorIndex(big.path)
    assert index.num_rows == N_KEYS and index.key_column == "objectId"
    found = index.lookup(big.keys)
    assert found == big.expected
    assert index.row_groups_read == big.stats.row_groups


def test_absent_keys_are_not_found(big: BigIndex) -> None:
    keys = big.keys
    index = DirectorIndex(big.path)
    gaps = np.flatnonzero(np.diff(keys) > 1)
    inside_gaps = (keys[gaps[:500]] + 1).tolist()
    boundaries = np.arange(ROW_GROUP_ROWS, N_KEYS, ROW_GROUP_ROWS)
    between_groups = ((keys[boundaries - 1] + keys[boundaries]) // 2).tolist()
    outside = [int(keys[0]) - 1, int(keys[-1]) + 1, -(2**63), 2**63 - 1, 2**64, -(2**70)]
    absent = inside_gaps + between_groups + outside
    assert not set(absent) & set(big.expected)
    assert index.lookup(absent) == {}
    assert all(index.lookup_one(key) is None for key in absent)


def test_keys_outside_row_group_ranges_read_nothing(big: BigIndex) -> None:
    keys = big.keys
    index = DirectorIndex(big.path)
    boundaries = np.arange(ROW_GROUP_ROWS, N_KEYS, ROW_GROUP_ROWS)
    between_groups = ((keys[boundaries - 1] + keys[boundaries]) // 2).tolist()
    assert index.lookup([*between_groups, int(keys[0]) - 1, int(keys[-1]) + 1]) == {}
    assert index.row_groups_read == 0


def test_lookup_one_reads_exactly_one_row_group(big: BigIndex) -> None:
    index = DirectorIndex(big.path)
    rng = np.random.default_rng(7)
    for n, key in enumerate(rng.choice(big.keys, size=20).tolist(), start=1):
        assert index.lookup_one(key) == big.expected[key]
        assert index.row_groups_read == n
    assert index.lookup_one(np.int64(big.keys[3])) == big.expected[int(big.keys[3])]


def test_batch_lookup_reads_each_needed_row_group_once(big: BigIndex) -> None:
    index = DirectorIndex(big.path)
    rng = np.random.default_rng(11)
    wanted = rng.choice(big.keys, size=100, replace=False).tolist()
    # Repeated and absent keys must not cost extra reads.
    found = index.lookup(wanted + wanted[:10] + [int(big.keys[0]) - 1])
    assert found == {key: big.expected[key] for key in wanted}
    assert index.row_groups_read == len({big.row_group_of(key) for key in wanted})


def test_batch_lookup_reads_only_the_row_groups_holding_the_keys(big: BigIndex) -> None:
    rng = np.random.default_rng(12)
    groups = rng.choice(big.stats.row_groups - 1, size=4, replace=False)
    pool = np.concatenate([big.keys[g * ROW_GROUP_ROWS : (g + 1) * ROW_GROUP_ROWS] for g in groups])
    wanted = rng.choice(pool, size=100, replace=False).tolist()
    index = DirectorIndex(big.path)
    assert index.lookup(wanted) == {key: big.expected[key] for key in wanted}
    assert index.row_groups_read == len({big.row_group_of(key) for key in wanted}) <= 4


def test_lookup_rejects_keys_of_the_wrong_kind(big: BigIndex) -> None:
    index = DirectorIndex(big.path)
    with pytest.raises(InputError, match=r"objectId.*'abc'.*not an integer"):
        index.lookup([int(big.keys[0]), "abc"])
    with pytest.raises(InputError, match="True"):
        index.lookup_one(True)


def test_file_opens_with_plain_pyarrow_and_duckdb(big: BigIndex) -> None:
    table = pq.read_table(big.path)
    assert table.num_rows == N_KEYS
    assert np.array_equal(table.column("objectId").to_numpy(), big.keys)
    assert np.array_equal(table.column("Npix").to_numpy(), big.pixels)
    con = duckdb.connect()
    source = str(big.path)
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [source]).fetchall() == [(N_KEYS,)]
    key = int(big.keys[12345])
    row = con.execute(
        'SELECT "Norder", "Npix" FROM read_parquet(?) WHERE "objectId" = ?', [source, key]
    ).fetchall()
    assert row == [(big.expected[key].order, big.expected[key].pixel)]


def test_string_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    alphabet = list("abcdefXYZ019-_éß日本🌌")
    words = {"".join(rng.choice(alphabet, size=int(rng.integers(1, 12)))) for _ in range(12_000)}
    keys = sorted(words, key=lambda s: s.encode())  # UTF-8 byte order, as the writer wants
    orders, pixels = random_partitions(rng, len(keys))
    columns = {
        "diaObjectName": pa.array(keys, pa.large_string()),
        "Norder": pa.array(orders, pa.uint8()),
        "Npix": pa.array(pixels, pa.uint64()),
    }
    path = tmp_path / "names.parquet"
    stats = write_director_index(
        irregular_batches(rng, columns, 900), path, key_column="diaObjectName", row_group_rows=500
    )
    assert (stats.rows, stats.min_key, stats.max_key) == (len(keys), keys[0], keys[-1])
    expected = {
        k: Partition(o, p) for k, o, p in zip(keys, orders.tolist(), pixels.tolist(), strict=True)
    }
    index = DirectorIndex(path)
    assert index.key_column == "diaObjectName"
    assert index.lookup(keys) == expected
    absent = ["", keys[0] + "\x00", keys[-1] + "z", "🌌🌌🌌🌌🌌🌌🌌🌌🌌🌌🌌🌌🌌"]
    absent = [a for a in absent if a not in words]
    assert index.lookup(absent) == {}
    before = index.row_groups_read
    assert index.lookup_one(keys[4321]) == expected[keys[4321]]
    assert index.row_groups_read == before + 1
    with pytest.raises(InputError, match="not a string"):
        index.lookup_one(5)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([1, 2, 3, 3, 4], r"objectId key 3 at input row 3 is a duplicate"),
        ([1, 2, 9, 4, 10], r"objectId key 4 at input row 3 is out of order \(it follows 9\)"),
        ([5, 6, 7, 2, 8], r"objectId key 2 at input row 3 is out of order \(it follows 7\)"),
        ([5, 6, 7, 7, 8], r"objectId key 7 at input row 3 is a duplicate"),
    ],
)
def test_unsorted_or_duplicate_keys_are_rejected(
    tmp_path: Path, keys: list[int], message: str
) -> None:
    # Rows 0-2 and 3-4 come in separate batches, so the fault is at a batch
    # boundary in some cases and inside a batch in others.
    table = pa.table(int_columns(np.array(keys), np.zeros(5, np.int64), np.arange(5)))
    batches = table.slice(0, 3).to_batches() + table.slice(3).to_batches()
    path = tmp_path / "index.parquet"
    with pytest.raises(IngestError, match=message):
        write_director_index(batches, path, key_column="objectId", row_group_rows=2)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_duplicate_string_key_is_named(tmp_path: Path) -> None:
    batch = pa.record_batch({"name": ["a", "b", "b"], "Norder": [1, 1, 1], "Npix": [0, 1, 2]})
    with pytest.raises(IngestError, match="name key 'b' at input row 2 is a duplicate"):
        write_director_index([batch], tmp_path / "i.parquet", key_column="name")


def test_failed_rewrite_keeps_the_previous_index(tmp_path: Path) -> None:
    path = tmp_path / "index.parquet"
    good = pa.record_batch(int_columns(np.arange(10), np.zeros(10, np.int64), np.arange(10)))
    write_director_index([good], path, key_column="objectId")
    bad = pa.record_batch(int_columns(np.array([3, 1]), np.zeros(2, np.int64), np.arange(2)))
    with pytest.raises(IngestError):
        write_director_index([bad], path, key_column="objectId")
    assert DirectorIndex(path).lookup_one(9) == Partition(0, 9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.parquet"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"objectId": [1, 2], "Npix": [0, 1]}, "lacks column 'Norder'"),
        ({"objectId": [1.5, 2.5], "Norder": [0, 0], "Npix": [0, 1]}, "integers or strings"),
        (
            {"objectId": [1, None], "Norder": [0, 0], "Npix": [0, 1]},
            "null 'objectId' at input row 1",
        ),
        ({"objectId": [1, 2], "Norder": [0, None], "Npix": [0, 1]}, "null 'Norder'.*objectId 2"),
        ({"objectId": [1, 2], "Norder": [0, 30], "Npix": [0, 1]}, "objectId 2 .* Norder=30"),
        ({"objectId": [1, 2], "Norder": [1, 1], "Npix": [47, 48]}, "objectId 2 .* Npix=48"),
        ({"objectId": [1, 2], "Norder": [0, 0], "Npix": [-1, 1]}, "objectId 1 .* Npix=-1"),
        (
            {"objectId": [1, 2], "Norder": [0, 0], "Npix": [0, 1], "_healpix_29": [0, 0]},
            r"objectId 2 at input row 1: _healpix_29=0 is not in its partition Norder=0, Npix=1",
        ),
        (
            {"objectId": [1, 2], "Norder": [0, 0], "Npix": [0, 0], "_healpix_29": [0, None]},
            "null '_healpix_29' at input row 1 for objectId 2",
        ),
    ],
)
def test_bad_input_is_rejected(tmp_path: Path, columns: dict, message: str) -> None:
    batch = pa.record_batch(columns)
    with pytest.raises(IngestError, match=message):
        write_director_index([batch], tmp_path / "i.parquet", key_column="objectId")


def test_string_keys_too_long_for_statistics_are_rejected(tmp_path: Path) -> None:
    long_key = "x" * (MAX_STRING_KEY_BYTES + 1)
    batch = pa.record_batch({"name": ["a", long_key], "Norder": [0, 0], "Npix": [0, 1]})
    with pytest.raises(IngestError, match="input row 1 is longer than 1024 bytes"):
        write_director_index([batch], tmp_path / "i.parquet", key_column="name")


@pytest.mark.parametrize("rows", [0, -5, 64 * 1024 * 1024 + 1])
def test_row_group_rows_must_be_positive_and_bounded(tmp_path: Path, rows: int) -> None:
    batch = pa.record_batch(int_columns(np.arange(3), np.zeros(3, np.int64), np.arange(3)))
    with pytest.raises(ConfigError, match="row_group_rows"):
        write_director_index(
            [batch], tmp_path / "i.parquet", key_column="objectId", row_group_rows=rows
        )


def test_empty_reader_gives_an_empty_index(tmp_path: Path) -> None:
    schema = pa.schema([("objectId", pa.int64()), ("Norder", pa.uint8()), ("Npix", pa.int64())])
    path = tmp_path / "empty.parquet"
    reader = pa.RecordBatchReader.from_batches(schema, [])
    stats = write_director_index(reader, path, key_column="objectId")
    assert (stats.rows, stats.row_groups, stats.min_key) == (0, 0, None)
    index = DirectorIndex(path)
    assert index.num_rows == 0 and index.lookup([1, 2]) == {} and index.row_groups_read == 0
    with pytest.raises(IngestError, match="no input batches"):
        write_director_index([], tmp_path / "x.parquet", key_column="objectId")


def test_opening_a_file_that_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="missing"):
        DirectorIndex(tmp_path / "nope.parquet")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(IntegrityError, match=r"garbage\.parquet"):
        DirectorIndex(garbage)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"objectId": [1], "Norder": [0], "Npix": [0]}), plain)
    with pytest.raises(IntegrityError, match="not a director index"):
        DirectorIndex(plain)


@settings(max_examples=40, deadline=None)
@given(
    keys=st.sets(st.integers(-(2**63), 2**63 - 1), max_size=60),
    probes=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
    row_group_rows=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 60), max_size=6),
)
def test_lookup_agrees_with_a_dict(
    tmp_path_factory: pytest.TempPathFactory,
    keys: set[int],
    probes: list[int],
    row_group_rows: int,
    cuts: list[int],
) -> None:
    ordered = np.array(sorted(keys), dtype=np.int64)
    orders, pixels = ordered % 30, ordered % 12  # any pixel below 12 exists at every order
    whole = pa.table(int_columns(ordered, orders, pixels)).combine_chunks().to_batches()
    bounds = [0, *sorted(min(c, len(ordered)) for c in cuts), len(ordered)]
    schema = pa.schema([("objectId", pa.int64()), ("Norder", pa.int8()), ("Npix", pa.int64())])
    pieces = [whole[0].slice(a, b - a) for a, b in itertools.pairwise(bounds)] if whole else []
    reader = pa.RecordBatchReader.from_batches(schema, pieces)
    path = tmp_path_factory.mktemp("prop") / "index.parquet"
    stats = write_director_index(reader, path, key_column="objectId", row_group_rows=row_group_rows)
    assert stats.row_groups == -(-len(ordered) // row_group_rows)
    expected = {
        k: Partition(o, p)
        for k, o, p in zip(ordered.tolist(), orders.tolist(), pixels.tolist(), strict=True)
    }
    wanted = list(keys) + probes
    index = DirectorIndex(path)
    assert index.lookup(wanted) == {k: expected[k] for k in wanted if k in expected}
    rank = {k: i for i, k in enumerate(ordered.tolist())}
    touched = {rank[k] // row_group_rows for k in wanted if k in rank}
    assert index.row_groups_read == len(touched)


def test_healpix_is_kept_and_located(tmp_path: Path) -> None:
    """With ``_healpix_29`` in the input, the index stores it and ``locate`` gives it back."""
    rng = np.random.default_rng(5)
    healpix = np.sort(rng.integers(0, 12 << 58, size=5000, dtype=np.int64))
    keys = np.arange(5000, dtype=np.int64) * 3
    orders = rng.integers(0, 8, size=5000, dtype=np.int64)
    pixels = healpix >> (2 * (29 - orders))
    columns = {**int_columns(keys, orders, pixels), "_healpix_29": pa.array(healpix)}
    path = tmp_path / "index.parquet"
    write_director_index(irregular_batches(rng, columns, 700), path, key_column="objectId")
    index = DirectorIndex(path)
    assert index.has_healpix
    assert pq.read_schema(path).names == ["objectId", "Norder", "Npix", "_healpix_29"]
    wanted = [int(k) for k in rng.choice(keys, 50)] + [1, 2]  # 1 and 2 are not keys
    located = index.locate(wanted)
    assert set(located) == {k for k in wanted if k % 3 == 0}
    for key, found in located.items():
        assert isinstance(key, int)
        i = key // 3
        assert found.partition == Partition(int(orders[i]), int(pixels[i]))
        assert found.healpix_29 == int(healpix[i])
    assert index.lookup(wanted) == {k: f.partition for k, f in located.items()}


def test_an_index_without_healpix_locates_partitions_only(tmp_path: Path) -> None:
    path = tmp_path / "index.parquet"
    batch = pa.record_batch(int_columns(np.arange(10), np.zeros(10, np.int64), np.arange(10)))
    write_director_index([batch], path, key_column="objectId")
    index = DirectorIndex(path)
    assert not index.has_healpix
    found = index.locate([4])[4]
    assert (found.partition, found.healpix_29) == (Partition(0, 4), None)
