"""Lossless conversions between Arrow types.

Ingest never changes a value silently. A conversion from a file's column type
to the stored type is allowed when

- the types guarantee it (int16 -> int32, float32 -> float64, int16 -> double,
  large_string -> string, ...), or
- it is checked value by value and every value survives unchanged: narrower
  integers (int64 -> int32, uint64 -> int64) when in range, int -> float when
  exactly representable, float64 -> float32 when the value round-trips, finer
  timestamps when no sub-unit part is dropped.

Anything else (float -> int, bool -> int, string -> number, ...) has no
converter. A checked conversion that meets a value it cannot keep raises
:class:`ValueLoss`; :func:`first_rejected` then finds which value it was.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class ValueLoss(Exception):
    """A value cannot be converted without changing it."""


Converter = Callable[[pa.Array], pa.Array]

#: Significand bits of each float width: integers up to 2**bits are exact.
_SIGNIFICAND_BITS = {16: 11, 32: 24, 64: 53}


def _identity(values: pa.Array) -> pa.Array:
    return values


def _cast_exact(target: pa.DataType) -> Converter:
    """A cast the types guarantee to be lossless."""

    def convert(values: pa.Array) -> pa.Array:
        return pc.cast(values, target)

    return convert


def _cast_checked(target: pa.DataType) -> Converter:
    """A cast Arrow checks value by value (integer range, timestamp truncation)."""

    def convert(values: pa.Array) -> pa.Array:
        try:
            return pc.cast(values, target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueLoss(str(e)) from e

    return convert


def _decoding(convert: Converter) -> Converter:
    """Decode a dictionary-encoded column, then convert its values."""

    def decode_and_convert(values: pa.Array) -> pa.Array:
        return convert(values.dictionary_decode())

    return decode_and_convert


def _all_null(target: pa.DataType) -> Converter:
    """A column of Arrow type null (no value anywhere) becomes nulls of ``target``."""

    def convert(values: pa.Array) -> pa.Array:
        return pa.nulls(len(values), target)

    return convert


def _int_to_float_checked(target: pa.DataType) -> Converter:
    """int -> float keeping only values the float represents exactly."""

    def convert(values: pa.Array) -> pa.Array:
        out = pc.cast(values, target, safe=False)
        info = np.iinfo(values.type.to_pandas_dtype())
        # A rounded value can land on 2**bits, outside the integer type; casting
        # it back would be undefined, so such values count as lost up front.
        in_range = pc.and_(
            pc.greater_equal(out, float(info.min)), pc.less(out, float(info.max) + 1.0)
        )
        back = pc.cast(pc.if_else(in_range, out, 0.0), values.type, safe=False)
        kept = pc.and_(in_range, pc.equal(back, values))
        if pc.any(pc.invert(kept)).as_py():
            raise ValueLoss(f"not exactly representable as {target}")
        return out

    return convert


def _float_narrowing_checked(target: pa.DataType) -> Converter:
    """float64 -> float32 keeping only values that round-trip bit for bit."""

    def convert(values: pa.Array) -> pa.Array:
        out = pc.cast(values, target, safe=False)
        back = pc.cast(out, values.type)
        kept = pc.or_(pc.equal(back, values), pc.and_(pc.is_nan(back), pc.is_nan(values)))
        if pc.any(pc.invert(kept)).as_py():
            raise ValueLoss(f"not exactly representable as {target}")
        return out

    return convert


def _integer_bits(t: pa.DataType) -> int:
    """Bits of magnitude an integer type holds (int8 -> 7, uint8 -> 8)."""
    return int(np.iinfo(t.to_pandas_dtype()).max).bit_length()


def _integer_range_contains(outer: pa.DataType, inner: pa.DataType) -> bool:
    o, i = np.iinfo(outer.to_pandas_dtype()), np.iinfo(inner.to_pandas_dtype())
    return bool(o.min <= i.min and i.max <= o.max)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _is_bytes(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    )


def lossless_converter(source: pa.DataType, target: pa.DataType) -> Converter | None:
    """The lossless conversion from ``source`` to ``target``, or None if there is none.

    The returned function converts one array; checked conversions raise
    :class:`ValueLoss` when a value would change.
    """
    if source == target:
        return _identity
    if pa.types.is_dictionary(source):
        inner = lossless_converter(source.value_type, target)
        return None if inner is None else _decoding(inner)
    if pa.types.is_null(source):
        return _all_null(target)
    if pa.types.is_integer(source) and pa.types.is_integer(target):
        if _integer_range_contains(target, source):
            return _cast_exact(target)
        return _cast_checked(target)
    if pa.types.is_integer(source) and pa.types.is_floating(target):
        if _integer_bits(source) <= _SIGNIFICAND_BITS[target.bit_width]:
            return _cast_exact(target)
        return _int_to_float_checked(target)
    if pa.types.is_floating(source) and pa.types.is_floating(target):
        if source.bit_width < target.bit_width:
            return _cast_exact(target)
        return _float_narrowing_checked(target)
    if _is_text(source) and _is_text(target):
        return _cast_exact(target)
    if _is_bytes(source) and _is_bytes(target) and not pa.types.is_fixed_size_binary(target):
        return _cast_exact(target)
    if (pa.types.is_timestamp(source) or pa.types.is_date(source)) and pa.types.is_timestamp(
        target
    ):
        # Time zones: Arrow keeps UTC instants, so dropping the zone keeps the instant.
        return _cast_checked(target)
    return None


def _rejects(convert: Converter, values: pa.Array) -> bool:
    try:
        convert(values)
    except ValueLoss:
        return True
    return False


def first_rejected(values: pa.Array, convert: Converter) -> int | None:
    """Index of the first value ``convert`` rejects, or None if it accepts them all.

    Converters work element by element, so a slice is rejected exactly when
    it holds a rejected value; bisection finds the first one in O(n) work.
    """
    if not _rejects(convert, values):
        return None
    lo, hi = 0, len(values)  # the first rejected value lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _rejects(convert, values.slice(lo, mid - lo)):
            hi = mid
        else:
            lo = mid
    return lo
