"""SODA 1.0 request parameters: parsed, checked, and expanded into cutouts.

Names are case-insensitive (DALI 1.1), values are not. Every parameter may
be repeated. The parameters (SODA 1.0 section 3.3, values as DALI 1.1
section 3.3 defines them):

| name | value | meaning |
| --- | --- | --- |
| ID | dataset identifier | the image (``ivo://qcat/<collection>?<obs_id>``) |
| CIRCLE | ``ra dec radius`` (deg) | a circle |
| POLYGON | ``ra1 dec1 ra2 dec2 ra3 dec3 ...`` (deg) | a polygon, 3+ vertices |
| POS | ``CIRCLE ...``, ``POLYGON ...`` or ``RANGE ra1 ra2 dec1 dec2`` | any of them |
| BAND | ``lo hi`` (m, vacuum wavelength) | must overlap the image's band |
| TIME | ``lo hi`` (MJD) | must overlap the image's exposure |
| POL | a polarization state (``I``, ``Q``, ...) | must be one of the image's |

CIRCLE, POLYGON and POS values are all spatial regions: each one is a
separate cutout. Every ID x region x BAND x TIME combination is a cutout;
POL values together form one constraint (the states to keep).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

from qcat.geometry import Circle, GeometryError, Polygon
from services.sia.cutout_region import CutoutRegion, SkyRange
from services.sia.image_index import ImageRecord
from services.sia.soda_errors import MultiValuedParamNotSupported, NoOverlap, UsageError

#: Polarization states of ObsCore 1.1 / SODA 1.0.
POL_STATES = ("I", "Q", "U", "V", "RR", "LL", "RL", "LR", "XX", "YY", "XY", "YX", "POLI", "POLA")
#: Parameters this service reads; other names are ignored (DALI).
SODA_PARAMETERS = ("ID", "CIRCLE", "POLYGON", "POS", "BAND", "TIME", "POL", "RUNID")
#: Parameters whose values make separate cutouts.
_MULTIPLYING = ("ID", "CIRCLE", "POLYGON", "POS", "BAND", "TIME")


@dataclass(frozen=True)
class Interval:
    """A closed interval; infinite ends allowed."""

    lo: float
    hi: float

    def overlaps(self, lo: float | None, hi: float | None) -> bool:
        """Whether it meets [``lo``, ``hi``] (an unknown end is unbounded)."""
        lo_v = -math.inf if lo is None else lo
        hi_v = math.inf if hi is None else hi
        return self.lo <= hi_v and lo_v <= self.hi


@dataclass(frozen=True)
class Cutout:
    """One cutout to make: an image ID and the constraints on it."""

    id: str
    region: CutoutRegion | None
    band: Interval | None
    time: Interval | None
    pol: tuple[str, ...]


@dataclass(frozen=True)
class SodaRequest:
    """A checked SODA request (every value of every parameter)."""

    ids: tuple[str, ...]
    regions: tuple[CutoutRegion, ...]
    bands: tuple[Interval, ...]
    times: tuple[Interval, ...]
    pol: tuple[str, ...]

    def cutouts(self) -> list[Cutout]:
        """Every ID x region x BAND x TIME combination, in the order given."""
        return [
            Cutout(i, r, b, t, self.pol)
            for i, r, b, t in itertools.product(
                self.ids, self.regions or (None,), self.bands or (None,), self.times or (None,)
            )
        ]


Pairs = Iterable[tuple[str, str]]


def values_by_name(pairs: Pairs) -> dict[str, list[str]]:
    """Upper-cased names -> their values in order (repeated names kept)."""
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.upper(), []).append(value)
    return out


def parse_request(params: dict[str, list[str]], *, single: bool) -> SodaRequest:
    """Check every parameter; ``single`` (sync): one cutout only, else
    :class:`MultiValuedParamNotSupported` naming the repeated parameter."""
    ids = tuple(v.strip() for v in params.get("ID", []))
    if not ids or any(not i for i in ids):
        raise UsageError("ID is missing: give the identifier of an image (ID=ivo://...)")
    if single:
        _single(params)
    regions: list[CutoutRegion] = []
    regions += [parse_circle(v, "CIRCLE") for v in params.get("CIRCLE", [])]
    regions += [parse_polygon(v, "POLYGON") for v in params.get("POLYGON", [])]
    regions += [parse_pos(v) for v in params.get("POS", [])]
    bands = tuple(parse_interval(v, "BAND", "m", lower=0.0) for v in params.get("BAND", []))
    times = tuple(parse_interval(v, "TIME", "MJD") for v in params.get("TIME", []))
    pol = tuple(dict.fromkeys(parse_pol(v) for v in params.get("POL", [])))
    return SodaRequest(ids, tuple(regions), bands, times, pol)


def _single(params: dict[str, list[str]]) -> None:
    for name in _MULTIPLYING:
        if len(params.get(name, [])) > 1:
            raise MultiValuedParamNotSupported(
                f"{name} is given {len(params[name])} times; /soda/sync makes one cutout per "
                "request: send one value, or use /soda/async for several cutouts"
            )
    spatial = [n for n in ("CIRCLE", "POLYGON", "POS") if params.get(n)]
    if len(spatial) > 1:
        raise MultiValuedParamNotSupported(
            f"{' and '.join(spatial)} are given together; /soda/sync takes one region: "
            "send one, or use /soda/async for several cutouts"
        )


def check_constraints(cutout: Cutout, record: ImageRecord) -> None:
    """:class:`NoOverlap` when BAND, TIME or POL select nothing of the image."""
    if cutout.band is not None and not cutout.band.overlaps(record.em_min, record.em_max):
        raise NoOverlap(
            f"BAND {cutout.band.lo:g} {cutout.band.hi:g} m does not overlap the image's band "
            f"{record.em_min:g} .. {record.em_max:g} m"
        )
    if cutout.time is not None and not cutout.time.overlaps(record.t_min, record.t_max):
        raise NoOverlap(
            f"TIME {cutout.time.lo:g} {cutout.time.hi:g} (MJD) does not overlap the image's "
            f"exposure {record.t_min:g} .. {record.t_max:g}"
        )
    if cutout.pol:
        states = {s for s in (record.pol_states or "").split("/") if s}
        if not states:
            raise NoOverlap("POL was given but the image has no polarization states")
        if not states.intersection(cutout.pol):
            raise NoOverlap(
                f"POL {' '.join(cutout.pol)} selects none of the image's states "
                f"{' '.join(sorted(states))}"
            )


# -- values -----------------------------------------------------------------------------


def _numbers(value: str, name: str, *, allow_inf: bool = False) -> list[float]:
    out = []
    for token in value.split():
        try:
            number = float(token)
        except ValueError:
            raise UsageError(f"{name}: {token!r} is not a number (in {value!r})") from None
        if math.isnan(number) or (math.isinf(number) and not allow_inf):
            raise UsageError(f"{name}: {token!r} is not a finite number (in {value!r})")
        out.append(number)
    return out


def _check_ra(ra: float, name: str) -> None:
    if not 0.0 <= ra <= 360.0:
        raise UsageError(f"{name}: ra = {ra:g} is outside [0, 360] degrees")


def _check_dec(dec: float, name: str) -> None:
    if not -90.0 <= dec <= 90.0:
        raise UsageError(f"{name}: dec = {dec:g} is outside [-90, 90] degrees")


def parse_circle(value: str, name: str) -> Circle:
    """``ra dec radius`` in degrees."""
    numbers = _numbers(value, name)
    if len(numbers) != 3:
        raise UsageError(
            f"{name} needs 3 numbers 'ra dec radius' in degrees, got {len(numbers)}: {value!r}"
        )
    ra, dec, radius = numbers
    _check_ra(ra, name)
    _check_dec(dec, name)
    if not 0.0 < radius <= 180.0:
        raise UsageError(f"{name}: the radius must be > 0 and <= 180 degrees, got {radius:g}")
    return Circle(ra % 360.0, dec, radius)


def parse_polygon(value: str, name: str) -> Polygon:
    """``ra1 dec1 ra2 dec2 ...`` in degrees, at least 3 vertices."""
    numbers = _numbers(value, name)
    if len(numbers) % 2 or len(numbers) < 6:
        raise UsageError(
            f"{name} needs at least 3 vertices as 'ra1 dec1 ra2 dec2 ra3 dec3 ...' "
            f"(an even count of 6 or more numbers), got {len(numbers)}: {value!r}"
        )
    vertices = list(zip(numbers[0::2], numbers[1::2], strict=True))
    for ra, dec in vertices:
        _check_ra(ra, name)
        _check_dec(dec, name)
    try:
        return Polygon(tuple((ra % 360.0, dec) for ra, dec in vertices))
    except GeometryError as e:
        raise UsageError(f"{name}: {e}") from None


def parse_range(value: str, name: str) -> SkyRange:
    """``ra1 ra2 dec1 dec2`` in degrees; infinite ends allowed; ra1 > ra2 crosses ra = 0."""
    numbers = _numbers(value, name, allow_inf=True)
    if len(numbers) != 4:
        raise UsageError(
            f"{name} RANGE needs 4 numbers 'ra1 ra2 dec1 dec2' in degrees, got "
            f"{len(numbers)}: {value!r}"
        )
    ra1, ra2, dec1, dec2 = numbers
    dec_lo, dec_hi = max(dec1, -90.0), min(dec2, 90.0)
    for dec in (dec1, dec2):
        if math.isfinite(dec):
            _check_dec(dec, name)
    if dec_lo > dec_hi:
        raise UsageError(f"{name} RANGE: dec1 = {dec1:g} is above dec2 = {dec2:g}")
    ra_lo = 0.0 if ra1 == -math.inf else ra1
    ra_hi = 360.0 if ra2 == math.inf else ra2
    for ra in (ra_lo, ra_hi):
        if math.isinf(ra):
            raise UsageError(f"{name} RANGE: ra1 cannot be +Inf nor ra2 -Inf: {value!r}")
        _check_ra(ra, name)
    full = ra_lo == 0.0 and ra_hi == 360.0
    return SkyRange(ra_lo % 360.0, ra_hi % 360.0, dec_lo, dec_hi, full_ra=full)


def parse_pos(value: str) -> CutoutRegion:
    """``CIRCLE ...``, ``POLYGON ...`` or ``RANGE ...`` (the DALI POS shapes)."""
    shape, _, rest = value.strip().partition(" ")
    kind = shape.upper()
    if kind == "CIRCLE":
        return parse_circle(rest, "POS CIRCLE")
    if kind == "POLYGON":
        return parse_polygon(rest, "POS POLYGON")
    if kind == "RANGE":
        return parse_range(rest, "POS")
    raise UsageError(
        f"POS must start with CIRCLE, RANGE or POLYGON, got {value!r} "
        "(e.g. POS=CIRCLE 10.5 -20.1 0.01)"
    )


def parse_interval(value: str, name: str, unit: str, *, lower: float = -math.inf) -> Interval:
    """``lo hi`` (infinite ends allowed); lo <= hi, both >= ``lower``."""
    numbers = _numbers(value, name, allow_inf=True)
    if len(numbers) != 2:
        raise UsageError(f"{name} needs 2 numbers 'lo hi' in {unit}, got {len(numbers)}: {value!r}")
    lo, hi = numbers
    if lo > hi:
        raise UsageError(f"{name}: lo = {lo:g} is above hi = {hi:g} ({unit})")
    if lo < lower and math.isfinite(lo):
        raise UsageError(f"{name}: {lo:g} {unit} is below {lower:g}")
    return Interval(lo, hi)


def parse_pol(value: str) -> str:
    """One polarization state."""
    state = value.strip().upper()
    if state not in POL_STATES:
        raise UsageError(
            f"POL={value!r} is not a polarization state; use one of {' '.join(POL_STATES)}"
        )
    return state
