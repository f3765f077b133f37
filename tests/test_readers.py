"""Streaming input readers: round trips through every format, batching, and errors."""

from __future__ import annotations

import datetime as dt
import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from partition.readers import FORMATS, count_rows, detect_format, iter_batches, read_schema
from qcat.errors import InputError
from qcat.schema import ColumnSpec, TableSpec
from tests.formats import write_as

SUFFIX = {"parquet": ".parquet", "csv": ".csv", "fits": ".fits", "votable": ".vot"}


def make_spec(*columns: tuple[str, str] | tuple[str, str, bool]) -> TableSpec:
    """A table spec from ``(name, felis datatype[, nullable])`` triples."""
    specs = tuple(
        ColumnSpec(name=c[0], datatype=c[1], nullable=c[2] if len(c) > 2 else True) for c in columns
    )
    return TableSpec(schema_name="s", name="t", columns=specs)


def read_all(path: Path, spec: TableSpec | None, **kwargs) -> pa.Table:
    batches = [batch for _, batch in iter_batches(path, spec, **kwargs)]
    choice = {k: v for k, v in kwargs.items() if k in ("hdu", "table_index")}
    schema = spec.arrow_schema() if spec else read_schema(path, **choice)
    return pa.Table.from_batches(batches, schema=schema)


def error_of(path: Path, spec: TableSpec | None, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        read_all(path, spec, **kwargs)
    assert str(path) in str(info.value)
    return info.value


def bits(column: pa.ChunkedArray) -> pa.Array:
    """Floats as their bit patterns, so NaN, -0.0 and subnormals compare exactly."""
    array = column.combine_chunks()
    if pa.types.is_float32(array.type):
        return array.view(pa.uint32())
    if pa.types.is_float64(array.type):
        return array.view(pa.uint64())
    return array


def assert_identical(got: pa.Table, expected: pa.Table) -> None:
    assert got.schema.names == expected.schema.names
    for name in expected.column_names:
        g, e = got.column(name), expected.column(name)
        assert g.type == e.type, name
        assert bits(g).equals(bits(e)), f"{name}: {g.to_pylist()} != {e.to_pylist()}"


# -- a table with every Felis datatype ------------------------------------------

NAN32 = struct.unpack("<f", struct.pack("<I", 0x7FC00000))[0]
ALL_TYPES = [
    ("id", "long", False),
    ("flag", "boolean", True),
    ("tiny", "byte", True),
    ("small", "short", True),
    ("medium", "int", True),
    ("big", "long", True),
    ("single", "float", True),
    ("real", "double", True),
    ("code", "char", True),
    ("label", "string", True),
    ("note", "unicode", True),
    ("remark", "text", True),
    ("required_text", "string", False),
    ("when", "timestamp", True),
    ("blob", "binary", True),
]
N_ROWS = 9


def all_types_table() -> pa.Table:
    t0 = dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
    return pa.table(
        {
            "id": pa.array(range(N_ROWS), pa.int64()),
            "flag": pa.array([True, False, None, True, False, True, None, False, True]),
            "tiny": pa.array([-128, 127, None, 0, -1, 1, 5, None, 42], pa.int8()),
            "small": pa.array([-32768, 32767, 0, None, -1, 1, 7, 8, None], pa.int16()),
            "medium": pa.array([-(2**31), 2**31 - 1, 0, 1, None, -1, 3, 4, 5], pa.int32()),
            "big": pa.array([-(2**63), 2**63 - 1, 2**53 + 1, 0, 1, None, -1, 9, 10], pa.int64()),
            "single": pa.array(
                [0.1, -0.0, 1e-45, 3.4028235e38, math.inf, -math.inf, None, NAN32, 1 / 3],
                pa.float32(),
            ),
            "real": pa.array(
                [
                    0.1,
                    -0.0,
                    5e-324,
                    1.7976931348623157e308,
                    1 / 3,
                    math.inf,
                    -math.inf,
                    None,
                    math.nan,
                ],
                pa.float64(),
            ),
            "code": pa.array(["A", "B", None, "C", "D", "E", "F", "G", "H"]),
            "label": pa.array(['a"b,c', "null", "NaN", None, " lead", "", "x\ty", "100", "True"]),
            "note": pa.array(["é", "日本", "Ω≈ç", "plain", None, "😀", "a;b", "<&>", "'q'"]),
            "remark": pa.array([None] * N_ROWS, pa.string()),
            "required_text": pa.array(["", "x", "", "y", "z", "", "w", "v", "u"]),
            "when": pa.array(
                [
                    t0,
                    None,
                    t0 + dt.timedelta(days=400),
                    dt.datetime(1970, 1, 1),
                    t0,
                    t0,
                    t0,
                    None,
                    t0,
                ],
                pa.timestamp("us"),
            ),
            "blob": pa.array([b"\x00\xff", None, b"", b"abc", b"\x01", None, b"z", b"", b"q"]),
        }
    )


#: What each format can represent (timestamps and binary have no FITS/VOTable form here).
FORMAT_COLUMNS = {
    "parquet": [c[0] for c in ALL_TYPES],
    "csv": [c[0] for c in ALL_TYPES if c[0] != "blob"],
    "fits": [c[0] for c in ALL_TYPES if c[0] not in ("when", "blob")],
    "votable": [c[0] for c in ALL_TYPES if c[0] not in ("when", "blob")],
}


def expected_after(fmt: str, table: pa.Table, spec: TableSpec) -> pa.Table:
    """The documented conventions, applied independently of the readers.

    FITS and VOTable use NaN as the float NULL, so NaN reads back as NULL;
    neither can tell an empty string from a missing one, so an empty string in
    a nullable column reads back as NULL. VOTable TABLEDATA cells lose
    surrounding white space.
    """
    if fmt not in ("fits", "votable"):
        return table
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if fmt == "votable" and pa.types.is_string(field.type):
            column = pc.utf8_trim_whitespace(column)
        if pa.types.is_floating(field.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column)
        elif pa.types.is_string(field.type) and spec.column(field.name).nullable:
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
        columns.append(column)
    return pa.table(columns, schema=table.schema)


ROUND_TRIP_CASES = [
    ("parquet", "t.parquet"),
    ("csv", "t.csv"),
    ("csv", "t.tsv"),
    ("csv", "t.csv.gz"),
    ("fits", "t.fits"),
    ("fits", "t.fits.gz"),
    ("votable", "t.vot"),
    ("votable", "t.xml.gz"),
]


@pytest.mark.parametrize(("fmt", "name"), ROUND_TRIP_CASES)
def test_every_felis_type_round_trips_bit_identically(tmp_path, fmt, name):
    names = FORMAT_COLUMNS[fmt]
    spec = make_spec(*[c for c in ALL_TYPES if c[0] in names])
    table = all_types_table().select(names).cast(spec.arrow_schema())
    path = write_as(table, tmp_path / name, fmt)
    assert detect_format(path) == fmt
    got = read_all(path, spec, batch_rows=4)
    assert_identical(got, expected_after(fmt, table, spec))


@pytest.mark.parametrize("fmt", FORMATS)
def test_without_spec_batches_have_the_files_own_schema(tmp_path, fmt):
    table = pa.table(
        {
            "ra": pa.array([10.5, 20.25, None], pa.float64()),
            "n": pa.array([1, None, 3], pa.int32()),
            "name": pa.array(["a", "b", None]),
            "ok": pa.array([True, None, False]),
        }
    )
    path = write_as(table, tmp_path / f"t{SUFFIX[fmt]}", fmt)
    schema = read_schema(path)
    assert schema.names == ["ra", "n", "name", "ok"]
    # CSV has no types of its own: integers are inferred as int64.
    expected_n = pa.int64() if fmt == "csv" else pa.int32()
    assert [f.type for f in schema] == [pa.float64(), expected_n, pa.string(), pa.bool_()]
    got = read_all(path, None)
    assert got.schema == schema
    assert got.column("ra").to_pylist() == [10.5, 20.25, None]
    assert got.column("n").to_pylist() == [1, None, 3]
    assert got.column("name").to_pylist() == ["a", "b", None]
    assert got.column("ok").to_pylist() == [True, None, False]


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_boundaries_give_first_row(tmp_path, fmt):
    n = 1000
    table = pa.table({"id": pa.array(np.arange(n), pa.int64()), "x": pa.array(np.arange(n) * 0.5)})
    path = write_as(table, tmp_path / f"t{SUFFIX[fmt]}", fmt)
    spec = make_spec(("id", "long", False), ("x", "double"))
    seen = []
    for first_row, batch in iter_batches(path, spec, batch_rows=64):
        assert 0 < batch.num_rows <= 64
        # The id column is the row index, so it checks first_row independently.
        assert batch.column("id").to_pylist() == list(range(first_row, first_row + batch.num_rows))
        seen.append(first_row)
    assert seen == list(range(0, n, 64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_file_without_rows_still_has_its_columns_checked(tmp_path, fmt):
    table = pa.table({"a": pa.array([], pa.int32()), "b": pa.array([], pa.string())})
    path = write_as(table, tmp_path / f"t{SUFFIX[fmt]}", fmt)
    assert read_schema(path).names == ["a", "b"]
    assert list(iter_batches(path, make_spec(("a", "long"), ("b", "string")))) == []
    err = error_of(path, make_spec(("a", "long")))
    assert "extra column(s) not in the schema 'b'" in str(err)


@pytest.mark.parametrize(
    ("fmt", "expected"), [("parquet", 37), ("fits", 37), ("csv", None), ("votable", None)]
)
def test_count_rows_only_when_cheap(tmp_path, fmt, expected):
    table = pa.table({"a": pa.array(range(37), pa.int32())})
    path = write_as(table, tmp_path / f"t{SUFFIX[fmt]}", fmt)
    assert count_rows(path) == expected


def test_large_csv_streams_in_several_batches(tmp_path):
    n = 300_000
    ids = np.arange(n, dtype=np.int64)
    table = pa.table({"id": ids, "ra": ids * 1e-3, "dec": -ids * 1e-4})
    path = write_as(table, tmp_path / "big.csv", "csv")
    spec = make_spec(("id", "long", False), ("ra", "double"), ("dec", "double"))
    starts, total, id_sum = [], 0, 0
    for first_row, batch in iter_batches(path, spec, batch_rows=100_000):
        starts.append(first_row)
        total += batch.num_rows
        id_sum += pc.sum(batch.column("id")).as_py()
        assert batch.column("id")[0].as_py() == first_row
        assert batch.column("ra").to_numpy()[-1] == (first_row + batch.num_rows - 1) * 1e-3
    assert starts == [0, 100_000, 200_000]
    assert total == n
    assert id_sum == n * (n - 1) // 2


# -- format detection -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.csv", "csv"),
        ("a.CSV.GZ", "csv"),
        ("a.tsv", "csv"),
        ("a.fits", "fits"),
        ("a.fit", "fits"),
        ("a.fits.gz", "fits"),
        ("a.fz", "fits"),
        ("a.vot", "votable"),
        ("a.votable", "votable"),
        ("a.xml.gz", "votable"),
    ],
)
def test_detect_format_by_suffix(name, fmt):
    assert detect_format(Path("/data") / name) == fmt


@pytest.mark.parametrize("name", ["a.txt", "a", "a.parquet.gz", "a.gz"])
def test_unknown_suffix_names_file_and_lists_suffixes(name):
    with pytest.raises(InputError) as info:
        detect_format(Path("/data") / name)
    message = str(info.value)
    assert f"/data/{name}" in message
    assert ".parquet" in message and ".fits" in message and ".vot" in message


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_schema(tmp_path / "nope.csv")


# -- schema disagreements ------------------------------------------------------------


def test_missing_columns_are_listed_together(tmp_path):
    path = write_as(pa.table({"a": [1], "c": [2]}), tmp_path / "t.parquet", "parquet")
    spec = make_spec(("a", "long"), ("b", "long"), ("c", "long"), ("d", "long"))
    message = str(error_of(path, spec))
    assert "input schema disagrees with the Felis schema" in message
    assert "missing column(s) 'b', 'd'" in message


def test_extra_columns_are_listed(tmp_path):
    path = write_as(pa.table({"a": [1], "x": [2], "y": [3]}), tmp_path / "t.csv", "csv")
    message = str(error_of(path, make_spec(("a", "long"))))
    assert "input schema disagrees with the Felis schema" in message
    assert "extra column(s) not in the schema 'x', 'y'" in message


def test_case_only_difference_is_explained(tmp_path):
    path = write_as(pa.table({"RA": [1.0], "dec": [2.0]}), tmp_path / "t.fits", "fits")
    err = error_of(path, make_spec(("ra", "double"), ("dec", "double")))
    assert "'RA' differs from the schema's 'ra' only in case" in str(err)


def test_type_mismatch_names_column_and_both_types(tmp_path):
    path = write_as(pa.table({"n": [1.5], "s": ["x"]}), tmp_path / "t.parquet", "parquet")
    err = error_of(path, make_spec(("n", "int"), ("s", "string")))
    assert err.column == "n"
    assert "'n' is double in the file but the Felis schema says int (int32)" in str(err)


def test_several_type_mismatches_are_listed(tmp_path):
    table = pa.table({"a": [1.5], "b": [True], "c": ["x"]})
    path = write_as(table, tmp_path / "t.parquet", "parquet")
    message = str(error_of(path, make_spec(("a", "long"), ("b", "int"), ("c", "double"))))
    assert "'a' is double" in message and "says long (int64)" in message
    assert "'b' is bool" in message and "says int (int32)" in message
    assert "'c' is string in the file but the Felis schema says double" in message


# -- lossless conversions ----------------------------------------------------------------


def test_lossless_widening_conversions(tmp_path):
    table = pa.table(
        {
            "i16": pa.array([-5, None, 7], pa.int16()),
            "f32": pa.array([0.1, None, -2.5], pa.float32()),
            "i32": pa.array([2**31 - 1, None, -(2**31)], pa.int32()),
            "u32": pa.array([2**32 - 1, None, 0], pa.uint32()),
            "big": pa.array([-(2**63), 2**53, None], pa.int64()),
            "exact": pa.array([0.5, None, 2.0**100], pa.float64()),
            "text": pa.array(["a", None, "b"], pa.large_string()),
            "cat": pa.array(["u", "v", None]).dictionary_encode(),
        }
    )
    path = write_as(table, tmp_path / "t.parquet", "parquet")
    spec = make_spec(
        ("i16", "long"),
        ("f32", "double"),
        ("i32", "double"),
        ("u32", "long"),
        ("big", "double"),
        ("exact", "float"),
        ("text", "string"),
        ("cat", "string"),
    )
    got = read_all(path, spec)
    assert got.column("i16").to_pylist() == [-5, None, 7]
    # float32 -> float64 keeps the float32 value exactly (not the decimal 0.1).
    assert got.column("f32").to_pylist() == [float(np.float32(0.1)), None, -2.5]
    assert got.column("i32").to_pylist() == [2.0**31 - 1, None, -(2.0**31)]
    assert got.column("u32").to_pylist() == [2**32 - 1, None, 0]
    assert got.column("big").to_pylist() == [-(2.0**63), 2.0**53, None]
    assert got.column("exact").to_pylist() == [0.5, None, 2.0**100]
    assert got.column("exact").type == pa.float32()
    assert got.column("text").to_pylist() == ["a", None, "b"]
    assert got.column("cat").to_pylist() == ["u", "v", None]


@pytest.mark.parametrize(
    ("array", "felis", "bad_row", "shown"),
    [
        (pa.array([1.0, 0.5, 0.1], pa.float64()), "float", 2, "0.1"),
        (pa.array([1, None, 2**31], pa.int64()), "int", 2, "2147483648"),
        (pa.array([0, 2**63], pa.uint64()), "long", 1, "9223372036854775808"),
        (pa.array([2**53, 2**53 + 1], pa.int64()), "double", 1, "9007199254740993"),
        (pa.array([2**63 - 1], pa.int64()), "double", 0, "9223372036854775807"),
        (pa.array([-1, 300], pa.int16()), "byte", 1, "300"),
    ],
)
def test_lossy_value_names_row_column_and_value(tmp_path, array, felis, bad_row, shown):
    path = write_as(pa.table({"v": array}), tmp_path / "t.parquet", "parquet")
    err = error_of(path, make_spec(("v", felis)), batch_rows=1)
    assert err.row == bad_row and err.column == "v"
    assert f"row {bad_row}" in str(err) and "'v'" in str(err)
    assert f"value {shown}" in str(err)
    assert f"Felis type {felis}" in str(err)


def test_lossy_value_row_counts_across_batches(tmp_path):
    values = np.zeros(1000)
    values[777] = 0.1
    path = write_as(pa.table({"v": values}), tmp_path / "t.parquet", "parquet")
    err = error_of(path, make_spec(("v", "float")), batch_rows=100)
    assert err.row == 777


# -- NULLs -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_null_in_not_nullable_column_names_first_row(tmp_path, fmt):
    table = pa.table({"k": pa.array([1, 2, None, 4, None], pa.int32())})
    path = write_as(table, tmp_path / f"t{SUFFIX[fmt]}", fmt)
    err = error_of(path, make_spec(("k", "int", False)), batch_rows=2)
    assert (err.row, err.column) == (2, "k")
    assert "not nullable" in str(err)


def test_csv_null_and_nan_conventions(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('x,s\n1.5,a\n,""\nnull,"null"\nNULL,NULL\nnan,NaN\nNaN,\n-inf,x\n')
    got = read_all(path, make_spec(("x", "double"), ("s", "string")))
    x = got.column("x").to_pylist()
    assert x[0] == 1.5 and x[1:4] == [None, None, None]
    assert math.isnan(x[4]) and math.isnan(x[5]) and x[6] == -math.inf
    assert got.column("s").to_pylist() == ["a", "", "null", None, "NaN", None, "x"]


# -- CSV errors --------------------------------------------------------------------------


def test_csv_bad_value_names_row_line_column_and_value(tmp_path):
    path = tmp_path / "t.csv"
    # The empty line is skipped, so data row 2 is on line 5.
    path.write_text("id,x\n1,1.0\n2,2.0\n\n3,abc\n4,4.0\n")
    err = error_of(path, make_spec(("id", "long"), ("x", "double")))
    assert (err.row, err.column) == (2, "x")
    message = str(err)
    assert "value 'abc' is not a valid double (line 5)" in message


def test_csv_bad_value_in_a_later_block_is_located(tmp_path):
    n = 300_000
    lines = ["id,x", *(f"{i},{i * 0.25!r}" for i in range(n))]
    lines[1 + 250_123] = "250123,1.0e"
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    err = error_of(path, make_spec(("id", "long"), ("x", "double")))
    assert (err.row, err.column) == (250_123, "x")
    assert "'1.0e'" in str(err) and "line 250125" in str(err)


@pytest.mark.parametrize(
    ("felis", "text", "expected"),
    [
        ("boolean", "maybe", "boolean (bool)"),
        ("timestamp", "next tuesday", "timestamp (timestamp[us])"),
        ("int", "1.5", "int (int32)"),
        ("long", "12345678901234567890", "long (int64)"),
    ],
)
def test_csv_values_that_do_not_parse(tmp_path, felis, text, expected):
    path = tmp_path / "t.csv"
    path.write_text(f"id,v\n0,\n1,{text}\n")
    err = error_of(path, make_spec(("id", "long"), ("v", felis)))
    assert (err.row, err.column) == (1, "v")
    assert f"value {text!r} is not a valid {expected} (line 3)" in str(err)


def test_csv_integer_out_of_range(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("b\n1\n-128\n300\n")
    err = error_of(path, make_spec(("b", "byte")))
    assert (err.row, err.column) == (2, "b")
    assert "'300'" in str(err) and "line 4" in str(err) and "byte (int8)" in str(err)


def test_csv_wrong_field_count_names_row_and_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    err = error_of(path, make_spec(("a", "long"), ("b", "long"), ("c", "long")))
    assert err.row == 1
    assert "expected 3 fields, found 2" in str(err) and "line 3" in str(err)


def test_csv_invalid_utf8_in_a_string_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"s\nok\nbad\xff\n")
    err = error_of(path, make_spec(("s", "string")))
    assert (err.row, err.column) == (1, "s")
    assert "not valid UTF-8" in str(err) and "line 3" in str(err)


def test_csv_without_spec_reports_values_beyond_the_inferred_type(tmp_path):
    # Types are inferred from the first block (a few MB); the bad value lies beyond it.
    pad = "p" * 60
    rows = [f"{i},{pad}" for i in range(120_000)] + [f"oops,{pad}"]
    path = tmp_path / "t.csv"
    path.write_text("n,pad\n" + "\n".join(rows) + "\n")
    assert read_schema(path).field("n").type == pa.int64()
    err = error_of(path, None)
    assert (err.row, err.column) == (120_000, "n") and "'oops'" in str(err)
    assert "line 120002" in str(err)


def test_csv_empty_line_is_null_in_a_one_column_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("k\n1\n\n3\n")
    assert read_all(path, make_spec(("k", "int"))).column("k").to_pylist() == [1, None, 3]


def test_csv_header_is_required(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="header line"):
        read_schema(empty)
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("1,2.5\n3,4\n")
    with pytest.raises(InputError, match="must be a header"):
        read_schema(numbers)


def test_corrupt_gzip_csv(tmp_path):
    good = write_as(pa.table({"a": list(range(5000))}), tmp_path / "t.csv.gz", "csv")
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(good.read_bytes()[:200])
    err = error_of(cut, make_spec(("a", "long")))
    assert "cannot" in str(err)


# -- Parquet errors ---------------------------------------------------------------------------


def test_truncated_parquet(tmp_path):
    table = pa.table({"a": np.arange(10_000), "b": np.random.default_rng(1).random(10_000)})
    good = write_as(table, tmp_path / "good.parquet", "parquet")
    cut = tmp_path / "cut.parquet"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    err = error_of(cut, None)
    assert "not a readable Parquet file" in str(err)
    with pytest.raises(InputError, match=r"cut\.parquet"):
        count_rows(cut)


# -- FITS ---------------------------------------------------------------------------------------


def test_truncated_fits_data_unit(tmp_path):
    table = pa.table({"a": np.arange(5000, dtype=np.int64)})
    good = write_as(table, tmp_path / "good.fits", "fits")
    cut = tmp_path / "cut.fits"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) - 20_000])
    err = error_of(cut, None)
    assert "truncated" in str(err)


def test_truncated_gzipped_fits(tmp_path):
    table = pa.table({"a": np.arange(50_000, dtype=np.int64)})
    good = write_as(table, tmp_path / "good.fits.gz", "fits")
    cut = tmp_path / "cut.fits.gz"
    cut.write_bytes(good.read_bytes()[:-3000])
    err = error_of(cut, None)
    assert "decompress" in str(err) or "truncated" in str(err)


def test_not_a_fits_file(tmp_path):
    path = tmp_path / "junk.fits"
    path.write_bytes(b"SIMPLE = garbage" * 10)
    assert "not a readable FITS file" in str(error_of(path, None))


def write_fits(path: Path, *hdus: fits.hdu.base.ExtensionHDU) -> Path:
    fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(path)
    return path


def test_fits_first_bintable_or_chosen_hdu(tmp_path):
    first = fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="J", array=np.array([1, 2]))], name="FIRST"
    )
    second = fits.BinTableHDU.from_columns(
        [fits.Column(name="b", format="D", array=np.array([0.5]))], name="SECOND"
    )
    path = write_fits(tmp_path / "t.fits", fits.ImageHDU(np.zeros((2, 2))), first, second)
    assert read_schema(path).names == ["a"]
    assert read_all(path, None, hdu="SECOND").column("b").to_pylist() == [0.5]
    assert count_rows(path, hdu=3) == 1
    with pytest.raises(InputError, match="not a binary table"):
        read_schema(path, hdu=1)
    with pytest.raises(InputError, match="no HDU 'NOPE'"):
        read_schema(path, hdu="NOPE")


def test_fits_without_table(tmp_path):
    path = tmp_path / "image.fits"
    fits.HDUList([fits.PrimaryHDU(np.zeros((3, 3)))]).writeto(path)
    with pytest.raises(InputError, match="no binary table"):
        read_schema(path)


def test_fits_conventions_tnull_nan_unsigned_and_strings(tmp_path):
    columns = [
        fits.Column(name="i", format="J", null=-99, array=np.array([5, -99, 7], dtype=np.int32)),
        fits.Column(name="f", format="E", array=np.array([1.5, np.nan, -0.0], dtype=np.float32)),
        fits.Column(
            name="u", format="J", bzero=2**31, array=np.array([0, 2**32 - 1, 9], np.uint32)
        ),
        fits.Column(name="s", format="6A", array=np.array([b"ab   ", b"", b" c"])),
    ]
    path = write_fits(tmp_path / "t.fits", fits.BinTableHDU.from_columns(columns))
    assert [f.type for f in read_schema(path)] == [
        pa.int32(),
        pa.float32(),
        pa.uint32(),
        pa.string(),
    ]
    got = read_all(path, make_spec(("i", "long"), ("f", "double"), ("u", "long"), ("s", "string")))
    assert got.column("i").to_pylist() == [5, None, 7]
    assert got.column("f").to_pylist() == [1.5, None, -0.0]
    assert got.column("u").to_pylist() == [0, 2**32 - 1, 9]
    assert got.column("s").to_pylist() == ["ab", None, " c"]
    required = read_all(
        path, make_spec(("i", "long"), ("f", "double"), ("u", "long"), ("s", "string", False))
    )
    assert required.column("s").to_pylist() == ["ab", "", " c"]


def test_fits_unsigned_and_signed_byte_offsets(tmp_path):
    table = pa.table(
        {
            "i8": pa.array([-128, 127, None], pa.int8()),
            "u8": pa.array([0, 255, None], pa.uint8()),
            "u16": pa.array([0, 65535, None], pa.uint16()),
            "u64": pa.array([0, 2**64 - 1, None], pa.uint64()),
        }
    )
    path = write_as(table, tmp_path / "t.fits", "fits")
    with fits.open(path) as hdul:
        header = hdul[1].header
        assert (header["TFORM1"], header["TZERO1"]) == ("B", -128)
        assert (header["TFORM4"], header["TZERO4"]) == ("K", 2**63)
    assert read_schema(path) == table.schema
    assert read_all(path, None).equals(table)
    # Converting to the stored Felis types checks the range of every value.
    spec = make_spec(("i8", "byte"), ("u8", "short"), ("u16", "int"), ("u64", "long"))
    err = error_of(path, spec)
    assert (err.row, err.column) == (1, "u64") and "18446744073709551615" in str(err)


def test_fits_scaled_integers_become_physical_floats(tmp_path):
    stored = np.array([0, 3, 20, -1], np.int16)
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="I", array=stored)])
    # Set after the data are stored, so the file holds the raw integers above.
    hdu.header["TSCAL1"] = 0.5
    hdu.header["TZERO1"] = 10.0
    hdu.header["TNULL1"] = -1
    path = write_fits(tmp_path / "t.fits", hdu)
    assert read_schema(path).field("flux").type == pa.float64()
    assert read_all(path, None).column("flux").to_pylist() == [10.0, 11.5, 20.0, None]


def test_fits_tile_compressed_table_is_rejected(tmp_path):
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="a", format="J", array=[1])])
    hdu.header["ZTABLE"] = True
    path = write_fits(tmp_path / "t.fz", hdu)
    assert "tile-compressed" in str(error_of(path, None))


def test_fits_big_endian_values_become_native(tmp_path):
    values = np.array([1, 256, -2, 2**40], dtype=">i8")
    path = write_fits(
        tmp_path / "t.fits",
        fits.BinTableHDU.from_columns([fits.Column(name="k", format="K", array=values)]),
    )
    assert read_all(path, None).column("k").to_pylist() == [1, 256, -2, 2**40]


def test_fits_invalid_logical_byte(tmp_path):
    table = pa.table({"ok": pa.array([True, False, True])})
    path = write_as(table, tmp_path / "t.fits", "fits")
    data = bytearray(path.read_bytes())
    with fits.open(path) as hdul:
        start = hdul.fileinfo(1)["datLoc"]
    data[start + 2] = ord("x")
    path.write_bytes(bytes(data))
    err = error_of(path, None)
    assert (err.row, err.column) == (2, "ok") and "invalid logical byte b'x'" in str(err)


def test_fits_vector_column_is_rejected(tmp_path):
    column = fits.Column(name="v", format="3E", array=np.zeros((2, 3), dtype=np.float32))
    path = write_fits(tmp_path / "t.fits", fits.BinTableHDU.from_columns([column]))
    err = error_of(path, None)
    assert "'v'" in str(err) and "3E" in str(err)


# -- VOTable -------------------------------------------------------------------------------------

VOTABLE = """<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE>
<TABLE name="first"><FIELD name="a" datatype="int"/><DATA><TABLEDATA>
<TR><TD>1</TD></TR></TABLEDATA></DATA></TABLE>
<TABLE name="second">
<FIELD name="b" datatype="bit"/><FIELD name="u" datatype="unsignedByte"/>
<FIELD name="s" datatype="char" arraysize="*"/>
<DATA><TABLEDATA>
<TR><TD>1</TD><TD>0</TD><TD>x</TD></TR>
<TR><TD></TD><TD>200</TD><TD></TD></TR>
</TABLEDATA></DATA></TABLE>
</RESOURCE></VOTABLE>
"""


def test_votable_table_index_bit_and_unsigned_byte(tmp_path):
    path = tmp_path / "t.vot"
    path.write_text(VOTABLE)
    assert read_schema(path).names == ["a"]
    assert read_schema(path, table_index=1).types == [pa.bool_(), pa.uint8(), pa.string()]
    got = read_all(path, None, table_index=1)
    assert got.column("b").to_pylist() == [True, None]
    assert got.column("u").to_pylist() == [0, 200]
    assert got.column("s").to_pylist() == ["x", None]
    # Felis byte is int8: 200 does not fit.
    err = error_of(path, make_spec(("b", "boolean"), ("u", "byte"), ("s", "string")), table_index=1)
    assert (err.row, err.column) == (1, "u") and "value 200" in str(err)
    with pytest.raises(InputError, match="no TABLE with index 2"):
        read_schema(path, table_index=2)


def test_malformed_votable(tmp_path):
    good = write_as(pa.table({"a": list(range(50))}), tmp_path / "good.vot", "votable")
    cut = tmp_path / "cut.vot"
    cut.write_text(good.read_text()[:700])
    assert "not a readable VOTable" in str(error_of(cut, None))
    html = tmp_path / "page.xml"
    html.write_text("<html><body>not a table</body></html>")
    assert "not a readable VOTable" in str(error_of(html, None))


@pytest.mark.parametrize(
    ("field", "cell", "fragment"),
    [
        ('datatype="int"', "abc", "abc"),
        ('datatype="double"', "x1", "x1"),
        ('datatype="short"', "40000", "40000"),
    ],
)
def test_votable_unreadable_values(tmp_path, field, cell, fragment):
    path = tmp_path / "t.vot"
    path.write_text(
        '<?xml version="1.0"?><VOTABLE version="1.4" '
        'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
        f'<FIELD name="v" {field}/><DATA><TABLEDATA>'
        f"<TR><TD>1</TD></TR><TR><TD>{cell}</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE>"
        "</VOTABLE>"
    )
    err = error_of(path, None)
    assert fragment in str(err)


def test_gzip_votable_and_csv_are_read_transparently(tmp_path):
    table = pa.table({"a": [1, 2, 3]})
    for name, fmt in [("t.vot.gz", "votable"), ("t.csv.gz", "csv")]:
        path = write_as(table, tmp_path / name, fmt)
        with gzip.open(path) as f:
            assert f.read(5)  # really gzip
        assert read_all(path, make_spec(("a", "long"))).column("a").to_pylist() == [1, 2, 3]


def test_parquet_rejects_nonpositive_batch_rows(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    from qcat.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_rows"):
        iter_batches(path, None, batch_rows=0)
