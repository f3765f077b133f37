"""The links of images (DataLink 1.1 section 3.2): what a ``{links}`` response says, as values.

Pure: given the requested IDs and the images found for them, :func:`build_links`
decides the rows of the links table and the SODA service descriptors, with
the standard's batch rules:

- every ID's links are consecutive rows; an ID given twice is answered once;
- at most ``max_ids`` IDs are resolved, and rows are only ever dropped an
  ID at a time (``MAXREC``), never within one ID; either cut sets
  ``overflow`` (``QUERY_STATUS=OVERFLOW``);
- an unknown ID gets one ``#this`` row with ``NotFoundFault: ...``, an ID that
  cannot be an image's ``obs_publisher_did`` one with ``UsageFault: ...``.

Each found image gets a ``#this`` row (the file) and a ``#cutout`` row whose
``service_def`` names a SODA descriptor carrying that image's own ranges
(SODA 1.0 section 3.3.2), so a client can build a valid cutout request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from qcat.geometry.stcs import stcs_polygon_numbers

#: Semantics (DataLink core vocabulary, relative URIs) of the rows written here.
THIS = "#this"
CUTOUT = "#cutout"
#: ``content_qualifier`` of image links (IVOA product-type vocabulary).
IMAGE_PRODUCT = "#image"
#: The SODA capability the descriptors describe.
SODA_SYNC_STANDARD_ID = "ivo://ivoa.net/std/SODA#sync-1.0"
#: Longest ID value looked up; longer ones are answered with a UsageFault row.
MAX_ID_CHARS = 1000

# ivo://authority/collection?obs_id (IVOA Identifiers 2.0: the authority is at
# least 3 characters of [\w.~*()-], the query part is the local dataset id).
_DID = re.compile(r"ivo://[\w.~*()\-]{3,}/[^?#\s]+\?[^#\s]+", re.IGNORECASE)


class ImageInfo(Protocol):
    """What the links of one image are made from (``services.sia.image_index.ImageRecord``)."""

    @property
    def did(self) -> str: ...
    @property
    def collection(self) -> str: ...
    @property
    def obs_id(self) -> str: ...
    @property
    def s_ra(self) -> float | None: ...
    @property
    def s_dec(self) -> float | None: ...
    @property
    def s_fov(self) -> float | None: ...
    @property
    def s_region(self) -> str: ...
    @property
    def em_min(self) -> float | None: ...
    @property
    def em_max(self) -> float | None: ...
    @property
    def t_min(self) -> float | None: ...
    @property
    def t_max(self) -> float | None: ...
    @property
    def pol_states(self) -> str | None: ...
    @property
    def file_format(self) -> str: ...
    @property
    def file_size(self) -> int | None: ...


@dataclass(frozen=True)
class Link:
    """One row of the links table; exactly one of access_url, service_def, error_message."""

    id: str
    semantics: str
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None
    #: ``"false"``: anonymous access (qcat has no authentication); None on error rows.
    link_auth: str | None = None
    link_authorized: bool | None = None


@dataclass(frozen=True)
class SodaDescriptor:
    """A SODA sync service descriptor for one image, with the ranges valid for it."""

    #: XML ID of the RESOURCE (what the ``#cutout`` row's service_def names).
    xml_id: str
    did: str
    #: (ra, dec, radius) in degrees: a circle covering the image.
    circle: tuple[float, float, float] | None
    #: ra1 dec1 ra2 dec2 ... in degrees: the footprint.
    polygon: tuple[float, ...] | None
    #: (em_min, em_max) in metres.
    band: tuple[float, float] | None
    #: (t_min, t_max) as MJD.
    time: tuple[float, float] | None
    #: The polarization states one can ask for (none: the image has no POL axis).
    pol_states: tuple[str, ...] | None


@dataclass(frozen=True)
class LinksResult:
    """Everything a links response holds: the rows, their descriptors, whether it was cut."""

    links: tuple[Link, ...]
    descriptors: tuple[SodaDescriptor, ...]
    overflow: bool


def unique_ids(values: Iterable[str]) -> list[str]:
    """``values`` without repeats, in first-seen order (one block of rows per ID)."""
    return list(dict.fromkeys(values))


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an image's ``obs_publisher_did`` (a UsageFault), or None."""
    if not value.strip():
        return "UsageFault: the ID is empty"
    if len(value) > MAX_ID_CHARS:
        return f"UsageFault: the ID is longer than {MAX_ID_CHARS} characters"
    if not _DID.fullmatch(value):
        return (
            f"UsageFault: {value} is not a dataset identifier; "
            "expected ivo://AUTHORITY/COLLECTION?OBS_ID"
        )
    return None


def build_links(
    ids: Sequence[str],
    images: Mapping[str, ImageInfo],
    *,
    file_url: Callable[[ImageInfo], str],
    max_ids: int,
    maxrec: int | None,
) -> LinksResult:
    """The links of ``ids`` (already unique, see :func:`unique_ids`), in their order.

    ``images`` maps each ID found to its image; ``file_url`` gives an image
    file's absolute URL. More than ``max_ids`` IDs, or more rows than
    ``maxrec`` (None: no limit), cut the result between two IDs.
    """
    overflow = len(ids) > max_ids
    links: list[Link] = []
    descriptors: list[SodaDescriptor] = []
    for value in ids[:max_ids]:
        image = images.get(value)
        if image is None:
            block = [_error_row(value)]
            descriptor = None
        else:
            descriptor = soda_descriptor(image, f"soda-{len(descriptors) + 1}")
            block = _image_rows(value, image, file_url(image), descriptor.xml_id)
        if maxrec is not None and len(links) + len(block) > maxrec:
            overflow = True
            break
        links.extend(block)
        if descriptor is not None:
            descriptors.append(descriptor)
    return LinksResult(tuple(links), tuple(descriptors), overflow)


def _error_row(value: str) -> Link:
    message = id_problem(value) or f"NotFoundFault: {value} is not the ID of any image here"
    return Link(id=value, semantics=THIS, error_message=message)


def _image_rows(value: str, image: ImageInfo, url: str, service_def: str) -> list[Link]:
    this = Link(
        id=value,
        semantics=THIS,
        access_url=url,
        description=f"The FITS file of image {image.obs_id} ({image.collection})",
        content_type=image.file_format,
        content_length=image.file_size,
        content_qualifier=IMAGE_PRODUCT,
        link_auth="false",
        link_authorized=True,
    )
    cutout = Link(
        id=value,
        semantics=CUTOUT,
        service_def=service_def,
        description=f"SODA cutouts of image {image.obs_id}: sky region, band, time",
        content_type=image.file_format,
        content_qualifier=IMAGE_PRODUCT,
        link_auth="false",
        link_authorized=True,
    )
    return [this, cutout]


def soda_descriptor(image: ImageInfo, xml_id: str) -> SodaDescriptor:
    """The SODA descriptor of ``image``: its covering circle, footprint, band and time."""
    ra, dec, fov = image.s_ra, image.s_dec, image.s_fov
    circle = None
    if ra is not None and dec is not None and fov is not None and _finite(ra, dec, fov):
        circle = (float(ra), float(dec), float(fov) / 2)
    return SodaDescriptor(
        xml_id=xml_id,
        did=image.did,
        circle=circle,
        polygon=polygon_vertices(image.s_region),
        band=_interval(image.em_min, image.em_max),
        time=_interval(image.t_min, image.t_max),
        pol_states=pol_state_list(image.pol_states),
    )


def polygon_vertices(s_region: str | None) -> tuple[float, ...] | None:
    """The ``ra dec ...`` numbers of an STC-S ``POLYGON [frame] ...`` (None if not one)."""
    return stcs_polygon_numbers(s_region)


def pol_state_list(pol_states: str | None) -> tuple[str, ...] | None:
    """ObsCore ``pol_states`` (``/I/Q/U/``) as a tuple of states; None when there are none."""
    if not pol_states:
        return None
    states = tuple(s for s in pol_states.strip().split("/") if s.strip())
    return states or None


def _interval(low: float | None, high: float | None) -> tuple[float, float] | None:
    if low is None or high is None or not _finite(low, high):
        return None
    return (float(low), float(high))


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)
