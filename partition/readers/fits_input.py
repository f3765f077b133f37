"""FITS binary-table input: headers parsed by astropy, rows read as memory-mapped slices.

astropy.io.fits locates the table and parses its header; the rows are then
read straight from the file through a NumPy memory map, one slice of
``batch_rows`` rows at a time, so memory stays bounded by the batch size. The
values are decoded here rather than by astropy's ``FITS_rec`` because that
turns NULL logicals into False and ignores TNULL. Decoding follows the FITS
standard (4.0, section 7.3):

- The table is the first BINTABLE extension, or the HDU given by index or
  EXTNAME. Tile-compressed tables (ZTABLE) are not supported.
- Columns must be scalars: L, B, I, J, K, E, D, or character strings nA.
- Big-endian values become native. Integer columns with the standard
  unsigned offsets (TZERO = 2**15, 2**31, 2**63 with TSCAL = 1) are read as
  unsigned integers, and B with TZERO = -128 as signed bytes; any other
  TSCAL/TZERO yields float64 physical values (raw * TSCAL + TZERO).
- An integer equal to the column's TNULL (compared before scaling) is NULL.
- NaN in a float column is NULL: FITS uses NaN as its float null, so a NaN
  value and a NULL cannot be told apart and both read as NULL.
- Logicals: 'T' is true, 'F' false, a zero byte NULL; any other byte is an error.
- Strings lose trailing spaces (insignificant in FITS). FITS has no NULL
  string, so an empty string is NULL when the wanted column is nullable and
  the empty string otherwise.
- A gzip-compressed file (``.fits.gz``) is decompressed into a temporary file
  first (it needs disk space for the uncompressed size, not memory).
"""

from __future__ import annotations

import gzip
import re
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from astropy.io import fits

from partition.readers.input_file import InputFile, reason
from partition.readers.lossless import ValueLoss, first_rejected
from qcat.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"
_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])(.*)$")

#: TFORM code -> (raw NumPy dtype, Arrow type without scaling).
_SCALARS: dict[str, tuple[str, pa.DataType]] = {
    "L": ("u1", pa.bool_()),
    "B": ("u1", pa.uint8()),
    "I": (">i2", pa.int16()),
    "J": (">i4", pa.int32()),
    "K": (">i8", pa.int64()),
    "E": (">f4", pa.float32()),
    "D": (">f8", pa.float64()),
}
#: TFORM code -> TZERO that maps the stored integers onto the other signedness.
_OFFSET_TYPES: dict[str, tuple[int, pa.DataType]] = {
    "B": (-(2**7), pa.int8()),
    "I": (2**15, pa.uint16()),
    "J": (2**31, pa.uint32()),
    "K": (2**63, pa.uint64()),
}
#: Bytes per element of every TFORM code (to reject unsupported ones clearly).
_ELEMENT_BYTES = {"L": 1, "X": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8}
_SUPPORTED = "L, B, I, J, K, E, D (one element each) and character strings nA"


@dataclass(frozen=True)
class FitsColumn:
    """One binary-table column as its header describes it."""

    name: str
    code: str
    repeat: int
    tnull: int | None
    tscal: float
    tzero: float

    @property
    def raw_dtype(self) -> str:
        """NumPy dtype of the stored (big-endian) values."""
        return f"S{self.repeat}" if self.code == "A" else _SCALARS[self.code][0]

    @property
    def offset_type(self) -> pa.DataType | None:
        """The Arrow type when TZERO is the standard signedness offset, else None."""
        if self.code in _OFFSET_TYPES and self.tscal == 1:
            tzero, arrow_type = _OFFSET_TYPES[self.code]
            if self.tzero == tzero:
                return arrow_type
        return None

    @property
    def scaled(self) -> bool:
        """Whether values are transformed by TSCAL/TZERO (other than the offsets)."""
        return self.offset_type is None and (self.tscal != 1 or self.tzero != 0)

    @property
    def arrow_type(self) -> pa.DataType:
        """Arrow type of the decoded values."""
        if self.code == "A":
            return pa.string()
        if self.offset_type is not None:
            return self.offset_type
        if self.scaled:
            return pa.float64()
        return _SCALARS[self.code][1]


def _parse_column(header: fits.Header, n: int) -> FitsColumn:
    name = str(header.get(f"TTYPE{n}", f"col{n}")).strip()
    tform = str(header.get(f"TFORM{n}", ""))
    match = _TFORM.match(tform)
    if not match:
        raise ValueError(f"column {name!r} has an invalid TFORM{n} {tform!r}")
    repeat = int(match.group(1) or 1)
    code = match.group(2)
    supported = code == "A" or (code in _SCALARS and repeat == 1)
    if not supported:
        raise ValueError(
            f"column {name!r} has TFORM{n} = {tform.strip()!r}, which cannot be ingested; "
            f"supported: {_SUPPORTED}"
        )
    tnull = header.get(f"TNULL{n}")
    return FitsColumn(
        name=name,
        code=code,
        repeat=repeat,
        tnull=int(tnull) if tnull is not None and code not in ("L", "A", "E", "D") else None,
        tscal=float(header.get(f"TSCAL{n}", 1)),
        # Keep TZERO exact: 2**63 does not survive a round trip through float.
        tzero=header.get(f"TZERO{n}", 0),
    )


def _describe_hdus(hdul: fits.HDUList) -> str:
    return ", ".join(
        f"{i} {h.name or '(no name)'} ({type(h).__name__})" for i, h in enumerate(hdul)
    )


class FitsInput(InputFile):
    """The binary table of a FITS file (see the module docstring for the conventions)."""

    def __init__(self, path: Path, hdu: int | str | None = None) -> None:
        super().__init__(path)
        with path.open("rb") as f:
            self._gzipped = f.read(2) == _GZIP_MAGIC
        try:
            with warnings.catch_warnings():
                # Truncation and non-standard headers are checked or tolerated here.
                warnings.simplefilter("ignore")
                with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                    index = self._find_table(hdul, hdu)
                    header = hdul[index].header
                    self._hdu = index
                    self._data_offset = int(hdul.fileinfo(index)["datLoc"])
                    self._row_bytes = int(header["NAXIS1"])
                    self._rows = int(header["NAXIS2"])
                    self._columns = [
                        _parse_column(header, n) for n in range(1, int(header["TFIELDS"]) + 1)
                    ]
        except InputError:
            raise
        except Exception as e:  # astropy raises many types for a broken file
            raise self.error(f"not a readable FITS file: {reason(e)}") from e
        self._dtype = self._record_dtype()
        if not self._gzipped:
            self._check_size(path)

    def _find_table(self, hdul: fits.HDUList, hdu: int | str | None) -> int:
        if hdu is None:
            for index, candidate in enumerate(hdul):
                if index and self._is_bintable(candidate):
                    return index
            raise self.error(
                "no binary table (BINTABLE) extension; the file has " + _describe_hdus(hdul)
            )
        try:
            chosen = hdul.index_of(hdu)
            candidate = hdul[chosen]
        except (KeyError, IndexError) as e:
            raise self.error(f"no HDU {hdu!r}; the file has {_describe_hdus(hdul)}") from e
        if not self._is_bintable(candidate):
            raise self.error(
                f"HDU {hdu!r} is not a binary table; the file has {_describe_hdus(hdul)}"
            )
        return int(chosen)

    def _is_bintable(self, hdu: Any) -> bool:
        if not isinstance(hdu, fits.BinTableHDU):
            return False
        if hdu.header.get("ZTABLE"):
            raise self.error(
                f"HDU {hdu.name!r} is a tile-compressed table, which is not supported; "
                "uncompress it first (funpack)"
            )
        return True

    def _record_dtype(self) -> np.dtype[Any]:
        offsets, offset = [], 0
        for column in self._columns:
            offsets.append(offset)
            offset += column.repeat * _ELEMENT_BYTES[column.code]
        if offset != self._row_bytes:
            raise self.error(
                f"the columns take {offset} bytes per row but NAXIS1 says {self._row_bytes}"
            )
        return np.dtype(
            {
                "names": [f"c{i}" for i in range(len(self._columns))],
                "formats": [c.raw_dtype for c in self._columns],
                "offsets": offsets,
                "itemsize": self._row_bytes,
            }
        )

    def _check_size(self, data_path: Path) -> None:
        needed = self._data_offset + self._row_bytes * self._rows
        actual = data_path.stat().st_size
        if actual < needed:
            raise self.error(
                f"the file is truncated: the table in HDU {self._hdu} needs {needed} bytes "
                f"({self._rows} rows of {self._row_bytes}) but the file has {actual}"
            )

    # -- InputFile --------------------------------------------------------

    def schema(self) -> pa.Schema:
        """Column names and decoded Arrow types."""
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self._columns])

    def count_rows(self) -> int:
        """NAXIS2 of the table's header."""
        return self._rows

    def batches(self, wanted: pa.Schema, batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Decoded row slices of at most ``batch_rows`` rows."""
        nullable = {f.name: f.nullable for f in wanted}
        schema = self.schema()
        with self._uncompressed() as data_path:
            self._check_size(data_path)
            if self._rows == 0:
                return
            records = np.memmap(
                data_path,
                dtype=self._dtype,
                mode="r",
                offset=self._data_offset,
                shape=(self._rows,),
            )
            for start in range(0, self._rows, batch_rows):
                chunk = records[start : start + batch_rows]
                arrays = [
                    self._decode(column, chunk[f"c{i}"], start, nullable.get(column.name, True))
                    for i, column in enumerate(self._columns)
                ]
                yield start, pa.RecordBatch.from_arrays(arrays, schema=schema)
            del records

    @contextmanager
    def _uncompressed(self) -> Iterator[Path]:
        if not self._gzipped:
            yield self.path
            return
        with tempfile.TemporaryDirectory(prefix="qcat-fits-") as tmp:
            target = Path(tmp) / "table.fits"
            try:
                with gzip.open(self.path, "rb") as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
            except (OSError, EOFError, zlib.error) as e:
                raise self.error(f"cannot decompress the file: {reason(e)}") from e
            yield target

    # -- decoding ---------------------------------------------------------

    def _decode(
        self, column: FitsColumn, raw: np.ndarray[Any, Any], first_row: int, nullable: bool
    ) -> pa.Array:
        if column.code == "L":
            return self._decode_logical(column, raw, first_row)
        if column.code == "A":
            return self._decode_string(column, raw, first_row, nullable)
        native = raw.astype(raw.dtype.newbyteorder("="))
        if column.code in ("E", "D"):
            values = native * column.tscal + column.tzero if column.scaled else native
            return pa.array(values, mask=np.isnan(values))
        null = native == column.tnull if column.tnull is not None else None
        offset_type = column.offset_type
        if offset_type is not None:
            # Adding TZERO = ±2**(bits-1) to a stored integer is flipping its sign bit.
            return pa.array(self._flip_sign_bit(native), type=offset_type, mask=null)
        if column.scaled:
            return pa.array(
                native.astype(np.float64) * column.tscal + float(column.tzero), mask=null
            )
        return pa.array(native, mask=null)

    @staticmethod
    def _flip_sign_bit(native: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        bits = 8 * native.itemsize
        unsigned = native.view(f"u{native.itemsize}")
        flipped = unsigned ^ np.array(1 << (bits - 1), dtype=unsigned.dtype)
        # B is stored unsigned and read signed; I/J/K the other way round.
        return flipped.view(f"i{native.itemsize}") if native.dtype.kind == "u" else flipped

    def _decode_logical(
        self, column: FitsColumn, raw: np.ndarray[Any, Any], first_row: int
    ) -> pa.Array:
        is_true = raw == ord("T")
        is_null = raw == 0
        invalid = ~(is_true | is_null | (raw == ord("F")))
        if invalid.any():
            index = int(np.argmax(invalid))
            raise self.error(
                f"invalid logical byte {bytes([int(raw[index])])!r}; FITS logicals are "
                "'T', 'F' or a zero byte for NULL",
                row=first_row + index,
                column=column.name,
            )
        return pa.array(is_true, mask=is_null)

    def _decode_string(
        self, column: FitsColumn, raw: np.ndarray[Any, Any], first_row: int, nullable: bool
    ) -> pa.Array:
        stripped = np.char.rstrip(np.asarray(raw), b" ")
        data = pa.array(stripped, type=pa.binary(), mask=(stripped == b"") if nullable else None)
        try:
            return data.cast(pa.string())
        except pa.ArrowInvalid:
            index = first_rejected(data, _utf8)
            assert index is not None  # the cast failed, so some value is not UTF-8
            raise self.error(
                f"value {data[index].as_py()!r} is not valid text (ASCII/UTF-8)",
                row=first_row + index,
                column=column.name,
            ) from None


def _utf8(values: pa.Array) -> pa.Array:
    try:
        return values.cast(pa.string())
    except pa.ArrowInvalid as e:
        raise ValueLoss(str(e)) from e
