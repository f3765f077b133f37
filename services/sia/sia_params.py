"""SIA 2.0 query parameters: read from the request, checked, turned into typed constraints.

DALI 1.1 rules: names in any case, values as given, unknown parameters
ignored. Unlike TAP, most SIA parameters may be repeated: the values of one
parameter are OR-ed, different parameters AND-ed. A POST may be
``application/x-www-form-urlencoded`` or ``multipart/form-data``; parameters
in its URL count too. An empty value counts as not given.

Every error is a :class:`SiaParameterError` (HTTP 400) naming the parameter
and the value at fault.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request

from qcat.geometry import Circle, GeometryError, Polygon
from services.form import request_pairs
from services.settings import ServiceSettings
from services.sia.sia_range import SkyRange, sky_range
from services.tap.formats import DEFAULT_FORMAT, OutputFormat, UnknownFormat, find_format
from services.tap.params import ParameterError

#: A POS region.
PosRegion = Circle | Polygon | SkyRange

#: Interval parameters (DALI "lo hi", -Inf/+Inf, or one value).
INTERVAL_PARAMS = ("BAND", "TIME", "FOV", "SPATRES", "EXPTIME", "TIMERES", "SPECRP")
#: String parameters, matched exactly.
STRING_PARAMS = ("ID", "COLLECTION", "FACILITY", "INSTRUMENT", "DPTYPE", "TARGET", "FORMAT")
#: ObsCore 1.1 polarization states (pol_states holds them as ``/I/Q/``).
POL_STATES = ("I", "Q", "U", "V", "RR", "LL", "RL", "LR", "XX", "YY", "XY", "YX", "POLI", "POLA")
#: Parameters that take one value only.
SINGLE_PARAMS = ("MAXREC", "RESPONSEFORMAT")
#: Most values one request may give (all parameters together).
MAX_VALUES = 1000
MAX_FORM_FIELDS = 1000
MAX_PART_BYTES = 1_000_000

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.IGNORECASE)


class SiaParameterError(ParameterError):
    """An SIA parameter has a value the service cannot use (HTTP 400)."""


#: Upper-cased parameter name -> its values, in the order given.
MultiParams = dict[str, list[str]]


@dataclass(frozen=True)
class Interval:
    """``lo <= value <= hi``; either side may be infinite (unbounded)."""

    lo: float
    hi: float


@dataclass(frozen=True)
class SiaQuery:
    """A checked SIA query: the constraints (each tuple OR-ed, all AND-ed) and the output."""

    pos: tuple[PosRegion, ...] = ()
    #: Interval parameter name -> its intervals.
    intervals: Mapping[str, tuple[Interval, ...]] = field(default_factory=dict)
    #: String parameter name -> its values.
    strings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pol: tuple[str, ...] = ()
    calib: tuple[int, ...] = ()
    maxrec: int = 1000
    response_format: OutputFormat = DEFAULT_FORMAT


async def read_sia_params(request: Request) -> MultiParams:
    """Every parameter of the request (URL and, for a POST, the body), names upper-cased."""
    pairs = await request_pairs(
        request,
        max_fields=MAX_FORM_FIELDS,
        max_files=MAX_FORM_FIELDS,
        max_part_bytes=MAX_PART_BYTES,
        error=SiaParameterError,
    )
    if len(pairs) > MAX_VALUES:
        raise SiaParameterError(f"too many parameter values ({len(pairs)}; at most {MAX_VALUES})")
    params: MultiParams = {}
    for name, value in pairs:
        if value.strip():
            params.setdefault(name.upper(), []).append(value)
    return params


def parse_query(params: MultiParams, settings: ServiceSettings) -> SiaQuery:
    """Check every parameter SIA 2.0 defines; :class:`SiaParameterError` names the bad one."""
    for name in SINGLE_PARAMS:
        if len(set(params.get(name, []))) > 1:
            raise SiaParameterError(f"{name} is given more than once with different values")
    return SiaQuery(
        pos=tuple(parse_pos(v) for v in params.get("POS", [])),
        intervals={
            name: tuple(parse_interval(name, v) for v in params[name])
            for name in INTERVAL_PARAMS
            if name in params
        },
        strings={name: tuple(params[name]) for name in STRING_PARAMS if name in params},
        pol=tuple(parse_pol(v) for v in params.get("POL", [])),
        calib=tuple(parse_calib(v) for v in params.get("CALIB", [])),
        maxrec=parse_maxrec(params.get("MAXREC", [None])[0], settings),
        response_format=parse_response_format(params.get("RESPONSEFORMAT", [None])[0]),
    )


def parse_number(name: str, text: str, value: str) -> float:
    """One DALI number (``-Inf``/``+Inf`` allowed, NaN not) of parameter ``name``."""
    if not _NUMBER.fullmatch(text):
        raise SiaParameterError(f"{name}={value!r}: {text!r} is not a number")
    return float(text)


def parse_interval(name: str, value: str) -> Interval:
    """``lo hi`` (either may be -Inf/+Inf) or one finite value ``v`` (meaning ``v v``)."""
    words = value.split()
    if len(words) not in (1, 2):
        raise SiaParameterError(
            f"{name}={value!r}: expected an interval 'lo hi' or one value, got {len(words)} values"
        )
    numbers = [parse_number(name, w, value) for w in words]
    if len(numbers) == 1:
        if not math.isfinite(numbers[0]):
            raise SiaParameterError(f"{name}={value!r}: a single value must be finite")
        return Interval(numbers[0], numbers[0])
    lo, hi = numbers
    if lo > hi:
        raise SiaParameterError(f"{name}={value!r}: the lower bound is larger than the upper bound")
    if lo == math.inf or hi == -math.inf:
        raise SiaParameterError(f"{name}={value!r}: the interval is empty")
    return Interval(lo, hi)


def parse_pos(value: str) -> PosRegion:
    """``CIRCLE ra dec r``, ``RANGE ra1 ra2 dec1 dec2`` or ``POLYGON ra1 dec1 ra2 dec2 ...``
    (ICRS degrees)."""
    words = value.split()
    shape = words[0].upper() if words else ""
    numbers = [parse_number("POS", w, value) for w in words[1:]]
    try:
        if shape == "CIRCLE":
            _count(value, numbers, 3, "CIRCLE ra dec radius")
            _finite(value, numbers)
            return Circle(numbers[0], numbers[1], numbers[2])
        if shape == "RANGE":
            _count(value, numbers, 4, "RANGE ra1 ra2 dec1 dec2")
            return sky_range(*numbers)
        if shape == "POLYGON":
            if len(numbers) < 6 or len(numbers) % 2:
                raise SiaParameterError(
                    f"POS={value!r}: POLYGON needs at least 3 vertices given as ra dec pairs "
                    f"(6 or more numbers, an even count), got {len(numbers)} numbers"
                )
            _finite(value, numbers)
            return Polygon(tuple(zip(numbers[0::2], numbers[1::2], strict=True)))
    except GeometryError as e:
        raise SiaParameterError(f"POS={value!r}: {e}") from None
    raise SiaParameterError(
        f"POS={value!r}: the shape must be CIRCLE, RANGE or POLYGON, not {shape or 'nothing'!r}"
    )


def _count(value: str, numbers: Sequence[float], expected: int, form: str) -> None:
    if len(numbers) != expected:
        raise SiaParameterError(
            f"POS={value!r}: expected {form} ({expected} numbers), got {len(numbers)} numbers"
        )


def _finite(value: str, numbers: Sequence[float]) -> None:
    if not all(math.isfinite(x) for x in numbers):
        raise SiaParameterError(f"POS={value!r}: CIRCLE and POLYGON take finite numbers only")


def parse_pol(value: str) -> str:
    """One polarization state of :data:`POL_STATES` (any case)."""
    state = value.strip().upper()
    if state not in POL_STATES:
        raise SiaParameterError(
            f"POL={value!r}: not a polarization state; use one of {', '.join(POL_STATES)}"
        )
    return state


def parse_calib(value: str) -> int:
    """A calibration level: a non-negative integer."""
    text = value.strip()
    if not text.isdigit():
        raise SiaParameterError(f"CALIB={value!r}: a calibration level is an integer from 0")
    return int(text)


def maxrec_limits(settings: ServiceSettings) -> tuple[int, int]:
    """``(default, hard)``: the settings ``sia_maxrec_default`` and ``sia_maxrec_hard``."""
    return settings.sia_maxrec_default, settings.sia_maxrec_hard


def parse_maxrec(value: str | None, settings: ServiceSettings) -> int:
    """MAXREC as a non-negative integer cut to the hard limit; the default when absent."""
    default, hard = maxrec_limits(settings)
    if value is None:
        return min(default, hard)
    text = value.strip()
    if not re.fullmatch(r"\+?\d+", text):
        raise SiaParameterError(f"MAXREC={value!r}: MAXREC must be a non-negative integer")
    return min(int(text), hard)


def parse_response_format(value: str | None) -> OutputFormat:
    """RESPONSEFORMAT: a format name or MIME type (docs/formats.md); VOTable by default."""
    if value is None:
        return DEFAULT_FORMAT
    try:
        return find_format(value)
    except UnknownFormat as e:
        raise SiaParameterError(str(e)) from None
