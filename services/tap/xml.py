"""Writing the service's small XML documents with the standard library."""

from __future__ import annotations

import xml.etree.ElementTree as ET

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{XSI_NS}}}type"
#: Content type of the VOSI documents.
XML_MEDIA_TYPE = "text/xml"


def to_bytes(root: ET.Element, prefixes: dict[str, str], *, declare: dict[str, str]) -> bytes:
    """Serialise ``root`` as UTF-8 with an XML declaration.

    ``prefixes`` name the namespaces used in element and attribute names;
    ``declare`` adds ``xmlns:`` declarations for prefixes that appear only in
    attribute values (``xsi:type="vs:ParamHTTP"``), which ElementTree cannot see.
    """
    for prefix, uri in prefixes.items():
        ET.register_namespace(prefix, uri)
    for prefix, uri in declare.items():
        root.set(f"xmlns:{prefix}", uri)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
