"""Routes under ``/datalink``: the DataLink 1.1 ``{links}`` endpoint of the images.

``GET`` or ``POST /datalink/links?ID=...`` (ID repeatable, RESPONSEFORMAT,
MAXREC) answers with the links of each image (``docs/datalink.md``). IDs are
looked up in ``service.images`` (:class:`services.sia.image_index.ImageIndex`),
not through the query engine, so a links request costs no query.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from services.service import Service
from services.settings import ServiceSettings
from services.sia.datalink_links import ImageInfo, build_links, id_problem
from services.sia.datalink_params import LinksUsageError, read_links_request
from services.sia.datalink_votable import DATALINK_MEDIA_TYPE, links_document
from services.tap.errors import error_message, error_response
from services.urls import absolute_url

logger = logging.getLogger("qcat.service")

LINKS_PATH = "/datalink/links"
SODA_SYNC_PATH = "/soda/sync"


def datalink_mount() -> Mount:
    """``/datalink`` and everything below it."""
    return Mount("/datalink", routes=[Route("/links", links_endpoint, methods=["GET", "POST"])])


async def links_endpoint(request: Request) -> Response:
    """The links of the images named by the request's IDs (a DataLink VOTable)."""
    service: Service = request.app.state.service
    try:
        query = await read_links_request(request)
    except LinksUsageError as e:
        return error_response(str(e), 400)
    limit = max_ids(service.settings)
    wanted = [value for value in query.ids[:limit] if id_problem(value) is None]
    try:
        found = await run_in_threadpool(service.images.lookup, wanted) if wanted else {}
    except Exception as e:  # the image index cannot be read: no link can be made
        logger.error("DataLink lookup failed", exc_info=e)
        return error_response(
            f"FatalFault: the image index cannot be read: {error_message(e)}", 500
        )
    result = build_links(
        query.ids,
        found,
        file_url=lambda image: absolute_url(request, image_path(image)),
        max_ids=limit,
        maxrec=query.maxrec,
    )
    body = links_document(
        result,
        soda_url=absolute_url(request, SODA_SYNC_PATH),
        links_url=absolute_url(request, LINKS_PATH),
    )
    return Response(body, media_type=DATALINK_MEDIA_TYPE)


def image_path(image: ImageInfo) -> str:
    """The path of ``image``'s file on this service: ``/images/COLLECTION/OBS_ID.fits``."""
    return f"/images/{quote(image.collection, safe='')}/{quote(image.obs_id, safe='')}.fits"


def max_ids(settings: ServiceSettings) -> int:
    """The ``datalink_max_ids`` setting: the IDs one request resolves."""
    return settings.datalink_max_ids
