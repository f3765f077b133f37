"""STC-S polygons, the text form of ObsCore's ``s_region``: ``POLYGON [frame] ra1 dec1 ...``."""

from __future__ import annotations

import math


def stcs_polygon_numbers(text: str | None) -> tuple[float, ...] | None:
    """The ``ra1, dec1, ra2, dec2, ...`` of an STC-S polygon; ``None`` when ``text`` is not
    one (another shape, words after the coordinates, fewer than three vertices, an odd or
    non-finite number).

    The frame and reference position before the numbers (``ICRS``, ``ICRS GEOCENTER``)
    are skipped: qcat's footprints are all ICRS.
    """
    if not text:
        return None
    words = text.split()
    if not words or words[0].upper() != "POLYGON":
        return None
    numbers: list[float] = []
    for word in words[1:]:
        try:
            numbers.append(float(word))
        except ValueError:
            if numbers:  # a word after the coordinates: not a plain polygon
                return None
    if len(numbers) < 6 or len(numbers) % 2 or not all(math.isfinite(x) for x in numbers):
        return None
    return tuple(numbers)
