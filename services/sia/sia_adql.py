"""An SIA query as ONE ADQL query on ``ivoa.ObsCore``.

Each parameter becomes one condition (its values OR-ed), the conditions are
AND-ed. The spatial condition is a prefilter that can never lose an image:
the footprint lies in the circle of radius ``s_fov / 2`` around
``(s_ra, s_dec)`` (ObsCore contract), so an image is kept when that circle
meets the region; :mod:`services.sia.sia_overlap` then decides exactly on the
``s_region`` polygons of the rows returned.

| parameter | condition |
| --- | --- |
| POS (any) | first ``s_dec_max >= lo AND s_dec_min <= hi``, the region's dec extent |
| POS CIRCLE | ``1 = INTERSECTS(CIRCLE(s_ra, s_dec, s_fov / 2 + slack), region)`` |
| POS POLYGON | the same with a circle holding the polygon (:func:`polygon_cap`) |
| POS RANGE | the footprint circle's dec band; INTERSECTS with a circle holding the range |
| BAND, TIME | the data's interval overlaps: ``em_min <= hi AND em_max >= lo`` |
| FOV, SPATRES, EXPTIME, TIMERES, SPECRP | the value lies in the interval |
| POL | ``pol_states LIKE '%/I/%'`` |
| ID, COLLECTION, FACILITY, INSTRUMENT, DPTYPE, TARGET | the column equals one of the values |
| FORMAT | ``access_format`` or ``file_format`` equals one of the values |
| CALIB | ``calib_level IN (...)`` |

Infinite bounds leave their comparison out (both infinite: the value must
not be NULL).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from qcat.geometry import Circle, Polygon
from qcat.geometry.vectors import angle, to_radec, unit_vectors
from services.sia.sia_dec import region_dec_range
from services.sia.sia_params import Interval, PosRegion, SiaQuery
from services.sia.sia_range import SLACK_DEG, SkyRange

TABLE = "ivoa.ObsCore"

#: Interval parameter -> (column of the data's lower bound, of its upper bound).
INTERVAL_COLUMNS: dict[str, tuple[str, str]] = {
    "BAND": ("em_min", "em_max"),
    "TIME": ("t_min", "t_max"),
    "FOV": ("s_fov", "s_fov"),
    "SPATRES": ("s_resolution", "s_resolution"),
    "EXPTIME": ("t_exptime", "t_exptime"),
    "TIMERES": ("t_resolution", "t_resolution"),
    "SPECRP": ("em_res_power", "em_res_power"),
}

#: String parameter -> the columns one of which must equal a value.
STRING_COLUMNS: dict[str, tuple[str, ...]] = {
    "ID": ("obs_publisher_did",),
    "COLLECTION": ("obs_collection",),
    "FACILITY": ("facility_name",),
    "INSTRUMENT": ("instrument_name",),
    "DPTYPE": ("dataproduct_type",),
    "TARGET": ("target_name",),
    "FORMAT": ("access_format", "file_format"),
}

#: The footprint circle, widened so rounding can never drop an image.
FOOTPRINT_CIRCLE = f"CIRCLE(s_ra, s_dec, s_fov / 2 + {SLACK_DEG!r})"


def sia_adql(query: SiaQuery) -> str:
    """The ADQL text selecting every ObsCore column of the candidate images."""
    conditions: list[str] = []
    if query.pos:
        conditions.append(_any(pos_condition(r) for r in query.pos))
    for name, intervals in query.intervals.items():
        low, high = INTERVAL_COLUMNS[name]
        conditions.append(_any(interval_condition(low, high, i) for i in intervals))
    if query.pol:
        conditions.append(_any(f"pol_states LIKE {_string(f'%/{p}/%')}" for p in query.pol))
    for name, values in query.strings.items():
        listed = ", ".join(_string(v) for v in dict.fromkeys(values))
        conditions.append(_any(f"{column} IN ({listed})" for column in STRING_COLUMNS[name]))
    if query.calib:
        levels = ", ".join(str(c) for c in sorted(set(query.calib)))
        conditions.append(f"calib_level IN ({levels})")
    where = "\nWHERE " + "\n  AND ".join(conditions) if conditions else ""
    return f"SELECT * FROM {TABLE}{where}"


def pos_condition(region: PosRegion) -> str:
    """The spatial prefilter of one POS region (never false for an overlapping image).

    Its declination bounds come first: constant comparisons DuckDB checks against the
    Parquet row groups' statistics (ObsCore is sorted by ``s_dec_min``), so the
    INTERSECTS test after them only runs on the rows of the row groups not skipped.
    """
    return " AND ".join([*dec_bounds(region), _shape_condition(region)])


def dec_bounds(region: PosRegion) -> list[str]:
    """``s_dec_max >= lo``, ``s_dec_min <= hi`` for the region's dec extent (none at a pole)."""
    lo, hi = region_dec_range(region)
    bounds = []
    if lo > -90.0:
        bounds.append(f"s_dec_max >= {_num(lo)}")
    if hi < 90.0:
        bounds.append(f"s_dec_min <= {_num(hi)}")
    return bounds


def _shape_condition(region: PosRegion) -> str:
    if isinstance(region, Circle):
        radius = min(region.radius + SLACK_DEG, 180.0)
        shape = f"CIRCLE({_num(region.ra)}, {_num(region.dec)}, {_num(radius)})"
        return f"1 = INTERSECTS({FOOTPRINT_CIRCLE}, {shape})"
    if isinstance(region, Polygon):
        cap = polygon_cap(region)
        if cap is not None:
            return _shape_condition(cap)
        coords = ", ".join(f"{_num(ra)}, {_num(dec)}" for ra, dec in region.vertices)
        return f"1 = INTERSECTS({FOOTPRINT_CIRCLE}, POLYGON({coords}))"
    return _range_condition(region)


def polygon_cap(polygon: Polygon) -> Circle | None:
    """A circle holding ``polygon``: around the mean of its vertices, through the farthest one
    (``None`` when that circle is not smaller than a hemisphere).

    Why it holds the polygon: a cap smaller than a hemisphere holds every minor arc between
    its points, so it holds the edges; the rest of the sphere, outside the cap, is connected
    and meets no edge, so it lies on one side of them, the larger one (it is more than half
    the sphere); the polygon (the smaller side, docs/geometry.md) is then inside the cap.
    Testing the footprint circle against a circle costs the engine about a third of what a
    polygon costs (``bench/sia.py``); the exact test afterwards makes the answer the same.
    """
    ra = np.array([v[0] for v in polygon.vertices])
    dec = np.array([v[1] for v in polygon.vertices])
    v = unit_vectors(ra, dec)
    centre = v.sum(axis=0)
    size = float(np.linalg.norm(centre))
    if size < 1e-9:
        return None
    c_ra, c_dec = to_radec(centre / size)
    radius = float(np.degrees(angle(v, np.broadcast_to(centre / size, v.shape))).max())
    if radius + SLACK_DEG >= 89.0:
        return None
    return Circle(float(c_ra), float(c_dec), radius + SLACK_DEG)


def _range_condition(rng: SkyRange) -> str:
    parts: list[str] = []
    reach = f"s_fov / 2 + {SLACK_DEG!r}"
    if rng.dec_min > -90.0:
        parts.append(f"s_dec + {reach} >= {_num(rng.dec_min)}")
    if rng.dec_max < 90.0:
        parts.append(f"s_dec - ({reach}) <= {_num(rng.dec_max)}")
    bound = rng.bounding_circle()
    if bound is not None:
        shape = f"CIRCLE({_num(bound.ra)}, {_num(bound.dec)}, {_num(bound.radius)})"
        parts.append(f"1 = INTERSECTS({FOOTPRINT_CIRCLE}, {shape})")
    if not parts:  # the whole sky: any image with a position
        parts.append("s_ra IS NOT NULL")
    return " AND ".join(parts)


def interval_condition(low_column: str, high_column: str, interval: Interval) -> str:
    """The data's ``[low_column, high_column]`` overlaps ``interval`` (a value: lies in it)."""
    parts = []
    if math.isfinite(interval.hi):
        parts.append(f"{low_column} <= {_num(interval.hi)}")
    if math.isfinite(interval.lo):
        parts.append(f"{high_column} >= {_num(interval.lo)}")
    if not parts:
        parts = [f"{low_column} IS NOT NULL", f"{high_column} IS NOT NULL"]
    return " AND ".join(dict.fromkeys(parts))


def _any(conditions: Iterable[str]) -> str:
    items = list(dict.fromkeys(conditions))
    if len(items) == 1:
        return items[0]
    return "(" + " OR ".join(f"({c})" for c in items) + ")"


def _num(x: float) -> str:
    """A float as an ADQL literal that reads back as the same double."""
    return repr(float(x))


def _string(value: str) -> str:
    """An ADQL string literal."""
    return "'" + value.replace("'", "''") + "'"
