"""The parameters of a DALI request: the URL's and, for a POST, the form body's.

Every IVOA service here (TAP, SIA, SODA, DataLink) reads its parameters the
same way (DALI: a POST may be urlencoded or multipart, parameters in the URL
of a POST count too); only the limits and the error each protocol raises
differ.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

Pairs = list[tuple[str, str]]
#: Called with each file part of a multipart body (name, open file) before the form closes.
FileHandler = Callable[[str, UploadFile], Awaitable[None]]


async def request_pairs(
    request: Request,
    *,
    max_fields: int,
    max_files: int,
    max_part_bytes: int,
    error: Callable[[str], Exception],
    on_file: FileHandler | None = None,
) -> Pairs:
    """Every (name, value) of the URL and, for a POST, of the form body, in order.

    A body the form parser refuses (malformed, more than ``max_fields`` fields or
    ``max_files`` file parts, a part over ``max_part_bytes``) raises ``error(message)``.
    File parts are not values: they go to ``on_file``, or are skipped without it.
    """
    pairs: Pairs = list(request.query_params.multi_items())
    if request.method != "POST":
        return pairs
    try:
        form = await request.form(
            max_files=max_files,
            max_fields=max_fields,
            max_part_size=max_part_bytes,
        )
    except ClientDisconnect:
        raise
    except Exception as e:  # malformed bodies raise parser-specific errors
        raise error(f"cannot read the request body: {e}") from None
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if on_file is not None:
                    await on_file(name, value)
            else:
                pairs.append((name, value))
    finally:
        await form.close()
    return pairs
