"""FITS WCS headers of the demo images: TAN with a CD matrix, optionally TAN-SIP.

The SIP distortion is a fixed polynomial scaled to the image size so it moves
the corners by about a pixel or two, like a real camera's optics. Its inverse
(AP/BP) is fitted by least squares, so astropy and other readers can map both
ways without iterating.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits

#: Forward SIP terms ``(p, q) -> (A_p_q, B_p_q)`` in units of the distortion
#: (pixels) at the image's half-width; order 3 adds the cubic terms.
_SIP_QUADRATIC: dict[tuple[int, int], tuple[float, float]] = {
    (2, 0): (0.6, -0.2),
    (1, 1): (-0.3, 0.5),
    (0, 2): (0.4, 0.3),
}
_SIP_CUBIC: dict[tuple[int, int], tuple[float, float]] = {
    (3, 0): (0.5, 0.0),
    (2, 1): (0.0, 0.4),
    (1, 2): (0.4, 0.0),
    (0, 3): (0.0, 0.5),
}
#: Distortion scale (pixels) at the half-width.
_SIP_PIXELS = 1.5


def cd_matrix(rotation_deg: float, scale_arcsec: float) -> np.ndarray:
    """CD matrix (deg/pixel) with east left and north up rotated by ``rotation_deg``.

    ``rotation_deg`` is the position angle of the +y axis, east of north; the
    determinant is negative (the sky seen from inside).
    """
    s = scale_arcsec / 3600.0
    c = math.cos(math.radians(rotation_deg))
    n = math.sin(math.radians(rotation_deg))
    return np.array([[-s * c, s * n], [s * n, s * c]])


def sip_coefficients(order: int, size: int) -> dict[str, float]:
    """Forward SIP keywords ``A_p_q``/``B_p_q`` of ``order`` (2 or 3) for a ``size`` image."""
    if order not in (2, 3):
        raise ValueError(f"SIP order must be 2 or 3, got {order}")
    terms = dict(_SIP_QUADRATIC)
    if order == 3:
        terms.update(_SIP_CUBIC)
    half = size / 2.0
    cards: dict[str, float] = {}
    for (p, q), (a, b) in terms.items():
        # A unit term moves a point at the half-width by _SIP_PIXELS times its weight.
        scale = _SIP_PIXELS / half ** (p + q)
        if a:
            cards[f"A_{p}_{q}"] = a * scale
        if b:
            cards[f"B_{p}_{q}"] = b * scale
    return cards


def _poly(coeffs: dict[str, float], prefix: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    total = np.zeros_like(u)
    for key, value in coeffs.items():
        name, p, q = key.split("_")
        if name == prefix:
            total = total + value * u ** int(p) * v ** int(q)
    return total


def _inverse_terms(order: int) -> list[tuple[int, int]]:
    return [(p, q) for p in range(order + 1) for q in range(order + 1 - p)]


def fit_sip_inverse(forward: dict[str, float], order: int, size: int) -> dict[str, float]:
    """Inverse SIP keywords ``AP_p_q``/``BP_p_q`` of ``order`` fitted over the image.

    With ``U = u + A(u, v)``, ``V = v + B(u, v)`` the forward distortion of
    pixel offsets ``(u, v)`` from CRPIX, fits ``u = U + AP(U, V)`` and
    ``v = V + BP(U, V)`` on a grid a little larger than the image.
    """
    half = 0.6 * size
    grid = np.linspace(-half, half, 41)
    u, v = (g.ravel() for g in np.meshgrid(grid, grid))
    big_u = u + _poly(forward, "A", u, v)
    big_v = v + _poly(forward, "B", u, v)
    terms = _inverse_terms(order)
    # Fit in scaled coordinates so the normal equations stay well conditioned.
    design = np.column_stack([(big_u / half) ** p * (big_v / half) ** q for p, q in terms])
    cards: dict[str, float] = {}
    for prefix, target in (("AP", u - big_u), ("BP", v - big_v)):
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        for (p, q), value in zip(terms, solution, strict=True):
            cards[f"{prefix}_{p}_{q}"] = float(value) / half ** (p + q)
    return cards


def wcs_header(
    ra: float,
    dec: float,
    *,
    rotation_deg: float,
    scale_arcsec: float,
    size: int,
    sip_order: int = 0,
) -> fits.Header:
    """WCS keywords of a ``size`` x ``size`` image centred on ``(ra, dec)`` (ICRS, deg)."""
    header = fits.Header()
    suffix = "-SIP" if sip_order else ""
    header["WCSAXES"] = (2, "number of WCS axes")
    header["CTYPE1"] = (f"RA---TAN{suffix}", "gnomonic projection")
    header["CTYPE2"] = (f"DEC--TAN{suffix}", "gnomonic projection")
    header["CUNIT1"] = ("deg", "unit of CRVAL1 and CD1_*")
    header["CUNIT2"] = ("deg", "unit of CRVAL2 and CD2_*")
    header["CRVAL1"] = (ra, "[deg] RA of the reference pixel")
    header["CRVAL2"] = (dec, "[deg] Dec of the reference pixel")
    header["CRPIX1"] = ((size + 1) / 2.0, "reference pixel (the image centre)")
    header["CRPIX2"] = ((size + 1) / 2.0, "reference pixel (the image centre)")
    cd = cd_matrix(rotation_deg, scale_arcsec)
    for i in range(2):
        for j in range(2):
            header[f"CD{i + 1}_{j + 1}"] = (float(cd[i, j]), "[deg/pixel] linear transformation")
    header["RADESYS"] = ("ICRS", "celestial reference frame")
    if sip_order:
        forward = sip_coefficients(sip_order, size)
        inverse_order = sip_order + 1
        header["A_ORDER"] = (sip_order, "SIP forward distortion order")
        header["B_ORDER"] = (sip_order, "SIP forward distortion order")
        for key, value in forward.items():
            header[key] = value
        header["AP_ORDER"] = (inverse_order, "SIP inverse distortion order")
        header["BP_ORDER"] = (inverse_order, "SIP inverse distortion order")
        for key, value in fit_sip_inverse(forward, inverse_order, size).items():
            header[key] = value
    return header
