"""When an image was taken: ObsCore ``t_min``, ``t_max`` (MJD) and ``t_exptime`` (s).

The start is MJD-OBS, else DATE-OBS (ISO 8601, or the old ``dd/mm/yy``);
the end is MJD-END, else DATE-END, else the start plus the exposure time
(EXPTIME, else EXPOSURE). The exposure time, when the header has none, is
the span between start and end. Values are taken in the header's own time
scale (TIMESYS); ObsCore does not fix one and images of one survey share it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class TimeRange:
    """Start and end (MJD, days) and exposure time (seconds); each may be unknown."""

    t_min: float | None
    t_max: float | None
    exptime: float | None


def _number(header: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return None


def _iso_mjd(value: Any) -> float | None:
    """MJD of a FITS date string (``2024-01-02T03:04:05[.s]``, ``2024-01-02``, ``02/01/24``)."""
    if not isinstance(value, str) or not value.strip():
        return None
    from astropy.time import Time

    text = value.strip()
    if len(text) == 8 and text[2] == "/" and text[5] == "/":  # dd/mm/yy, years 1900-1999
        day, month, year = text.split("/")
        text = f"19{year}-{month}-{day}"
    try:
        return float(Time(text, format="isot" if "T" in text else "iso").mjd)
    except ValueError:
        try:
            return float(Time(text).mjd)
        except ValueError:
            return None


def time_range(header: Mapping[str, Any]) -> TimeRange:
    """The time range the keywords of ``header`` give (see the module docstring)."""
    start = _number(header, "MJD-OBS", "MJD_OBS")
    if start is None:
        start = _iso_mjd(header.get("DATE-OBS"))
    exptime = _number(header, "EXPTIME", "EXPOSURE", "EXP_TIME")
    if exptime is not None and exptime < 0:
        exptime = None
    end = _number(header, "MJD-END", "MJD_END")
    if end is None:
        end = _iso_mjd(header.get("DATE-END"))
    if end is None and start is not None and exptime is not None:
        end = start + exptime / SECONDS_PER_DAY
    if end is not None and start is not None and end < start:
        end = None  # inconsistent header: trust the start only
    if exptime is None and start is not None and end is not None:
        exptime = (end - start) * SECONDS_PER_DAY
    return TimeRange(start, end, exptime)
