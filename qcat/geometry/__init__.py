"""Exact spherical geometry for ADQL: regions, DuckDB SQL and HEALPix coverage.

* :mod:`qcat.geometry.regions` - immutable :class:`Point`, :class:`Circle`,
  :class:`Box`, :class:`Polygon` and their areas, centroids, distances,
  containment and intersection;
* :mod:`qcat.geometry.sql` - ``qcat_*`` DuckDB macros (:data:`SETUP_SQL`) and
  builders of SQL predicates;
* :mod:`qcat.geometry.coverage` - conservative ``_healpix_29`` ranges and the
  chunks a region touches;
* :mod:`qcat.geometry.reference` - independent brute force, for tests.

See ``docs/geometry.md`` for the semantics and the numerics.

The coverage functions are imported on first use: they need healpy, which
takes a second to import, and workers only need the SQL macros.
"""

from typing import Any

from qcat.geometry.errors import GeometryError
from qcat.geometry.regions import (
    Box,
    Circle,
    Point,
    Polygon,
    Region,
    area_sq_deg,
    bounding_circle,
    centroid,
    contains_point,
    distance_deg,
    regions_intersect,
)
from qcat.geometry.sql import (
    MACROS,
    SETUP_SQL,
    circle_contains_sql,
    contains_sql,
    distance_sql,
    healpix_ranges_sql,
)

__all__ = [
    "MACROS",
    "SETUP_SQL",
    "Box",
    "Circle",
    "GeometryError",
    "Point",
    "Polygon",
    "Region",
    "area_sq_deg",
    "bounding_circle",
    "centroid",
    "chunks_for_region",
    "chunks_within",
    "circle_contains_sql",
    "contains_point",
    "contains_sql",
    "distance_deg",
    "distance_sql",
    "healpix_ranges_sql",
    "region_ranges",
    "regions_intersect",
]

_COVERAGE = ("chunks_for_region", "chunks_within", "region_ranges")


def __getattr__(name: str) -> Any:
    if name in _COVERAGE:
        from qcat.geometry import coverage

        return getattr(coverage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
