"""The demo image fields: where each one points and how its camera is set up.

A field *design* fixes the imaging set-up (rotation, distortion, pixel scale)
and a sky region to look in; *placing* it on a catalog centres the field near
that region's best star for checking astrometry (the anchor: bright in all six
bands but unsaturated, with no comparable neighbour), so every field has a
catalog star to find whatever the catalog's size or seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qcat.demo.images.catalog import ImageCatalog, SkyCircle
from qcat.demo.images.photometry import VISIT_DEPTH, anchor_bright_limits
from qcat.demo.sky import offset_positions

#: The anchor sits this fraction of the field width east and south of the centre,
#: so it is not at the reference pixel (where distortion vanishes).
_ANCHOR_OFFSET = (0.12, -0.09)
#: Neighbours within this many pixels of an anchor must be at least
#: _ISOLATION_MAGS fainter than it in every band.
_ISOLATION_PIXELS = 12.0
_ISOLATION_MAGS = 4.0
#: For the field across RA = 0, the anchor may sit at most this fraction of the
#: half-width east or west of the seam (the centre goes half way between).
_RA0_ANCHOR_SPAN = 0.9


@dataclass(frozen=True)
class FieldDesign:
    """How one demo field is imaged and where on the sky to put it.

    ``search`` is the region the anchor star is picked from. ``sip_order`` is 0
    for a plain TAN WCS, else the order (2 or 3) of its SIP distortion.
    ``rotation_deg`` is the position angle of the image's +y axis, east of north.
    With ``crosses_ra0`` the anchor is picked near RA = 0 and the field centre
    put half way between it and the seam, so the images straddle RA = 0/360.
    """

    name: str
    search: SkyCircle
    rotation_deg: float
    pixel_scale_arcsec: float
    sip_order: int = 0
    crosses_ra0: bool = False

    def half_width_deg(self, size: int) -> float:
        """Half the side of a ``size`` x ``size`` image, in degrees."""
        return size * self.pixel_scale_arcsec / 7200.0

    def radius_deg(self, size: int) -> float:
        """Half the diagonal of a ``size`` x ``size`` image, in degrees."""
        return math.sqrt(2.0) * self.half_width_deg(size)


#: The default fields: a plain TAN field in the bulge; a strongly rotated one and
#: a cubic-SIP one 5 degrees off the disk's plane (where dust dims u less); a
#: quadratic-SIP one across RA = 0 (Cassiopeia, in the disk); and a rotated one
#: within a few degrees of the north celestial pole.
DEFAULT_FIELDS: tuple[FieldDesign, ...] = (
    FieldDesign("bulge", SkyCircle(270.51, -28.73, 1.0), 0.0, 3.0),
    FieldDesign("disk-rotated", SkyCircle(285.99, -4.88, 3.0), 35.0, 5.0),
    FieldDesign("disk-sip", SkyCircle(161.45, -64.67, 3.0), -15.0, 5.0, sip_order=3),
    FieldDesign("ra0", SkyCircle(0.0, 61.3, 5.0), 10.0, 6.0, sip_order=2, crosses_ra0=True),
    FieldDesign("pole", SkyCircle(0.0, 90.0, 6.0), 150.0, 8.0),
)


@dataclass(frozen=True)
class DemoField:
    """A field design placed on the sky: its centre and anchor star.

    ``anchor_*`` describe the catalog star the field is placed around (None when
    the search region held no usable star; the field then sits at the region's
    centre). Every visit of the field contains the anchor.
    """

    design: FieldDesign
    ra: float
    dec: float
    anchor_id: int | None
    anchor_ra: float | None
    anchor_dec: float | None

    @property
    def name(self) -> str:
        return self.design.name

    @property
    def near_pole(self) -> bool:
        """Whether the centre is within 10 degrees of a celestial pole."""
        return abs(self.dec) > 80.0


def _wrap180(deg: np.ndarray) -> np.ndarray:
    return (deg + 180.0) % 360.0 - 180.0


def _isolated(catalog: ImageCatalog, candidates: np.ndarray, radius_deg: float) -> np.ndarray:
    """Which candidate indices have no neighbour within ``radius_deg`` of similar brightness."""
    vectors = catalog.vectors
    cos_radius = math.cos(math.radians(radius_deg))
    keep = np.zeros(len(candidates), dtype=bool)
    for k, index in enumerate(candidates):
        near = np.flatnonzero(vectors @ vectors[index] >= cos_radius)
        near = near[near != index]
        # NaN magnitudes (no flux) never count as bright neighbours.
        bright = catalog.mags[near] < catalog.mags[index] + _ISOLATION_MAGS
        keep[k] = not bright.any()
    return keep


def place_field(design: FieldDesign, catalog: ImageCatalog, size: int) -> DemoField:
    """Centre ``design`` near the best anchor star of ``catalog`` in its search region.

    The anchor is the isolated point source in the region with the highest
    signal-to-noise ratio in its worst band, among those not saturating in any
    band. Deterministic.
    """
    half_width = design.half_width_deg(size)
    inside = design.search.contains(catalog.vectors)
    mags = catalog.mags
    usable = (
        inside
        & ~catalog.extended
        & np.isfinite(mags).all(axis=1)
        & (np.nan_to_num(mags, nan=0.0) >= anchor_bright_limits()).all(axis=1)
    )
    # How far east of the RA = 0 seam each object is (degrees on the sky).
    seam_offset = _wrap180(catalog.ra) * np.cos(np.radians(catalog.dec))
    if design.crosses_ra0:
        usable &= np.abs(seam_offset) <= _RA0_ANCHOR_SPAN * half_width
    candidates = np.flatnonzero(usable)
    # Best first: the highest signal-to-noise ratio in its worst band (the
    # smallest margin below the visit depth); objectId breaks ties.
    worst = (mags[candidates] - VISIT_DEPTH).max(axis=1)
    order = np.lexsort((catalog.object_id[candidates], worst))
    candidates = candidates[order]
    isolation_deg = _ISOLATION_PIXELS * design.pixel_scale_arcsec / 3600.0
    # Only the best few need the (quadratic) isolation check.
    best = candidates[:50]
    best = best[_isolated(catalog, best, isolation_deg)]
    if len(best) == 0:
        return DemoField(design, design.search.ra, design.search.dec, None, None, None)
    anchor = int(best[0])
    anchor_ra = float(catalog.ra[anchor])
    anchor_dec = float(catalog.dec[anchor])
    width = 2.0 * half_width
    # The centre is west of the anchor and north of it, so the anchor is off
    # the reference pixel; across RA = 0 it is half way to the seam instead,
    # so the seam runs through the image too.
    east = -0.5 * seam_offset[anchor] if design.crosses_ra0 else -_ANCHOR_OFFSET[0] * width
    ra, dec = offset_positions(
        np.array([anchor_ra]),
        np.array([anchor_dec]),
        np.array([east]),
        np.array([-_ANCHOR_OFFSET[1] * width]),
    )
    centre_ra, centre_dec = float(ra[0]), float(dec[0])
    return DemoField(
        design,
        centre_ra,
        centre_dec,
        int(catalog.object_id[anchor]),
        anchor_ra,
        anchor_dec,
    )


def catalog_regions(designs: tuple[FieldDesign, ...], size: int) -> list[SkyCircle]:
    """Circles holding every object any visit of ``designs`` can show.

    A search region grown by twice the field's half-diagonal: room for the centre's
    offset from the anchor, dithers and the widest stamps.
    """
    return [
        SkyCircle(d.search.ra, d.search.dec, d.search.radius_deg + 2.0 * d.radius_deg(size))
        for d in designs
    ]
