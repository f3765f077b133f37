"""Where the demo survey's objects are: a Milky Way-like density on the sphere.

Positions are drawn in galactic coordinates from three components -- an
all-sky background (halo stars and galaxies), a thin disk that is Gaussian in
galactic latitude, and a bulge around the galactic centre -- and rotated to
ICRS with a fixed matrix. Objects inside :data:`EMPTY_REGIONS` are rejected, so
those regions are exactly empty.

All geometry works on unit vectors, so the poles and the RA = 0/360 seam need
no special cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

# Galactic pole and origin in ICRS (the IAU definition as realised for
# Hipparcos, ESA SP-1200 vol. 1 sec. 1.5.3): the north galactic pole's RA/Dec
# and the galactic longitude of the north celestial pole.
_NGP_RA_DEG = 192.85948
_NGP_DEC_DEG = 27.12825
_NCP_LON_DEG = 122.93192


class Component(IntEnum):
    """Which population of the sky model an object was drawn from."""

    BACKGROUND = 0
    DISK = 1
    BULGE = 2


#: Share of objects drawn from each component.
COMPONENT_FRACTIONS: dict[Component, float] = {
    Component.BACKGROUND: 0.35,
    Component.DISK: 0.45,
    Component.BULGE: 0.20,
}
DISK_SIGMA_B_DEG = 3.0
BULGE_SIGMA_L_DEG = 8.0
BULGE_SIGMA_B_DEG = 5.0


def unit_vectors(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Unit vectors, shape ``(n, 3)``, of longitudes/latitudes in degrees."""
    lon = np.radians(lon_deg)
    lat = np.radians(lat_deg)
    cos_lat = np.cos(lat)
    return np.column_stack((cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)))


def lon_lat(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude in ``[0, 360)`` and latitude in ``[-90, 90]`` (degrees) of vectors.

    ``vectors`` has shape ``(n, 3)`` and need not be normalised.
    """
    return lon_lat_xyz(vectors[:, 0], vectors[:, 1], vectors[:, 2])


def lon_lat_xyz(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`lon_lat`, for the vectors' components given separately."""
    lon = np.degrees(np.arctan2(y, x))
    lon = np.where(lon < 0.0, lon + 360.0, lon)
    # -tiny + 360 rounds to 360.0, which is outside the half-open range.
    lon = np.where(lon >= 360.0, 0.0, lon)
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return lon, lat


def _galactic_to_icrs_matrix() -> np.ndarray:
    """The rotation ``v_icrs = M @ v_gal`` from the galactic pole and origin."""
    pole = unit_vectors(np.array([_NGP_RA_DEG]), np.array([_NGP_DEC_DEG]))[0]
    ncp = np.array([0.0, 0.0, 1.0])
    # The north celestial pole projected on the galactic plane lies at
    # galactic longitude _NCP_LON_DEG; rotate back from there to l = 0.
    towards_ncp = ncp - (ncp @ pole) * pole
    towards_ncp /= np.linalg.norm(towards_ncp)
    ahead = np.cross(pole, towards_ncp)  # longitude _NCP_LON_DEG + 90
    lon = np.radians(_NCP_LON_DEG)
    x_axis = np.cos(lon) * towards_ncp - np.sin(lon) * ahead
    y_axis = np.sin(lon) * towards_ncp + np.cos(lon) * ahead
    return np.column_stack((x_axis, y_axis, pole))


#: Rotation matrix from galactic to ICRS unit vectors (its transpose goes back).
GALACTIC_TO_ICRS: np.ndarray = _galactic_to_icrs_matrix()


def galactic_to_icrs(l_deg: np.ndarray, b_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS RA/Dec in degrees of galactic coordinates in degrees."""
    return lon_lat(unit_vectors(l_deg, b_deg) @ GALACTIC_TO_ICRS.T)


@dataclass(frozen=True)
class EmptyRegion:
    """A circle on the sky that holds no objects (a mask or an unobserved field)."""

    name: str
    ra: float
    dec: float
    radius_deg: float
    #: True for a mask around a bright star (its surroundings get a halo flag).
    bright_star: bool = True

    @property
    def centre(self) -> np.ndarray:
        """Unit vector of the centre."""
        return unit_vectors(np.array([self.ra]), np.array([self.dec]))[0]

    def contains(self, vectors: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Which unit vectors lie within ``scale`` times the radius of the centre."""
        return vectors @ self.centre > np.cos(np.radians(self.radius_deg * scale))


#: Masked circles around bright stars, and one large unobserved field. Alpheratz
#: straddles RA = 0/360 and alpha Centauri sits in the galactic plane on purpose.
EMPTY_REGIONS: tuple[EmptyRegion, ...] = (
    EmptyRegion("Sirius", 101.2872, -16.7161, 3.0),
    EmptyRegion("Canopus", 95.9880, -52.6957, 2.5),
    EmptyRegion("Arcturus", 213.9153, 19.1824, 2.0),
    EmptyRegion("Vega", 279.2347, 38.7837, 2.0),
    EmptyRegion("alpha Centauri", 219.9021, -60.8340, 2.5),
    EmptyRegion("Antares", 247.3519, -26.4320, 2.0),
    EmptyRegion("Betelgeuse", 88.7929, 7.4071, 2.0),
    EmptyRegion("Alpheratz", 2.0969, 29.0904, 3.0),
    EmptyRegion("unobserved field", 172.0, 45.0, 15.0, bright_star=False),
)
#: Objects within this many mask radii of a bright star are in its halo.
HALO_SCALE = 1.5


@dataclass(frozen=True)
class SkySample:
    """Positions of a batch of objects, in both frames, with their component."""

    ra: np.ndarray
    dec: np.ndarray
    glon: np.ndarray
    glat: np.ndarray
    vectors: np.ndarray
    component: np.ndarray

    def __len__(self) -> int:
        return len(self.ra)


def in_empty_region(vectors: np.ndarray) -> np.ndarray:
    """Which ICRS unit vectors fall inside any of :data:`EMPTY_REGIONS`."""
    hit = np.zeros(len(vectors), dtype=bool)
    for region in EMPTY_REGIONS:
        hit |= region.contains(vectors)
    return hit


def in_bright_star_halo(vectors: np.ndarray) -> np.ndarray:
    """Which ICRS unit vectors lie within :data:`HALO_SCALE` radii of a bright star."""
    hit = np.zeros(len(vectors), dtype=bool)
    for region in EMPTY_REGIONS:
        if region.bright_star:
            hit |= region.contains(vectors, scale=HALO_SCALE)
    return hit


def _draw_galactic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` draws of (l, b, component) from the sky model, before masking."""
    shares = np.array([COMPONENT_FRACTIONS[c] for c in Component])
    component = np.searchsorted(np.cumsum(shares), rng.random(n), side="right")
    component = np.minimum(component, len(shares) - 1).astype(np.int8)
    l_deg = np.empty(n)
    b_deg = np.empty(n)

    bg = component == Component.BACKGROUND
    k = int(bg.sum())
    # Uniform on the sphere: uniform longitude and uniform sin(latitude).
    l_deg[bg] = rng.uniform(0.0, 360.0, k)
    b_deg[bg] = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, k)))

    disk = component == Component.DISK
    k = int(disk.sum())
    l_deg[disk] = rng.uniform(0.0, 360.0, k)
    b_deg[disk] = rng.normal(0.0, DISK_SIGMA_B_DEG, k)

    bulge = component == Component.BULGE
    k = int(bulge.sum())
    l_deg[bulge] = np.mod(rng.normal(0.0, BULGE_SIGMA_L_DEG, k), 360.0)
    b_deg[bulge] = rng.normal(0.0, BULGE_SIGMA_B_DEG, k)

    # Tens of sigma away, but a latitude beyond the pole must never reach the
    # trigonometry below.
    np.clip(b_deg, -90.0, 90.0, out=b_deg)
    return l_deg, b_deg, component


def sample_sky(rng: np.random.Generator, n: int) -> SkySample:
    """Draw ``n`` object positions from the sky model, none in an empty region."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    have = 0
    while have < n:
        # Draw a little more than needed: masks reject a few percent.
        want = int((n - have) * 1.1) + 64
        l_deg, b_deg, component = _draw_galactic(rng, want)
        vectors = unit_vectors(l_deg, b_deg) @ GALACTIC_TO_ICRS.T
        keep = ~in_empty_region(vectors)
        parts.append((l_deg[keep], b_deg[keep], component[keep], vectors[keep]))
        have += int(keep.sum())
    l_all = np.concatenate([p[0] for p in parts])[:n]
    b_all = np.concatenate([p[1] for p in parts])[:n]
    component_all = np.concatenate([p[2] for p in parts])[:n]
    vectors_all = np.concatenate([p[3] for p in parts])[:n]
    ra, dec = lon_lat(vectors_all)
    return SkySample(
        ra=ra, dec=dec, glon=l_all, glat=b_all, vectors=vectors_all, component=component_all
    )


def offset_positions(
    ra_deg: np.ndarray, dec_deg: np.ndarray, east_deg: np.ndarray, north_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec of points moved from ``(ra, dec)`` by small east/north offsets (degrees).

    Each point moves along the great circle leaving it in the offset's
    direction, by exactly ``hypot(east, north)``: ``p cos(rho) + d sin(rho)``
    with ``d`` the unit tangent vector. Working with vectors keeps this exact
    at the poles (where RA still defines which way is east) and across RA 0.
    """
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_ra, sin_ra = np.cos(ra), np.sin(ra)
    cos_dec, sin_dec = np.cos(dec), np.sin(dec)
    east = np.radians(east_deg)
    north = np.radians(north_deg)
    rho = np.hypot(east, north)
    cos_rho = np.cos(rho)
    # sin(rho) / rho via np.sinc, so a zero offset needs no special case.
    scale = np.sinc(rho / np.pi)
    along_east = east * scale
    along_north = north * scale
    # p = (cos_dec cos_ra, cos_dec sin_ra, sin_dec); east unit vector
    # (-sin_ra, cos_ra, 0); north unit vector (-sin_dec cos_ra, -sin_dec sin_ra, cos_dec).
    planar = cos_dec * cos_rho - sin_dec * along_north
    x = planar * cos_ra - sin_ra * along_east
    y = planar * sin_ra + cos_ra * along_east
    z = sin_dec * cos_rho + cos_dec * along_north
    return lon_lat_xyz(x, y, z)
