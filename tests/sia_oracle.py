"""An independent answer to "does this region overlap that one?", for the SIA tests.

Nothing here uses qcat's geometry: regions are described by their boundary,
sampled densely, and a point test of their own (astropy separations for
circles, plain coordinate comparisons for ranges, ray casting on a gnomonic
projection for polygons, the image's own WCS for footprints). Two regions
overlap for sure when a boundary sample of one lies inside the other; they
are disjoint for sure when no sample of either lies in the other and the
boundaries stay farther apart than the sampling could hide a crossing in.
Anything else is too close to call and the caller skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

PointTest = Callable[[np.ndarray, np.ndarray], np.ndarray]


def vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[..., 2] / np.linalg.norm(v, axis=-1), -1, 1)))
    return ra, dec


@dataclass(frozen=True)
class Shape:
    """A region for the oracle: boundary samples and a point test."""

    ra: np.ndarray
    dec: np.ndarray
    contains: PointTest
    spacing_deg: float


def great_arc(a: tuple[float, float], b: tuple[float, float], step: float) -> np.ndarray:
    """Samples (unit vectors) of the minor great-circle arc a -> b, every ``step`` degrees."""
    va, vb = vectors(np.array(a[0]), np.array(a[1])), vectors(np.array(b[0]), np.array(b[1]))
    omega = np.arccos(np.clip(va @ vb, -1, 1))
    n = max(2, int(np.degrees(omega) / step) + 2)
    t = np.linspace(0.0, 1.0, n)[:, None]
    if omega < 1e-12:
        return np.repeat(va[None, :], n, axis=0)
    return (np.sin((1 - t) * omega) * va + np.sin(t * omega) * vb) / np.sin(omega)


def circle_shape(ra: float, dec: float, r: float, step: float = 0.002) -> Shape:
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    n = max(64, int(2 * np.pi * np.sin(np.radians(min(r, 90))) / np.radians(step)))
    angles = np.linspace(0, 360, n, endpoint=False) * u.deg
    edge = centre.directional_offset_by(angles, r * u.deg)

    def contains(p_ra: np.ndarray, p_dec: np.ndarray) -> np.ndarray:
        sep = centre.separation(SkyCoord(p_ra * u.deg, p_dec * u.deg)).deg
        return np.asarray(sep <= r)

    spacing = 360.0 / n * np.sin(np.radians(min(r, 90.0)))
    return Shape(edge.ra.deg, edge.dec.deg, contains, spacing)


def range_shape(ra1: float, ra2: float, dec1: float, dec2: float, step: float = 0.002) -> Shape:
    """SIA RANGE with ``ra1 > ra2`` wrapping through 0 (finite values only)."""
    width = ra2 - ra1 if ra2 >= ra1 else ra2 + 360.0 - ra1
    pieces_ra, pieces_dec = [], []
    n_dec = max(2, int((dec2 - dec1) / step) + 2)
    for side in (ra1, ra1 + width):
        pieces_ra.append(np.full(n_dec, side % 360.0))
        pieces_dec.append(np.linspace(dec1, dec2, n_dec))
    for d in (dec1, dec2):
        n_ra = max(2, int(width * np.cos(np.radians(d)) / step) + 2)
        pieces_ra.append((ra1 + np.linspace(0.0, width, n_ra)) % 360.0)
        pieces_dec.append(np.full(n_ra, d))

    def contains(p_ra: np.ndarray, p_dec: np.ndarray) -> np.ndarray:
        p_ra = np.asarray(p_ra) % 360.0
        lo, hi = ra1 % 360.0, ra2 % 360.0 if ra2 < 360.0 else 360.0
        in_ra = (p_ra >= lo) & (p_ra <= hi) if ra2 >= ra1 else (p_ra >= lo) | (p_ra <= hi)
        return np.asarray(in_ra & (p_dec >= dec1) & (p_dec <= dec2))

    return Shape(np.concatenate(pieces_ra), np.concatenate(pieces_dec), contains, step)


def polygon_shape(vertices: list[tuple[float, float]], step: float = 0.002) -> Shape:
    """A polygon smaller than a hemisphere (ray casting on its gnomonic projection)."""
    samples = np.concatenate(
        [
            great_arc(vertices[i], vertices[(i + 1) % len(vertices)], step)
            for i in range(len(vertices))
        ]
    )
    v = vectors(np.array([p[0] for p in vertices]), np.array([p[1] for p in vertices]))
    centre = v.sum(axis=0)
    centre /= np.linalg.norm(centre)
    east = np.cross([0.0, 0.0, 1.0], centre)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-12 else np.array([0.0, 1, 0])
    north = np.cross(centre, east)

    def project(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = p @ centre
        safe = np.where(z > 0.05, z, 1.0)
        return (p @ east) / safe, (p @ north) / safe, z > 0.05

    px, py, _ = project(v)

    def contains(p_ra: np.ndarray, p_dec: np.ndarray) -> np.ndarray:
        x, y, front = project(vectors(np.asarray(p_ra), np.asarray(p_dec)))
        inside = np.zeros(len(x), dtype=bool)
        for i in range(len(px)):
            x1, y1, x2, y2 = px[i], py[i], px[i - 1], py[i - 1]
            crosses = (y1 > y) != (y2 > y)
            at = x1 + (y - y1) * (x2 - x1) / np.where(y2 != y1, y2 - y1, 1.0)
            inside ^= crosses & (x < at)
        return inside & front

    s_ra, s_dec = radec(samples)
    return Shape(s_ra, s_dec, contains, step)


def footprint_shape(wcs: WCS, nx: int, ny: int, samples: int = 400) -> Shape:
    """The image's pixel area [-0.5, n - 0.5] as the WCS maps it (distortion included)."""
    xs = np.linspace(-0.5, nx - 0.5, samples)
    ys = np.linspace(-0.5, ny - 0.5, samples)
    x = np.concatenate([xs, np.full(samples, nx - 0.5), xs[::-1], np.full(samples, -0.5)])
    y = np.concatenate([np.full(samples, -0.5), ys, np.full(samples, ny - 0.5), ys[::-1]])
    ra, dec = wcs.all_pix2world(x, y, 0)
    centre = SkyCoord(*wcs.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0), unit="deg")

    def contains(p_ra: np.ndarray, p_dec: np.ndarray) -> np.ndarray:
        p = SkyCoord(np.asarray(p_ra) * u.deg, np.asarray(p_dec) * u.deg)
        near = centre.separation(p).deg < 60.0
        out = np.zeros(len(p_ra), dtype=bool)
        if near.any():
            px, py = wcs.all_world2pix(np.asarray(p_ra)[near], np.asarray(p_dec)[near], 0)
            out[near] = (px >= -0.5) & (px <= nx - 0.5) & (py >= -0.5) & (py <= ny - 0.5)
        return out

    edge = SkyCoord(ra * u.deg, dec * u.deg)
    spacing = float(np.max(edge[1:].separation(edge[:-1]).deg))
    return Shape(np.asarray(ra) % 360.0, np.asarray(dec), contains, spacing)


def _cap(shape: Shape) -> tuple[np.ndarray, float]:
    """The mean direction of the boundary samples and the farthest sample from it (degrees)."""
    v = vectors(shape.ra, shape.dec)
    centre = v.sum(axis=0)
    centre /= np.linalg.norm(centre)
    return centre, float(np.degrees(np.arccos(np.clip(v @ centre, -1, 1)).max()))


def overlap(a: Shape, b: Shape, margin_deg: float = 0.0) -> bool | None:
    """True / False when sure, ``None`` when the boundaries come within the sampling (or
    ``margin_deg``) of each other without a sample of one inside the other."""
    (ca, ra), (cb, rb) = _cap(a), _cap(b)
    apart = float(np.degrees(np.arccos(np.clip(ca @ cb, -1, 1))))
    if ra < 60 and rb < 60 and apart > ra + rb + 1.0:  # small regions far apart
        return False
    if a.contains(b.ra, b.dec).any() or b.contains(a.ra, a.dec).any():
        return True
    va, vb = vectors(a.ra, a.dec), vectors(b.ra, b.dec)
    closest = 0.0
    best = -1.0
    for start in range(0, len(va), 2000):
        best = max(best, float((va[start : start + 2000] @ vb.T).max()))
    closest = float(np.degrees(np.arccos(np.clip(best, -1, 1))))
    if closest > a.spacing_deg + b.spacing_deg + margin_deg:
        return False
    return None
