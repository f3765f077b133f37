"""Filter names -> wavelength ranges (ObsCore ``em_min``/``em_max``, metres).

A header's FILTER (or BAND, FILTNAM, FILTER1) keyword names the filter in
many spellings: ``r``, ``r_01`` (Rubin), ``HSC-R``, ``r DECam SDSS c0002 ...``,
``SDSS r'``, ``Ks``. :func:`band_for` tries the whole name first, then
shortened forms, so a bare ``g`` is LSST's g band (the survey qcat models)
while ``sdss g`` or ``g'`` is SDSS's. The ranges are the bands' approximate
half-maximum limits; see docs/images.md for the table. An unknown filter
gives ``None``: the ingest leaves the band NULL and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NM = 1e-9


@dataclass(frozen=True)
class Band:
    """A photometric band: its canonical name, system and wavelength range (metres)."""

    name: str
    system: str
    em_min: float
    em_max: float

    @property
    def res_power(self) -> float:
        """Resolving power: central wavelength over band width."""
        return (self.em_min + self.em_max) / 2.0 / (self.em_max - self.em_min)


def _band(system: str, name: str, lo_nm: float, hi_nm: float) -> Band:
    return Band(name, system, lo_nm * _NM, hi_nm * _NM)


#: Bands by system; LSST first: a bare ``g`` means LSST g.
_LSST = {
    b.name: b
    for b in (
        _band("LSST", "u", 320.0, 400.0),
        _band("LSST", "g", 400.0, 552.0),
        _band("LSST", "r", 552.0, 691.0),
        _band("LSST", "i", 691.0, 818.0),
        _band("LSST", "z", 818.0, 922.0),
        _band("LSST", "y", 948.0, 1060.0),
    )
}
_SDSS = {
    b.name: b
    for b in (
        _band("SDSS", "u", 325.0, 385.0),
        _band("SDSS", "g", 400.0, 550.0),
        _band("SDSS", "r", 560.0, 690.0),
        _band("SDSS", "i", 695.0, 830.0),
        _band("SDSS", "z", 840.0, 990.0),
    )
}
_JOHNSON = {
    b.name: b
    for b in (
        _band("Johnson-Cousins", "U", 332.0, 398.0),
        _band("Johnson-Cousins", "B", 398.0, 492.0),
        _band("Johnson-Cousins", "V", 507.0, 595.0),
        _band("Johnson-Cousins", "R", 589.0, 727.0),
        _band("Johnson-Cousins", "I", 731.0, 880.0),
        _band("2MASS", "J", 1154.0, 1316.0),
        _band("2MASS", "H", 1537.0, 1787.0),
        _band("2MASS", "Ks", 2028.0, 2290.0),
    )
}

#: Spellings that name a system explicitly (lower case, before the band letter).
_SDSS_PREFIXES = ("sdss", "sdss_", "sdss-", "sloan", "sloan_", "sloan-")
_LSST_PREFIXES = ("lsst", "lsst_", "lsst-", "rubin", "rubin_", "rubin-")

#: Separators between a band letter and instrument decorations (``HSC-G``, ``r_01``).
_TOKENS = re.compile(r"[\s_\-/:.,;]+")


def band_for(filter_name: str | None) -> Band | None:
    """The band a filter name means, or ``None`` when it is not recognised."""
    if filter_name is None:
        return None
    name = filter_name.strip()
    if not name:
        return None
    for candidate in _candidates(name):
        band = _lookup(candidate)
        if band is not None:
            return band
    return None


def _candidates(name: str) -> list[str]:
    """``name``, then its first and last tokens (``r_01`` -> ``r``; ``HSC-G`` -> ``G``)."""
    out = [name, name.replace(" ", "")]
    tokens = [t for t in _TOKENS.split(name) if t]
    if tokens:
        out += [tokens[0], tokens[-1]]
        if len(tokens) > 1:
            out.append(tokens[0] + tokens[1])  # "sdss g" -> "sdssg"
    return out


def _lookup(word: str) -> Band | None:
    lower = word.lower()
    for prefixes, table in ((_SDSS_PREFIXES, _SDSS), (_LSST_PREFIXES, _LSST)):
        for prefix in prefixes:
            if lower.startswith(prefix) and len(lower) > len(prefix):
                rest = lower[len(prefix) :].rstrip("'")
                if rest in table:
                    return table[rest]
    if lower.endswith("'") and lower[:-1] in _SDSS:  # SDSS primes: g'
        return _SDSS[lower[:-1]]
    if word in _JOHNSON:  # case matters: "U" is Johnson, "u" is LSST
        return _JOHNSON[word]
    if lower in ("k", "ks", "k_s", "kshort"):
        return _JOHNSON["Ks"]
    if lower in _LSST and word == lower:
        return _LSST[lower]
    if word.upper() in ("G", "R", "I", "Z", "Y") and word.upper() == word:
        # Upper-case survey letters (HSC-G, DECam "Y"): the LSST-like bands.
        return _LSST[lower]
    return None
