"""``/sia/capabilities``: the VOSI 1.1 capabilities of the SIA 2.0 service.

One capability with the SIA 2.0 query standard ID
(``ivo://ivoa.net/std/SIA#query-2.0``, the one pyvo's ``SIA2Service`` looks
for; its interface's access URL is where pyvo sends searches), plus the VOSI
capabilities and availability endpoints. The interface says nothing more:
pyvo 1.9 warns about ``param`` elements, and about the two ``queryType``
elements (GET and POST) VODataService allows.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response

from services.tap.capabilities import (
    VOSI_AVAILABILITY,
    VOSI_CAPABILITIES,
    VOSI_CAPABILITIES_NS,
    VR_NS,
    VS_NS,
)
from services.tap.errors import VOTABLE_MEDIA_TYPE
from services.tap.xml import XML_MEDIA_TYPE, XSI_NS, XSI_TYPE, to_bytes
from services.urls import base_url

SIA_QUERY_2 = "ivo://ivoa.net/std/SIA#query-2.0"


def _interface(parent: ET.Element, url: str, use: str) -> ET.Element:
    interface = ET.SubElement(parent, "interface", {XSI_TYPE: "vs:ParamHTTP"})
    ET.SubElement(interface, "accessURL", {"use": use}).text = url
    return interface


def capabilities_xml(sia_url: str) -> bytes:
    """The capabilities of the SIA service at ``sia_url`` (absolute, no trailing slash)."""
    root = ET.Element(f"{{{VOSI_CAPABILITIES_NS}}}capabilities")
    sia = ET.SubElement(root, "capability", {"standardID": SIA_QUERY_2})
    interface = ET.SubElement(
        sia, "interface", {XSI_TYPE: "vs:ParamHTTP", "role": "std", "version": "2.0"}
    )
    ET.SubElement(interface, "accessURL", {"use": "base"}).text = f"{sia_url}/query"
    ET.SubElement(interface, "resultType").text = VOTABLE_MEDIA_TYPE
    for standard_id, path in (
        (VOSI_CAPABILITIES, "capabilities"),
        (VOSI_AVAILABILITY, "availability"),
    ):
        capability = ET.SubElement(root, "capability", {"standardID": standard_id})
        _interface(capability, f"{sia_url}/{path}", "full")
    return to_bytes(
        root, {"vosi": VOSI_CAPABILITIES_NS, "xsi": XSI_NS}, declare={"vr": VR_NS, "vs": VS_NS}
    )


async def capabilities_endpoint(request: Request) -> Response:
    """GET ``/sia/capabilities``."""
    return Response(capabilities_xml(base_url(request) + "/sia"), media_type=XML_MEDIA_TYPE)
