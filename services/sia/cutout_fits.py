"""The headers of a cutout file, written as card images without building HDU objects.

Building astropy HDUs for every request (header copies, verification,
``writeto``) costs milliseconds per HDU. What a cutout's headers hold is
fixed by the file and by which HDUs are cut; only a few values depend on the
box: the cut axes' ``NAXISi``, ``CRPIXi`` (every alternate WCS) and
``LTVi``. So a :class:`HeaderTemplate` is made once per file and set of cut
HDUs, by writing the cutout of a 1 x 1 box with astropy (exactly as a cutout
used to be written: same cards, same order, same fixes), and a request only
formats those few cards (``astropy.io.fits.Card``, so they read as astropy
would write them) and joins card images.

Headers are kept card for card, except that ``CRPIXi`` moves with the cut,
``LTV1``/``LTV2`` record the offset (IRAF's physical = logical - LTV) and
stale ``CHECKSUM``/``DATASUM`` are dropped; the primary header is always
kept (data-less when the primary image is not cut).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits

from services.sia.cutout_layout import HduLayout

BLOCK = 2880
CARD = 80
_CRPIX = re.compile(r"^CRPIX(\d+)([A-Z]?)$")
_SCALING = ("BSCALE", "BZERO", "BLANK")
LTV_COMMENT = "original pixel = this pixel - LTV"


@dataclass(frozen=True)
class CutHdu:
    """An HDU to cut: its layout and the FITS axis numbers (1-based) of the box's x and y."""

    hdu: HduLayout
    x_axis: int
    y_axis: int


@dataclass(frozen=True)
class _Variable:
    """A card whose value depends on the box."""

    position: int
    keyword: str
    comment: str
    kind: str  # "naxis", "crpix" or "ltv"
    axis: int  # FITS axis number
    base: float  # CRPIX or LTV of the original


@dataclass(frozen=True)
class HeaderTemplate:
    """One output header: fixed card images and the cards a box changes."""

    cards: tuple[str, ...]  # 80 characters each, END included, no padding
    variables: tuple[_Variable, ...]

    def render(self, sizes: dict[int, int], offsets: dict[int, int]) -> bytes:
        """The header for a box of ``sizes`` pixels starting at ``offsets`` (by FITS axis)."""
        cards = list(self.cards)
        for v in self.variables:
            if v.kind == "naxis":
                value: float | int = sizes[v.axis]
            else:
                value = v.base - offsets[v.axis]
            cards[v.position] = card_image(v.keyword, value, v.comment)
        text = "".join(cards)
        return (text + " " * (-len(text) % BLOCK)).encode("ascii")


@functools.lru_cache(maxsize=4096, typed=True)
def card_image(keyword: str, value: float | int, comment: str) -> str:
    """The 80 characters astropy writes for a card (memoized: planes of a file share values)."""
    return str(fits.Card(keyword, value, comment).image)


def padding(nbytes: int) -> bytes:
    """The zero bytes that complete a data unit of ``nbytes`` to whole FITS blocks."""
    return b"\0" * (-nbytes % BLOCK)


def make_templates(
    primary: fits.Header, cuts: Sequence[CutHdu]
) -> tuple[HeaderTemplate | None, tuple[HeaderTemplate, ...]]:
    """Templates of a data-less primary (``None`` when HDU 0 is cut) and of every cut HDU."""
    hdus: list[Any] = []
    dataless = not cuts or cuts[0].hdu.index != 0
    if dataless:
        hdus.append(_primary_header_only(primary))
    for cut in cuts:
        hdus.append(_astropy_hdu(cut))
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer, output_verify="silentfix")
    written = _split_headers(buffer.getvalue(), [_data_bytes(h) for h in hdus])
    first = HeaderTemplate(tuple(written[0]), ()) if dataless else None
    rest = written[1:] if dataless else written
    templates = tuple(_template(cards, cut) for cards, cut in zip(rest, cuts, strict=True))
    return first, templates


def _astropy_hdu(cut: CutHdu) -> fits.PrimaryHDU | fits.ImageHDU:
    """The cut HDU as astropy builds it, for a 1 x 1 box at the origin."""
    hdu = cut.hdu
    assert hdu.dtype is not None
    header = hdu.header.copy()
    axes = (cut.x_axis, cut.y_axis)
    for key in list(header.keys()):
        match = _CRPIX.match(key)
        if match and int(match.group(1)) in axes:
            header[key] = float(header[key])
    for axis in axes:
        header[f"LTV{axis}"] = (float(hdu.header.get(f"LTV{axis}", 0.0)), LTV_COMMENT)
    for key in ("CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True, remove_all=True)
    shape = [1 if axis in axes else n for axis, n in enumerate(hdu.shape, start=1)]
    data = np.zeros(tuple(reversed(shape)), dtype=hdu.dtype)
    kind = fits.PrimaryHDU if hdu.index == 0 else fits.ImageHDU
    out = kind(data=data, header=header, do_not_scale_image_data=True)
    # The constructor drops the scaling cards of raw data; the values need them back.
    for key in _SCALING:
        if key in hdu.header:
            out.header[key] = hdu.header[key]
    return out


def _primary_header_only(header: fits.Header) -> fits.PrimaryHDU:
    """A data-less primary HDU keeping the original primary header's cards."""
    out = header.copy()
    for key in ("CHECKSUM", "DATASUM"):
        out.remove(key, ignore_missing=True, remove_all=True)
    naxis = int(out.get("NAXIS", 0))
    for i in range(1, naxis + 1):
        out.remove(f"NAXIS{i}", ignore_missing=True)
    out["NAXIS"] = 0
    return fits.PrimaryHDU(header=out)


def _data_bytes(hdu: Any) -> int:
    data = hdu.data
    return 0 if data is None else int(data.nbytes)


def _split_headers(raw: bytes, data_sizes: Sequence[int]) -> list[list[str]]:
    """The card images of each header of a written file (data units skipped)."""
    headers: list[list[str]] = []
    at = 0
    for size in data_sizes:
        cards: list[str] = []
        while True:
            card = raw[at : at + CARD].decode("ascii")
            at += CARD
            cards.append(card)
            if card.startswith("END") and card[3:].strip() == "":
                break
        at += -at % BLOCK
        at += size + (-size % BLOCK)
        headers.append(cards)
    return headers


def _template(cards: list[str], cut: CutHdu) -> HeaderTemplate:
    """The cards of ``cards`` that a box changes, for the HDU ``cut``."""
    original = cut.hdu.header
    axes = (cut.x_axis, cut.y_axis)
    seen: set[str] = set()
    variables = []
    for position, image in enumerate(cards):
        keyword = image[:8].strip()
        if keyword in seen:
            continue
        kind, axis, base = _variable(keyword, axes, original)
        if kind is None:
            continue
        seen.add(keyword)
        comment = fits.Card.fromstring(image).comment
        variables.append(_Variable(position, keyword, comment, kind, axis, base))
    return HeaderTemplate(tuple(cards), tuple(variables))


def _variable(
    keyword: str, axes: tuple[int, int], original: fits.Header
) -> tuple[str | None, int, float]:
    for axis in axes:
        if keyword == f"NAXIS{axis}":
            return "naxis", axis, 0.0
        if keyword == f"LTV{axis}":
            return "ltv", axis, float(original.get(keyword, 0.0))
    match = _CRPIX.match(keyword)
    if match and int(match.group(1)) in axes:
        return "crpix", int(match.group(1)), float(original[keyword])
    return None, 0, 0.0
