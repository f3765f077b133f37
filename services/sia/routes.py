"""The image services' mounts: SIA 2.0, SODA 1.0, DataLink 1.1 and the image files."""

from __future__ import annotations

from starlette.routing import BaseRoute

from services.sia.datalink_routes import datalink_mount
from services.sia.files import files_mount
from services.sia.sia_routes import sia_mount
from services.sia.soda_routes import soda_mount


def image_routes() -> list[BaseRoute]:
    """``/sia``, ``/soda``, ``/datalink`` and ``/images``."""
    return [sia_mount(), soda_mount(), datalink_mount(), files_mount()]
