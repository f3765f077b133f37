"""``/tap/capabilities``: the VOSI 1.1 capabilities document with TAPRegExt 1.0.

Everything declared is derived from the code that implements it: the ADQL
language features and user-defined functions from the parser's allow-list
(``qcat.czar.adql.functions``), the output formats from
``services.tap.formats.FORMATS``, the limits from the settings. Only what
this service really serves is declared. Both upload methods TAP requires are
declared; URLs are fetched from the service's own host only (see
``services/tap/upload.py``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence

import anyio
from starlette.requests import Request
from starlette.responses import Response

from qcat.czar.adql.functions import FUNCTIONS, language_features
from qcat.czar.catalog import CatalogSnapshot
from qcat.errors import NotFoundError
from services.service import Service
from services.settings import ServiceSettings
from services.tap.formats import FORMATS, OutputFormat
from services.tap.xml import XML_MEDIA_TYPE, XSI_NS, XSI_TYPE, to_bytes

VOSI_CAPABILITIES_NS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
VR_NS = "http://www.ivoa.net/xml/VOResource/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
TR_NS = "http://www.ivoa.net/xml/TAPRegExt/v1.0"

TAP = "ivo://ivoa.net/std/TAP"
TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt"
VOSI_CAPABILITIES = "ivo://ivoa.net/std/VOSI#capabilities"
VOSI_AVAILABILITY = "ivo://ivoa.net/std/VOSI#availability"
VOSI_TABLES = "ivo://ivoa.net/std/VOSI#tables-1.1"
DALI_EXAMPLES = "ivo://ivoa.net/std/DALI#examples"

#: Data models declared when their table is published: (table, ivo-id, name).
DATA_MODELS = (("ivoa.ObsCore", "ivo://ivoa.net/std/ObsCore#core-1.1", "ObsCore-1.1"),)

#: ADQL versions accepted (LANG=ADQL-2.0 queries run under the 2.1 grammar).
ADQL_VERSIONS = (("2.1", "ivo://ivoa.net/std/ADQL#v2.1"), ("2.0", "ivo://ivoa.net/std/ADQL#v2.0"))

#: TAPRegExt's identifiers of the standard VOTable serialisations.
OUTPUT_FORMAT_IDS = {
    "votable-binary2": f"{TAPREGEXT}#output-votable-binary2",
    "votable-binary": f"{TAPREGEXT}#output-votable-binary",
    "votable-tabledata": f"{TAPREGEXT}#output-votable-td",
}

#: What the syntax features are (function features take their allow-list summary).
SYNTAX_DESCRIPTIONS = {
    "ILIKE": "case-insensitive LIKE",
    "UNION": "rows of either query (UNION ALL keeps duplicates)",
    "EXCEPT": "rows of the first query not in the second",
    "INTERSECT": "rows in both queries",
    "WITH": "common table expressions (named subqueries)",
    "CAST": "type conversion to a numeric or character type",
    "OFFSET": "skip the first rows of the (ordered) result",
}


def _canonical(feature_type: str) -> str:
    """The feature type as TAPRegExt spells it (IVOIDs compare case-insensitively)."""
    prefix = f"{TAPREGEXT}#"
    if feature_type.lower().startswith(prefix.lower()):
        return prefix + feature_type[len(prefix) :]
    return feature_type


def _feature_description(form: str) -> str:
    name = form.split("(")[0].strip().upper()
    spec = FUNCTIONS.get(name)
    if spec is not None:
        return spec.summary
    return SYNTAX_DESCRIPTIONS.get(name, "")


def _language(parent: ET.Element) -> None:
    language = ET.SubElement(parent, "language")
    ET.SubElement(language, "name").text = "ADQL"
    for version, ivo_id in ADQL_VERSIONS:
        ET.SubElement(language, "version", {"ivo-id": ivo_id}).text = version
    ET.SubElement(language, "description").text = (
        "ADQL 2.1 with geometry exact on the sphere; only the functions declared here "
        "may be called."
    )
    for feature_type, forms in language_features().items():
        if not forms:
            continue
        group = ET.SubElement(language, "languageFeatures", {"type": _canonical(feature_type)})
        for form in forms:
            feature = ET.SubElement(group, "feature")
            ET.SubElement(feature, "form").text = form
            description = _feature_description(form)
            if description:
                ET.SubElement(feature, "description").text = description


#: Upload methods (TAP 1.1 requires both): inline multipart parts, and http(s) URLs,
#: which this service fetches from its own host only (see services/tap/upload.py).
UPLOAD_METHODS = (
    "ivo://ivoa.net/std/TAPRegExt#upload-inline",
    "ivo://ivoa.net/std/TAPRegExt#upload-http",
)


def _output_format(parent: ET.Element, fmt: OutputFormat) -> None:
    attrs = {"ivo-id": OUTPUT_FORMAT_IDS[fmt.name]} if fmt.name in OUTPUT_FORMAT_IDS else {}
    element = ET.SubElement(parent, "outputFormat", attrs)
    ET.SubElement(element, "mime").text = fmt.mime_type
    for alias in fmt.aliases:
        if alias != fmt.mime_type.lower():
            ET.SubElement(element, "alias").text = alias


def _limits(parent: ET.Element, tag: str, default: int, hard: int, unit: str | None) -> None:
    element = ET.SubElement(parent, tag)
    attrs = {"unit": unit} if unit else {}
    ET.SubElement(element, "default", attrs).text = str(default)
    ET.SubElement(element, "hard", attrs).text = str(hard)


def _interface(parent: ET.Element, url: str, use: str, *, std: bool = False) -> None:
    attrs = {XSI_TYPE: "vs:ParamHTTP"}
    if std:
        attrs |= {"role": "std", "version": "1.1"}
    interface = ET.SubElement(parent, "interface", attrs)
    ET.SubElement(interface, "accessURL", {"use": use}).text = url


def capabilities_xml(
    tap_url: str,
    settings: ServiceSettings,
    *,
    extra_endpoints: Sequence[tuple[str, str]] = (),
    data_models: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The capabilities of the TAP service at ``tap_url`` (absolute, no trailing slash).

    ``extra_endpoints`` are further VOSI/DALI capabilities served below
    ``tap_url``: ``(standardID, path)`` pairs such as ``(VOSI_TABLES, "tables")``.
    ``data_models`` are the ``(ivo-id, name)`` of the data models the tables
    implement (TAPRegExt ``dataModel``), e.g. ObsCore 1.1.
    """
    root = ET.Element(f"{{{VOSI_CAPABILITIES_NS}}}capabilities")
    tap = ET.SubElement(root, "capability", {"standardID": TAP, XSI_TYPE: "tr:TableAccess"})
    _interface(tap, tap_url, "base", std=True)
    for ivo_id, name in data_models:
        ET.SubElement(tap, "dataModel", {"ivo-id": ivo_id}).text = name
    _language(tap)
    for fmt in FORMATS:
        _output_format(tap, fmt)
    for method in UPLOAD_METHODS:
        ET.SubElement(tap, "uploadMethod", {"ivo-id": method})
    _limits(tap, "retentionPeriod", settings.tap_retention_s, settings.tap_retention_s, None)
    _limits(
        tap,
        "executionDuration",
        min(settings.tap_execution_duration_s, settings.tap_execution_duration_max_s),
        settings.tap_execution_duration_max_s,
        None,
    )
    _limits(tap, "outputLimit", settings.tap_maxrec_default, settings.tap_maxrec_hard, "row")
    upload = settings.tap_upload_max_bytes
    _limits(tap, "uploadLimit", upload, upload, "byte")
    endpoints = [(VOSI_CAPABILITIES, "capabilities"), (VOSI_AVAILABILITY, "availability")]
    for standard_id, path in [*endpoints, *extra_endpoints]:
        capability = ET.SubElement(root, "capability", {"standardID": standard_id})
        _interface(capability, f"{tap_url}/{path}", "full")
    return to_bytes(
        root,
        {"vosi": VOSI_CAPABILITIES_NS, "xsi": XSI_NS},
        declare={"vr": VR_NS, "vs": VS_NS, "tr": TR_NS},
    )


def published_data_models(catalog: CatalogSnapshot) -> list[tuple[str, str]]:
    """``(ivo-id, name)`` of the data models whose table ``catalog`` publishes."""
    out = []
    for table, ivo_id, name in DATA_MODELS:
        try:
            catalog.table(table)
        except NotFoundError:
            continue
        out.append((ivo_id, name))
    return out


def tap_url(request: Request, settings: ServiceSettings) -> str:
    """The TAP base URL: the ``public_url`` setting, else where this request was sent."""
    base = settings.public_url or str(request.base_url)
    return base.rstrip("/") + "/tap"


def capabilities_endpoint(
    extra_endpoints: Sequence[tuple[str, str]],
) -> Callable[[Request], Awaitable[Response]]:
    """The GET ``/tap/capabilities`` handler declaring ``extra_endpoints`` too."""

    async def endpoint(request: Request) -> Response:
        service: Service = request.app.state.service
        catalog = await anyio.to_thread.run_sync(service.engine.catalog)
        document = capabilities_xml(
            tap_url(request, service.settings),
            service.settings,
            extra_endpoints=extra_endpoints,
            data_models=published_data_models(catalog),
        )
        return Response(document, media_type=XML_MEDIA_TYPE)

    return endpoint
