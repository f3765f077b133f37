"""An image's footprint on the sky: a small polygon that contains every pixel.

Method (docs/images.md, "Footprint"):

1. Sample the outline of the pixel grid: the four outer pixel corners
   (``-0.5`` and ``n - 0.5`` in 0-based pixel coordinates) and evenly spaced
   points along each edge, mapped to ICRS with the full WCS (distortions
   included), for every image HDU of the file.
2. Project the samples gnomonically around the image centre. A gnomonic
   projection maps great circles to straight lines, so a convex polygon in
   that plane is a spherical polygon with great-circle edges, and "contains"
   in the plane is "contains" on the sphere.
3. Take the convex hull, then remove edges one by one, each time the one whose
   removal (extending its two neighbours until they meet) adds the least area,
   until at most :data:`MAX_VERTICES` remain (and further, down to four, while
   the polygon grows by less than :data:`AREA_TOLERANCE` of the hull). The
   polygon only ever grows, so it still holds every sample.
4. Push every edge outwards by the most the outline can bulge between two
   samples (from the samples' second differences) plus a rounding margin, so
   the true, curved outline is inside too, not only its samples.
5. Back to the sphere; vertices counter-clockwise as seen from the centre of
   the sphere (DALI), i.e. clockwise on a chart with east to the right.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qcat.errors import QcatError

#: The polygon is reduced to at most this many vertices.
MAX_VERTICES = 8
#: Below :data:`MAX_VERTICES`, edges are still removed while the area added in
#: total stays below this fraction of the hull's area.
AREA_TOLERANCE = 1e-3
#: Samples per image edge (the corners included).
EDGE_SAMPLES = 65
#: Extra outward margin (radians, ~0.2 milliarcsecond) for rounding.
ROUNDING_MARGIN = 1e-9

#: Maps 0-based pixel coordinates ``(x, y)`` to ICRS ``(ra, dec)`` in degrees.
PixelToSky = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class FootprintError(QcatError):
    """The WCS does not give a usable footprint (positions missing, or too large)."""


@dataclass(frozen=True)
class Footprint:
    """The ObsCore spatial values of an image."""

    #: ICRS centre (degrees): the WCS position of the central pixel.
    ra: float
    dec: float
    #: Polygon vertices ``(ra, dec)`` in degrees, counter-clockwise seen from inside.
    vertices: tuple[tuple[float, float], ...]
    #: Diameter (degrees) of the smallest circle around the centre holding the polygon.
    fov: float
    #: Pixel size on the sky at the centre (arcsec): square root of the pixel's area.
    pixel_scale: float

    @property
    def stored_vertices(self) -> tuple[tuple[float, float], ...]:
        """The vertices as :meth:`stcs` writes them (rounded to 1e-10 degree)."""
        return tuple((float(_fmt(ra)), float(_fmt(dec))) for ra, dec in self.vertices)

    def dec_extent(self) -> tuple[float, float]:
        """Lowest and highest declination (degrees) of the polygon :meth:`stcs` writes."""
        return polygon_dec_extent(self.stored_vertices)

    def stcs(self) -> str:
        """The polygon as STC-S: ``POLYGON ICRS ra1 dec1 ra2 dec2 ...``."""
        coords = " ".join(f"{_fmt(ra)} {_fmt(dec)}" for ra, dec in self.vertices)
        return f"POLYGON ICRS {coords}"


def _fmt(value: float) -> str:
    # 10 decimals of a degree: 0.36 microarcsecond, far below any pixel.
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def arc_dec_extremes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest ``z`` (sine of the declination) on the minor arcs ``a[i] -> b[i]``.

    ``a`` and ``b`` are unit vectors of shape ``(n, 3)``. Along a great circle
    ``z`` peaks at the circle's point nearest the north pole, ``t = z - (z.n) n``
    (``n`` the circle's unit normal), and is lowest at ``-t``; an extreme counts
    when it lies on the arc (between ``a`` and ``b`` as seen along ``n``),
    otherwise the arc's extremes are its ends.
    """
    n = np.cross(a, b)
    size = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.divide(n, size, out=np.zeros_like(n), where=size > 0)
    top = np.array([0.0, 0.0, 1.0]) - n[:, 2:3] * n
    top_z = np.linalg.norm(top, axis=-1)  # z of the top point: |t|^2 / |t| = |t|
    unit_top = np.divide(top, top_z[:, None], out=np.zeros_like(top), where=top_z[:, None] > 0)

    def on_arc(p: np.ndarray) -> np.ndarray:
        after_a = np.einsum("ij,ij->i", np.cross(a, p), n) >= 0.0
        before_b = np.einsum("ij,ij->i", np.cross(p, b), n) >= 0.0
        return np.asarray(after_a & before_b & (size[:, 0] > 0) & (top_z > 0))

    ends_lo, ends_hi = np.minimum(a[:, 2], b[:, 2]), np.maximum(a[:, 2], b[:, 2])
    hi = np.where(on_arc(unit_top), np.maximum(top_z, ends_hi), ends_hi)
    lo = np.where(on_arc(-unit_top), np.minimum(-top_z, ends_lo), ends_lo)
    return lo, hi


def polygon_dec_extent(vertices: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Lowest and highest declination (degrees) of a convex spherical polygon.

    The extremes of the boundary (vertices, and the highest/lowest point of
    each great-circle edge), except that a polygon holding a pole reaches 90
    (or -90) there. The polygon must be convex and smaller than a hemisphere,
    as footprints are: a pole is inside when it is on the inner side of every
    edge, the inner side being the one holding the vertices' mean.
    """
    v = _unit(np.array([p[0] for p in vertices]), np.array([p[1] for p in vertices]))
    w = np.roll(v, -1, axis=0)
    lo, hi = arc_dec_extremes(v, w)
    dec_lo = math.degrees(math.asin(float(np.clip(lo.min(), -1.0, 1.0))))
    dec_hi = math.degrees(math.asin(float(np.clip(hi.max(), -1.0, 1.0))))
    normals = np.cross(v, w)
    inner = np.sign(normals @ v.mean(axis=0))
    if np.all(inner * normals[:, 2] >= 0.0):
        dec_hi = 90.0
    if np.all(inner * normals[:, 2] <= 0.0):
        dec_lo = -90.0
    return dec_lo, dec_hi


def outline_pixels(nx: int, ny: int, per_edge: int = EDGE_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel coordinates around the outer edge of an ``nx`` x ``ny`` grid.

    The walk goes along y = -0.5, x = nx - 0.5, y = ny - 0.5, x = -0.5 back to
    the start, ``per_edge - 1`` steps per edge (each corner appears once).
    """
    t = np.linspace(0.0, 1.0, per_edge)[:-1]
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    xs = np.concatenate(
        [x0 + t * (x1 - x0), np.full_like(t, x1), x1 - t * (x1 - x0), np.full_like(t, x0)]
    )
    ys = np.concatenate(
        [np.full_like(t, y0), y0 + t * (y1 - y0), np.full_like(t, y1), y1 - t * (y1 - y0)]
    )
    return xs, ys


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    return np.stack(
        [np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)], axis=-1
    )


def _radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[..., 2], -1.0, 1.0)))
    return ra, dec


class _Tangent:
    """Gnomonic projection around a centre: X to the east, Y to the north."""

    def __init__(self, ra: float, dec: float) -> None:
        self.c = _unit(np.array(ra), np.array(dec))
        east = np.cross([0.0, 0.0, 1.0], self.c)
        if np.linalg.norm(east) < 1e-12:  # at a pole any direction serves as "east"
            east = np.array([0.0, 1.0, 0.0])
        self.e = east / np.linalg.norm(east)
        self.n = np.cross(self.c, self.e)

    def project(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        p = _unit(ra, dec)
        w = p @ self.c
        if np.any(w <= 0.05):
            raise FootprintError("the image spans more than a hemisphere around its centre")
        return np.stack([(p @ self.e) / w, (p @ self.n) / w], axis=-1)

    def unproject(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = self.c + xy[:, :1] * self.e + xy[:, 1:2] * self.n
        return _radec(v)


def _cross2(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull (Andrew's monotone chain), collinear points dropped."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        raise FootprintError("the image outline collapses to a point or a line on the sky")
    arr = [np.array(p) for p in pts]

    def half(seq: Sequence[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for p in seq:
            while len(out) >= 2 and _cross2(out[-2], out[-1], p) <= 0.0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(arr), half(arr[::-1])
    hull = np.array(lower[:-1] + upper[:-1])
    if len(hull) < 3:
        raise FootprintError("the image outline collapses to a line on the sky")
    return hull


def _intersect(p1: np.ndarray, d1: np.ndarray, p2: np.ndarray, d2: np.ndarray) -> np.ndarray | None:
    """Intersection of lines ``p1 + s d1`` and ``p2 + t d2`` (``None`` if parallel)."""
    det = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(det) < 1e-300:
        return None
    s = ((p2[0] - p1[0]) * d2[1] - (p2[1] - p1[1]) * d2[0]) / det
    return p1 + s * d1


def _polygon_area(v: np.ndarray) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _removal(v: np.ndarray, i: int) -> tuple[float, np.ndarray] | None:
    """Area added and new vertex when edge ``v[i] -> v[i+1]`` is removed (``None``: cannot)."""
    m = len(v)
    a, b, c, d = v[(i - 1) % m], v[i], v[(i + 1) % m], v[(i + 2) % m]
    d1, d2 = b - a, d - c
    if d1[0] * d2[1] - d1[1] * d2[0] <= 0.0:  # the neighbours diverge: they never meet outside
        return None
    w = _intersect(a, d1, c, d2)
    if w is None:
        return None
    return abs(_cross2(b, w, c)) / 2.0, w


def reduce_polygon(
    hull: np.ndarray, max_vertices: int = MAX_VERTICES, tolerance: float = AREA_TOLERANCE
) -> np.ndarray:
    """A convex polygon of few vertices containing the convex polygon ``hull`` (CCW)."""
    v = hull.copy()
    budget = tolerance * _polygon_area(hull)
    added = 0.0
    while len(v) > 4:
        options = [(r[0], i, r[1]) for i in range(len(v)) if (r := _removal(v, i)) is not None]
        if not options:
            break
        area, i, w = min(options, key=lambda o: o[0])
        if len(v) <= max_vertices and added + area > budget:
            break
        added += area
        m = len(v)
        keep = [v[k] for k in range(m) if k not in (i, (i + 1) % m)]
        # the new vertex takes the place of the removed edge
        insert_at = i if (i + 1) % m != 0 else len(keep)
        keep.insert(min(insert_at, len(keep)), w)
        v = np.array(keep)
    return v


def offset_polygon(v: np.ndarray, distance: float) -> np.ndarray:
    """The convex CCW polygon ``v`` with every edge moved outwards by ``distance``."""
    m = len(v)
    normals = []
    for i in range(m):
        d = v[(i + 1) % m] - v[i]
        normals.append(np.array([d[1], -d[0]]) / math.hypot(d[0], d[1]))  # right of CCW = out
    out = []
    for i in range(m):
        j = (i - 1) % m
        p1, d1 = v[j] + distance * normals[j], v[i] - v[j]
        p2, d2 = v[i] + distance * normals[i], v[(i + 1) % m] - v[i]
        w = _intersect(p1, d1, p2, d2)
        out.append(w if w is not None else v[i] + distance * normals[i])
    return np.array(out)


def _bulge(xy: np.ndarray, per_edge: int) -> float:
    """Most the outline can stray from the chord between two neighbouring samples."""
    worst = 0.0
    n = per_edge - 1
    for start in range(0, len(xy), n):
        edge = xy[start : start + n + 1]
        if start + n >= len(xy):
            edge = np.vstack([xy[start:], xy[:1]])
        if len(edge) >= 3:
            d2 = edge[:-2] - 2.0 * edge[1:-1] + edge[2:]
            worst = max(worst, float(np.max(np.hypot(d2[:, 0], d2[:, 1]))))
    # a smooth arc's sagitta over one step is about a quarter of its second difference
    return worst / 4.0


def image_footprint(
    grids: Sequence[tuple[PixelToSky, int, int]], per_edge: int = EDGE_SAMPLES
) -> Footprint:
    """The footprint of one image file: ``grids`` are its HDUs' ``(to_sky, nx, ny)``.

    The centre and pixel scale are the first grid's; the polygon holds all grids.
    """
    to_sky, nx, ny = grids[0]
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    probe_ra, probe_dec = to_sky(
        np.array([cx, cx + 0.5, cx - 0.5, cx, cx]), np.array([cy, cy, cy, cy + 0.5, cy - 0.5])
    )
    if not np.all(np.isfinite(probe_ra) & np.isfinite(probe_dec)):
        raise FootprintError("the WCS gives no sky position for the image centre")
    ra0, dec0 = float(probe_ra[0]) % 360.0, float(probe_dec[0])
    plane = _Tangent(ra0, dec0)
    probe = plane.project(probe_ra, probe_dec)
    jx, jy = probe[1] - probe[2], probe[3] - probe[4]
    pixel_scale = math.degrees(math.sqrt(abs(jx[0] * jy[1] - jx[1] * jy[0]))) * 3600.0

    samples, bulge = [], 0.0
    for grid_to_sky, gx, gy in grids:
        xs, ys = outline_pixels(gx, gy, per_edge)
        ra, dec = grid_to_sky(xs, ys)
        if not np.all(np.isfinite(ra) & np.isfinite(dec)):
            raise FootprintError("the WCS gives no sky position for part of the image outline")
        xy = plane.project(ra, dec)
        samples.append(xy)
        bulge = max(bulge, _bulge(xy, per_edge))
    hull = convex_hull(np.vstack(samples))
    polygon = offset_polygon(reduce_polygon(hull), bulge + ROUNDING_MARGIN)
    # CCW in the east-right plane is clockwise seen from inside: reverse for DALI.
    vra, vdec = plane.unproject(polygon[::-1])
    centre = _unit(np.array(ra0), np.array(dec0))
    cosines = np.clip(_unit(vra, vdec) @ centre, -1.0, 1.0)
    fov = 2.0 * math.degrees(float(np.max(np.arccos(cosines))))
    vertices = tuple((float(a), float(b)) for a, b in zip(vra, vdec, strict=True))
    return Footprint(ra0, dec0, vertices, fov, pixel_scale)
