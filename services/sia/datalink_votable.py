"""The ``{links}`` response as a VOTable (DataLink 1.1 section 3.3, SODA 1.0 section 3.3).

One ``RESOURCE type="results"`` with the links table in TABLEDATA (the
serialization DataLink requires), the ``standardID`` INFO DataLink 1.1 makes
mandatory and, after the table, ``QUERY_STATUS=OVERFLOW`` when the result was
cut; then one ``RESOURCE type="meta" utype="adhoc:service"`` per image (its
SODA descriptor, whose ID PARAM takes its value from the row's ID column) and
the ``{links}`` endpoint's own description (``utype="adhoc:this"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from services.sia.datalink_links import SODA_SYNC_STANDARD_ID, Link, LinksResult, SodaDescriptor
from services.tap.formats.vodoc import VOTABLE_NS, VOTABLE_VERSION, xml_attr, xml_text

#: Content type of a links response (DataLink 1.1 section 3.1).
DATALINK_MEDIA_TYPE = "application/x-votable+xml;content=datalink"
LINKS_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.1"
#: XML ID of the ID column, which the descriptors' ID PARAMs refer to.
ID_FIELD_XML_ID = "dl_id"


@dataclass(frozen=True)
class _Field:
    name: str
    datatype: str
    ucd: str
    description: str
    unit: str = ""


# DataLink 1.1 table 1: names, types and UCDs of the links table's columns, in order.
_FIELDS = (
    _Field("ID", "char", "meta.id;meta.main", "Input identifier"),
    _Field("access_url", "char", "meta.ref.url", "Link to data or service"),
    _Field("service_def", "char", "meta.ref", "Reference to a service descriptor resource"),
    _Field("error_message", "char", "meta.code.error", "Error if an access_url cannot be created"),
    _Field("description", "char", "meta.note", "Human-readable text describing this link"),
    _Field("semantics", "char", "meta.code", "Term from a vocabulary describing the link"),
    _Field("content_type", "char", "meta.code.mime", "MIME type of the content the link returns"),
    _Field("content_length", "long", "phys.size;meta.file", "Size of the download", unit="byte"),
    _Field("content_qualifier", "char", "", "Product type of the content the link returns"),
    _Field("local_semantics", "char", "meta.id.assoc", "Associates links of different documents"),
    _Field("link_auth", "char", "meta.code", "Whether the link requires authentication"),
    _Field("link_authorized", "boolean", "meta.code", "Whether the caller may use the link"),
)


def links_document(result: LinksResult, *, soda_url: str, links_url: str) -> bytes:
    """The links response for ``result``; ``soda_url`` is the SODA sync endpoint's absolute
    URL, ``links_url`` this endpoint's."""
    return "".join(_document(result, soda_url, links_url)).encode("utf-8")


def _document(result: LinksResult, soda_url: str, links_url: str) -> Iterator[str]:
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VOTABLE version="{VOTABLE_VERSION}" xmlns="{VOTABLE_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{VOTABLE_NS} {VOTABLE_NS}">\n'
        '<RESOURCE type="results">\n'
        '<INFO name="QUERY_STATUS" value="OK"/>\n'
        f'<INFO name="standardID" value="{LINKS_STANDARD_ID}"/>\n'
        '<TABLE name="links">\n'
    )
    for field in _FIELDS:
        yield _field(field)
    yield "<DATA><TABLEDATA>\n"
    for link in result.links:
        yield _row(link)
    yield "</TABLEDATA></DATA>\n</TABLE>\n"
    if result.overflow:
        yield '<INFO name="QUERY_STATUS" value="OVERFLOW"/>\n'
    yield "</RESOURCE>\n"
    for descriptor in result.descriptors:
        yield _soda_resource(descriptor, soda_url)
    yield _self_resource(links_url)
    yield "</VOTABLE>\n"


def _field(field: _Field) -> str:
    attrs = f'name="{field.name}"'
    if field.name == "ID":
        attrs += f' ID="{ID_FIELD_XML_ID}"'
    attrs += f' datatype="{field.datatype}"'
    if field.datatype == "char":
        attrs += ' arraysize="*"'
    if field.unit:
        attrs += f' unit="{field.unit}"'
    if field.ucd:
        attrs += f' ucd="{field.ucd}"'
    return f"<FIELD {attrs}><DESCRIPTION>{xml_text(field.description)}</DESCRIPTION></FIELD>\n"


def _row(link: Link) -> str:
    values = (
        link.id,
        link.access_url,
        link.service_def,
        link.error_message,
        link.description,
        link.semantics,
        link.content_type,
        None if link.content_length is None else str(link.content_length),
        link.content_qualifier,
        link.local_semantics,
        link.link_auth,
        None if link.link_authorized is None else ("true" if link.link_authorized else "false"),
    )
    # An empty TD is null for every datatype (VOTable 1.3 section 6).
    cells = "".join("<TD/>" if v is None else f"<TD>{xml_text(v)}</TD>" for v in values)
    return f"<TR>{cells}</TR>\n"


def _soda_resource(d: SodaDescriptor, soda_url: str) -> str:
    params = [
        _param(
            "ID",
            "char",
            ucd="meta.id;meta.main",
            ref=ID_FIELD_XML_ID,
            description="The publisher DID of the image to cut (the row's ID)",
        ),
        _param(
            "POS",
            "char",
            ucd="pos.outline;obs",
            description="Region to cut out, as CIRCLE ra dec r, RANGE ra1 ra2 dec1 dec2 or "
            "POLYGON ra1 dec1 ...; degrees, ICRS (useful values: see POLYGON)",
        ),
        _param(
            "CIRCLE",
            "double",
            arraysize="3",
            xtype="circle",
            unit="deg",
            ucd="pos.outline;obs",
            description="A circle (ra dec radius, ICRS) the cutout must cover; "
            "MAX is a circle covering the whole image",
            maximum=None if d.circle is None else _numbers(d.circle),
        ),
        _param(
            "POLYGON",
            "double",
            arraysize="*",
            xtype="polygon",
            unit="deg",
            ucd="pos.outline;obs",
            description="A polygon (ra1 dec1 ra2 dec2 ..., ICRS) the cutout must cover; "
            "MAX is the image's footprint",
            maximum=None if d.polygon is None else _numbers(d.polygon),
        ),
        _param(
            "BAND",
            "double",
            arraysize="2",
            xtype="interval",
            unit="m",
            ucd="em.wl;stat.interval",
            description="Wavelength interval (m); the image's band lies between MIN and MAX",
            minimum=None if d.band is None else repr(d.band[0]),
            maximum=None if d.band is None else repr(d.band[1]),
        ),
        _param(
            "TIME",
            "double",
            arraysize="2",
            xtype="interval",
            unit="d",
            ucd="time.interval;obs.exposure",
            description="Time interval (MJD); the exposure lies between MIN and MAX",
            minimum=None if d.time is None else repr(d.time[0]),
            maximum=None if d.time is None else repr(d.time[1]),
        ),
    ]
    if d.pol_states is not None:
        params.append(
            _param(
                "POL",
                "char",
                ucd="meta.code;phys.polarization",
                description="Polarization states to extract",
                options=d.pol_states,
            )
        )
    return (
        f'<RESOURCE type="meta" utype="adhoc:service" ID="{d.xml_id}">\n'
        f"<DESCRIPTION>SODA cutouts of {xml_text(d.did)}</DESCRIPTION>\n"
        f'<PARAM name="standardID" datatype="char" arraysize="*" '
        f'value="{SODA_SYNC_STANDARD_ID}"/>\n'
        f'<PARAM name="accessURL" datatype="char" arraysize="*" ucd="meta.ref.url" '
        f'value="{xml_attr(soda_url)}"/>\n'
        '<GROUP name="inputParams">\n' + "".join(params) + "</GROUP>\n</RESOURCE>\n"
    )


def _self_resource(links_url: str) -> str:
    params = _param(
        "ID",
        "char",
        ucd="meta.id;meta.main",
        description="Publisher DID of an image (obs_publisher_did); repeat for several",
    ) + _param(
        "RESPONSEFORMAT",
        "char",
        description="Format of the response; only VOTable (TABLEDATA) is offered",
        options=("votable", "application/x-votable+xml"),
    )
    return (
        '<RESOURCE type="meta" utype="adhoc:this" name="links">\n'
        "<DESCRIPTION>This DataLink {links} endpoint</DESCRIPTION>\n"
        f'<PARAM name="standardID" datatype="char" arraysize="*" value="{LINKS_STANDARD_ID}"/>\n'
        f'<PARAM name="accessURL" datatype="char" arraysize="*" ucd="meta.ref.url" '
        f'value="{xml_attr(links_url)}"/>\n'
        f'<GROUP name="inputParams">\n{params}</GROUP>\n</RESOURCE>\n'
    )


def _param(
    name: str,
    datatype: str,
    *,
    description: str,
    arraysize: str = "*",
    xtype: str = "",
    unit: str = "",
    ucd: str = "",
    ref: str = "",
    minimum: str | None = None,
    maximum: str | None = None,
    options: tuple[str, ...] = (),
) -> str:
    attrs = f'name="{name}" datatype="{datatype}" arraysize="{arraysize}"'
    for key, value in (("xtype", xtype), ("unit", unit), ("ucd", ucd), ("ref", ref)):
        if value:
            attrs += f' {key}="{xml_attr(value)}"'
    body = f"<DESCRIPTION>{xml_text(description)}</DESCRIPTION>"
    values = ""
    if minimum is not None:
        values += f'<MIN value="{minimum}"/>'
    if maximum is not None:
        values += f'<MAX value="{maximum}"/>'
    values += "".join(f'<OPTION value="{xml_attr(o)}"/>' for o in options)
    if values:
        body += f"<VALUES>{values}</VALUES>"
    # value="": the user (or, with ref, the row) supplies it (DataLink 1.1 section 4.3).
    return f'<PARAM {attrs} value="">{body}</PARAM>\n'


def _numbers(values: tuple[float, ...]) -> str:
    return " ".join(repr(v) for v in values)
