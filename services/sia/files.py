"""``GET/HEAD /images/{collection}/{file}``: the stored image files (DataLink's ``#this``).

Files are served from ``DATA/images`` with ``image/fits``, ``Content-Length``,
``Accept-Ranges: bytes`` and single or multiple HTTP ranges (Starlette's
``FileResponse``); a whole-file GET streams in turns with the other large
answers (``services/turns.py``). A name is served only if it is a plain file name in a
plain collection directory, and the resolved path (symlinks followed) lies
inside ``DATA/images``: ``..``, absolute paths, encoded slashes and symlinks
that lead out are all answered 404, the same as a file that does not exist,
so the answer tells nothing about the rest of the disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from services.service import Service
from services.sia.cutout_pixels import BLOCK_BYTES
from services.sia.image_index import IMAGES_DIR
from services.sia.soda import WholeFile
from services.turns import in_turns

FITS_MEDIA_TYPE = "image/fits"
#: Collection and file names the route serves (no separators, no leading dot).
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+\-]*$")


def image_file(data_dir: Path, collection: str, name: str) -> Path | None:
    """The file ``DATA/images/<collection>/<name>``, or ``None`` when it must not be served."""
    if not (_NAME.match(collection) and _NAME.match(name)):
        return None
    root = (Path(data_dir) / IMAGES_DIR).resolve()
    path = (root / collection / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


async def file_endpoint(request: Request) -> Response:
    """The file, or 404 (plain text: /images is not an IVOA protocol path)."""
    service: Service = request.app.state.service
    collection = request.path_params["collection"]
    name = request.path_params["name"]
    path = image_file(service.data_dir, collection, name)
    if path is None:
        return PlainTextResponse(f"no image file {collection}/{name}", status_code=404)
    media_type = FITS_MEDIA_TYPE if name.lower().endswith((".fits", ".fit")) else None
    media_type = media_type or "application/octet-stream"
    response = _ImageFileResponse(path, media_type=media_type, stat_result=os.stat(path))
    if request.method != "GET" or "range" in request.headers:
        return response  # HEAD and ranges: Starlette's file response
    # The whole file, as large SODA answers are sent: in turns, earliest request first.
    ticket = service.large_answers.ticket()
    return StreamingResponse(
        in_turns(WholeFile(path), service.large_answers, ticket),
        media_type=media_type,
        headers=dict(response.headers),
    )


class _ImageFileResponse(FileResponse):
    # Starlette reads 64 KiB at a time, one thread hop each: a 192 MiB image took
    # 0.71 s alone and 9.2 s for each of 20 users; 1 MiB blocks: 0.10 s and 2.0 s.
    chunk_size = BLOCK_BYTES


async def not_found_endpoint(request: Request) -> Response:
    """Anything else under /images."""
    return PlainTextResponse("no such image file", status_code=404)


def files_mount() -> Mount:
    """``/images`` and everything below it."""
    return Mount(
        "/images",
        routes=[
            Route("/{collection}/{name}", file_endpoint, methods=["GET", "HEAD"]),
            Route("/{path:path}", not_found_endpoint, methods=["GET", "HEAD"]),
        ],
    )
