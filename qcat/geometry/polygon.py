"""Spherical polygons: validation, which side is inside, and convex pieces.

A polygon is given by vertices joined by minor great-circle arcs, the last
back to the first. :func:`analyse` checks that it is simple (no repeated or
antipodal neighbours, no edges that cross, touch or fold back), decides
which of the two regions the edges bound is meant (the smaller one, see
``docs/geometry.md``), and cuts that region into convex pieces. A convex
piece is the intersection of the hemispheres to the left of its edges, so
point-in-polygon becomes an OR over pieces of ANDs of sign tests
``normal . p >= 0``: plain arithmetic that SQL can evaluate exactly.

The pieces come from ear clipping (every simple polygon has an ear; on the
sphere, as in the plane, a convex corner whose triangle holds no other vertex
is one, because two minor arcs cross at most once), then neighbouring pieces
are merged while the union stays convex (Hertel and Mehlhorn). An edge that
two pieces share is stored once, as one *plane*; one piece tests ``>= 0`` and
the other ``<= 0`` on the very same computed value, so a point on a shared
diagonal always lands in one of them, whatever the rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qcat.geometry.errors import GeometryError
from qcat.geometry.vectors import (
    angle,
    arc_distance,
    arc_normal,
    arcs_cross,
    cross,
    dot,
    triangle_area,
    unit_vectors,
)

#: Vertices or edges closer than this (radians; 1e-10 degrees) count as touching.
TOUCH_RAD = math.radians(1e-10)
#: Sign-test slack for "is this vertex inside that triangle" in ear clipping.
EAR_SLACK = 1e-15
#: A corner whose neighbour is this close (sine of the angle) to the other edge is flat.
FLAT = 1e-15
#: Sign tests accept ``normal . p >= -EDGE_SLACK``: points within about 6e-13
#: degrees outside an edge (the vertices themselves, after rounding) count as on it.
EDGE_SLACK = 1e-14
#: The two regions bounded by the edges must differ in area by more than this (sr).
AMBIGUITY_SR = 1e-9

FULL_SPHERE_SR = 4.0 * math.pi
#: Most vertices a polygon may have (bounds the work and the size of its SQL).
MAX_VERTICES = 1000


@dataclass(frozen=True)
class HalfSpace:
    """One sign test of a convex piece: ``sign * (plane normal . p) >= 0``."""

    plane: int
    sign: int


@dataclass(frozen=True, eq=False)
class PolygonShape:
    """A validated polygon, ready for point tests, areas and SQL.

    ``vectors`` are the vertices as unit vectors in the order that puts the
    region to the left of every edge (seen from outside the sphere);
    ``reversed`` says whether that is the opposite of the given order.
    ``planes`` are unit normals; ``pieces`` are convex pieces as tuples of
    :class:`HalfSpace`; ``triangles`` (vertex indices into ``vectors``)
    tile the region.
    """

    vectors: np.ndarray
    reversed: bool
    planes: np.ndarray
    pieces: tuple[tuple[HalfSpace, ...], ...]
    triangles: tuple[tuple[int, int, int], ...]
    area_sr: float

    @property
    def edge_normals(self) -> np.ndarray:
        """Unit normals of the edges ``i -> i + 1``, pointing into the region."""
        v = self.vectors
        return arc_normal(v, np.roll(v, -1, axis=0))

    def contains(self, p: np.ndarray) -> np.ndarray:
        """Whether each unit vector of ``p`` (shape ``(n, 3)``) is inside or on the boundary."""
        side = p @ self.planes.T
        inside = np.zeros(len(p), dtype=bool)
        for piece in self.pieces:
            ok = np.ones(len(p), dtype=bool)
            for h in piece:
                ok &= h.sign * side[:, h.plane] >= -EDGE_SLACK
            inside |= ok
        return inside

    def boundary_distance(self, p: np.ndarray) -> np.ndarray:
        """Angular distance (radians) from each point of ``p`` to the polygon's edges."""
        a = self.vectors
        b = np.roll(a, -1, axis=0)
        n = self.edge_normals
        out = np.full(len(p), np.inf)
        # Blocks keep the (points x edges) temporaries small.
        step = max(1, 200_000 // len(a))
        for start in range(0, len(p), step):
            q = p[start : start + step, None, :]
            out[start : start + step] = arc_distance(q, a, b, n).min(axis=1)
        return out

    def signed_distance(self, p: np.ndarray) -> np.ndarray:
        """Distance (radians) to the region for outside points, minus the distance to the
        boundary for inside ones."""
        d = self.boundary_distance(p)
        return np.asarray(np.where(self.contains(p), -d, d))

    def integral_of_position(self) -> np.ndarray:
        """The vector integral of the position over the region (for the centroid).

        Equals half the boundary integral of ``p x dp``; along a great-circle
        arc of length ``t`` with unit normal ``n`` that integral is ``t n``.
        """
        a = self.vectors
        b = np.roll(a, -1, axis=0)
        lengths = angle(a, b)
        return np.asarray(0.5 * (lengths[:, None] * self.edge_normals).sum(axis=0))


def analyse(ra_deg: np.ndarray, dec_deg: np.ndarray) -> PolygonShape:
    """Validate a polygon given by vertex coordinates in degrees and cut it into convex pieces.

    Raises :class:`GeometryError` naming the vertices at fault when the
    polygon has fewer than 3 or more than :data:`MAX_VERTICES` vertices,
    repeated or antipodal neighbouring vertices, edges that cross, touch or
    fold back, or two sides of equal area (so that neither is the smaller).
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    k = len(ra)
    if k < 3:
        raise GeometryError(f"a polygon needs at least 3 vertices, got {k}")
    if k > MAX_VERTICES:
        raise GeometryError(f"a polygon may have at most {MAX_VERTICES} vertices, got {k}")
    v = unit_vectors(ra, dec)
    _check_edges(v, ra, dec)
    normals = arc_normal(v, np.roll(v, -1, axis=0))
    _check_simple(v, normals)
    left_area = _left_area(v, normals)
    if abs(left_area - 2.0 * math.pi) <= AMBIGUITY_SR:
        raise GeometryError(
            "the polygon's edges divide the sky into two halves of equal area, so neither "
            "side is the smaller; add a vertex to say which side is meant"
        )
    flipped = left_area > 2.0 * math.pi
    if flipped:
        v = v[::-1].copy()
    expected = FULL_SPHERE_SR - left_area if flipped else left_area
    return _decompose(v, flipped, expected)


def _where(ra: np.ndarray, dec: np.ndarray, i: int) -> str:
    """``vertex N (ra, dec)``, 1-based, for messages."""
    return f"vertex {i + 1} ({ra[i]!r}, {dec[i]!r})"


def _check_edges(v: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> None:
    """Neighbouring vertices must be distinct and not antipodal."""
    k = len(v)
    lengths = angle(v, np.roll(v, -1, axis=0))
    for i in range(k):
        j = (i + 1) % k
        if lengths[i] <= TOUCH_RAD:
            hint = (
                " (a polygon closes by itself: do not repeat the first vertex at the end)"
                if j == 0
                else ""
            )
            raise GeometryError(
                f"polygon {_where(ra, dec, i)} and {_where(ra, dec, j)} are the same point{hint}"
            )
        if lengths[i] >= math.pi - TOUCH_RAD:
            raise GeometryError(
                f"polygon {_where(ra, dec, i)} and {_where(ra, dec, j)} are antipodal, so the "
                "great-circle edge between them is undefined; add a vertex between them"
            )


def _check_simple(v: np.ndarray, n: np.ndarray) -> None:
    """No two edges may cross or touch, and neighbouring edges may not fold back."""
    k = len(v)
    a, b = v, np.roll(v, -1, axis=0)
    i, j = np.triu_indices(k, 1)
    adjacent = (j == i + 1) | ((i == 0) & (j == k - 1))
    # Neighbouring edges share one vertex; they overlap when either's far end lies on the other.
    ai, aj = i[adjacent], j[adjacent]
    first, second = np.where(aj == ai + 1, ai, aj), np.where(aj == ai + 1, aj, ai)
    far_of_second = arc_distance(b[second], a[first], b[first], n[first])
    far_of_first = arc_distance(a[first], a[second], b[second], n[second])
    folded = (far_of_second <= TOUCH_RAD) | (far_of_first <= TOUCH_RAD)
    if folded.any():
        e = int(np.flatnonzero(folded)[0])
        raise GeometryError(
            f"polygon edges {first[e] + 1} and {second[e] + 1} fold back onto each other "
            f"at vertex {second[e] + 1}"
        )
    i, j = i[~adjacent], j[~adjacent]
    if len(i) == 0:
        return
    crossing = arcs_cross(a[i], b[i], n[i], a[j], b[j], n[j])
    touching = np.minimum.reduce(
        [
            arc_distance(a[i], a[j], b[j], n[j]),
            arc_distance(b[i], a[j], b[j], n[j]),
            arc_distance(a[j], a[i], b[i], n[i]),
            arc_distance(b[j], a[i], b[i], n[i]),
        ]
    )
    bad = crossing | (touching <= TOUCH_RAD)
    if bad.any():
        e = int(np.flatnonzero(bad)[0])
        raise GeometryError(
            f"polygon edges {i[e] + 1} and {j[e] + 1} cross or touch (edge N joins vertex N "
            "to the next one); the polygon must not intersect itself"
        )


def _left_area(v: np.ndarray, n: np.ndarray) -> float:
    """Area (sr) of the region to the left of the edges, by Gauss-Bonnet.

    The area is ``2 pi`` minus the sum of the turning angles at the vertices
    (positive when turning left). Only used to pick the smaller side, which
    needs no more than a few digits.
    """
    n_in = np.roll(n, 1, axis=0)
    turns = np.arctan2(dot(cross(n_in, n), v), dot(n_in, n))
    return float(2.0 * math.pi - turns.sum())


class _Planes:
    """Great-circle planes through pairs of vertices, one normal per unordered pair."""

    def __init__(self, v: np.ndarray) -> None:
        self.v = v
        self.index: dict[tuple[int, int], int] = {}
        self.normals: list[np.ndarray] = []

    def half_space(self, i: int, j: int) -> HalfSpace:
        """The test "left of the arc from vertex i to vertex j"."""
        key = (min(i, j), max(i, j))
        if key not in self.index:
            self.index[key] = len(self.normals)
            self.normals.append(arc_normal(self.v[key[0]], self.v[key[1]]))
        return HalfSpace(self.index[key], 1 if i < j else -1)


def _left_of(v: np.ndarray, i: int, j: int, q: np.ndarray) -> np.ndarray:
    """``normal(i -> j) . q`` for vertex indices ``i, j`` and points ``q``."""
    return dot(arc_normal(v[i], v[j]), q)


def _ear_clip(v: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangles (counter-clockwise seen from outside) tiling the polygon ``v``.

    The remaining polygon is a linked ring; after an ear is cut only its two
    neighbours can change status, so each vertex is re-examined O(1) times.
    """
    k = len(v)
    prev = [(i - 1) % k for i in range(k)]
    nxt = [(i + 1) % k for i in range(k)]
    alive = np.ones(k, dtype=bool)

    def is_ear(b: int) -> bool:
        a, c = prev[b], nxt[b]
        if _left_of(v, a, b, v[c]) <= FLAT:
            return False  # reflex or flat corner
        others = alive.copy()
        others[[a, b, c]] = False
        q = v[others]
        inside = (
            (_left_of(v, a, b, q) >= -EAR_SLACK)
            & (_left_of(v, b, c, q) >= -EAR_SLACK)
            & (_left_of(v, c, a, q) >= -EAR_SLACK)
        )
        return not bool(inside.any())

    ear = [is_ear(i) for i in range(k)]
    triangles: list[tuple[int, int, int]] = []
    remaining = k
    while remaining > 3:
        candidates = [i for i in np.flatnonzero(alive).tolist() if ear[i]]
        if not candidates:
            ring = np.flatnonzero(alive).tolist()
            flat = all(abs(float(_left_of(v, prev[b], b, v[nxt[b]]))) <= FLAT for b in ring)
            if flat:
                return triangles  # only flat corners left: the rest has no area
            raise GeometryError("the polygon could not be cut into triangles (is it simple?)")
        for b in candidates:
            if not (alive[b] and ear[b]) or remaining <= 3:
                continue
            a, c = prev[b], nxt[b]
            triangles.append((a, b, c))
            alive[b] = False
            nxt[a], prev[c] = c, a
            remaining -= 1
            ear[a], ear[c] = is_ear(a), is_ear(c)
    b = int(np.flatnonzero(alive)[0])
    a, c = prev[b], nxt[b]
    if _left_of(v, a, b, v[c]) > FLAT:
        triangles.append((a, b, c))
    return triangles


def _convex_at(v: np.ndarray, cycle: list[int], pos: int) -> bool:
    """Whether the corner at ``cycle[pos]`` turns left or goes straight."""
    m = len(cycle)
    a, b, c = cycle[pos - 1], cycle[pos], cycle[(pos + 1) % m]
    return bool(_left_of(v, a, b, v[c]) >= -FLAT)


def _merge(v: np.ndarray, triangles: list[tuple[int, int, int]]) -> list[list[int]]:
    """Join neighbouring pieces across shared diagonals while the union stays convex."""
    pieces: dict[int, list[int]] = {p: list(t) for p, t in enumerate(triangles)}
    owner: dict[tuple[int, int], int] = {}
    for p, cycle in pieces.items():
        for s in range(len(cycle)):
            owner[(cycle[s], cycle[(s + 1) % len(cycle)])] = p
    diagonals = [(i, j) for (i, j) in owner if i < j and (j, i) in owner]
    for i, j in diagonals:
        p, q = owner[(i, j)], owner[(j, i)]
        # Walk p from j round to i, then q from i round to j (both without the diagonal).
        first, second = pieces[p], pieces[q]
        start = first.index(j)
        path = first[start:] + first[:start]
        start = second.index(i)
        other = second[start:] + second[:start]
        cycle = path + other[1:-1]
        if not (_convex_at(v, cycle, cycle.index(i)) and _convex_at(v, cycle, cycle.index(j))):
            continue
        pieces[p] = cycle
        del pieces[q], owner[(i, j)], owner[(j, i)]
        for s in range(len(other) - 1):
            owner[(other[s], other[s + 1])] = p
    return list(pieces.values())


def _decompose(v: np.ndarray, flipped: bool, expected_area: float) -> PolygonShape:
    """Triangles, convex pieces and area of the polygon ``v`` (region on the left)."""
    triangles = _ear_clip(v)
    t = np.array(triangles, dtype=np.int64).reshape(-1, 3)
    area = float(triangle_area(v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]).sum()) if len(t) else 0.0
    # Gauss-Bonnet and the triangles must agree; a disagreement means a bad cut.
    if not math.isclose(area, expected_area, rel_tol=1e-6, abs_tol=1e-10):
        raise GeometryError(
            "the polygon could not be cut into triangles consistently (is it simple?)"
        )
    planes = _Planes(v)
    pieces = []
    for cycle in _merge(v, triangles):
        m = len(cycle)
        pieces.append(tuple(planes.half_space(cycle[s], cycle[(s + 1) % m]) for s in range(m)))
    return PolygonShape(
        vectors=v,
        reversed=flipped,
        planes=np.array(planes.normals).reshape(-1, 3),
        pieces=tuple(pieces),
        triangles=tuple(triangles),
        area_sr=area,
    )
