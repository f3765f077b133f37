"""``/tap/availability``: the VOSI 1.1 availability document."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import anyio
from starlette.requests import Request
from starlette.responses import Response

from services.service import Service, WorkerHealth
from services.tap.xml import XML_MEDIA_TYPE, to_bytes

VOSI_AVAILABILITY_NS = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"


def availability_xml(health: list[WorkerHealth], up_since: str) -> bytes:
    """The document: available when every worker answers; a note says how many do."""
    alive = sum(h.alive for h in health)
    ns = VOSI_AVAILABILITY_NS
    root = ET.Element(f"{{{ns}}}availability")
    ET.SubElement(root, f"{{{ns}}}available").text = "true" if alive == len(health) else "false"
    ET.SubElement(root, f"{{{ns}}}upSince").text = up_since
    note = f"{alive} of {len(health)} query workers answer"
    down = [h.location for h in health if not h.alive]
    if down:
        note += f"; not answering: {', '.join(down)}"
    ET.SubElement(root, f"{{{ns}}}note").text = note
    return to_bytes(root, {"vosi": ns}, declare={})


async def availability_endpoint(request: Request) -> Response:
    """GET ``/tap/availability``."""
    service: Service = request.app.state.service
    health = await anyio.to_thread.run_sync(service.worker_health)
    up_since = service.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Response(availability_xml(health, up_since), media_type=XML_MEDIA_TYPE)
