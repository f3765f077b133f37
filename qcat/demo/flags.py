"""Bits of the demo Object table's ``flags`` column (documented in demo.yaml)."""

from __future__ import annotations

from enum import IntFlag


class ObjectFlag(IntFlag):
    """Quality bits of an object; several may be set at once."""

    EDGE = 1
    """Close to the edge of an image, so part of its footprint is missing."""
    SATURATED = 2
    """Brighter than the saturation limit in at least one band."""
    BRIGHT_STAR_HALO = 4
    """Inside the halo around a masked bright star."""
    BLENDED = 8
    """Overlaps a neighbour; its fluxes come from deblending."""
    NEGATIVE_FLUX = 16
    """The PSF flux is zero or negative in at least one band."""
    NOT_DETECTED = 32
    """Below the 5 sigma detection threshold in every band."""
