"""The geometry error: an ADQL region or position that cannot be used."""

from __future__ import annotations

from qcat.errors import QcatError


class GeometryError(QcatError):
    """A position, circle, box or polygon is invalid; the message names the argument at fault."""
