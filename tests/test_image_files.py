"""GET/HEAD /images/{collection}/{file}: type, length, ranges, no escape from DATA/images."""

from __future__ import annotations

import hashlib
import http.client
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from astropy.io import fits

from services.settings import ServiceSettings
from tests.service_support import serve_data
from tests.soda_images import SkyImage, ingest_obscore, wcs_header, write_image


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("files")
    data = root / "data"
    image = write_image(root / "v1-r.fits", wcs_header(100, 100, 10.0, 20.0), (50.0, 50.0))
    ingest_obscore(data, [("demo", image, {})])
    (root / "secret.fits").write_bytes(b"SECRET" * 100)
    os.symlink(root / "secret.fits", data / "images" / "demo" / "evil.fits")
    os.symlink(root, data / "images" / "outside")
    with serve_data(data, ServiceSettings.defaults()) as (_, url):
        yield url, data


def _raw(url: str, path: str, method: str = "GET") -> tuple[int, bytes]:
    """Send ``path`` exactly as written (no client-side normalisation of '..' or %2F)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_whole_file(served) -> None:
    url, data = served
    stored = (data / "images/demo/v1-r.fits").read_bytes()
    r = httpx.get(f"{url}/images/demo/v1-r.fits")
    assert r.status_code == 200 and r.content == stored
    assert r.headers["content-type"] == "image/fits"
    assert int(r.headers["content-length"]) == len(stored)
    assert r.headers["accept-ranges"] == "bytes"
    head = httpx.head(f"{url}/images/demo/v1-r.fits")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(stored)
    # The whole file streams in blocks (turns); the validators are those of HEAD and ranges.
    for name in ("etag", "last-modified"):
        assert r.headers[name] == head.headers[name]


def test_a_file_of_many_blocks_arrives_whole(tmp_path: Path) -> None:
    n = 2000  # 16 MB of pixels, 16 blocks
    header = wcs_header(n, n, 30.0, 10.0)
    path = tmp_path / "big-r.fits"
    text = fits.PrimaryHDU(np.zeros((1, 1), dtype=np.float32), header).header
    text["NAXIS1"], text["NAXIS2"] = n, n
    raw = text.tostring(padding=True).encode("ascii")
    pixels = np.arange(n * n, dtype=">f4").tobytes()
    path.write_bytes(raw + pixels + b"\0" * (-len(pixels) % 2880))
    image = SkyImage(path, 30.0, 10.0, n / 2, n / 2, (n, n))
    ingest_obscore(tmp_path / "data", [("demo", image, {})])
    stored = (tmp_path / "data/images/demo/big-r.fits").read_bytes()
    with serve_data(tmp_path / "data", ServiceSettings.defaults()) as (_, url):
        r = httpx.get(f"{url}/images/demo/big-r.fits", timeout=60)
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(stored)
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(stored).digest()


def test_ranges(served) -> None:
    url, data = served
    stored = (data / "images/demo/v1-r.fits").read_bytes()
    r = httpx.get(f"{url}/images/demo/v1-r.fits", headers={"Range": "bytes=0-79"})
    assert r.status_code == 206 and r.content == stored[:80]
    assert r.content.startswith(b"SIMPLE  =")
    assert r.headers["content-range"] == f"bytes 0-79/{len(stored)}"
    r = httpx.get(f"{url}/images/demo/v1-r.fits", headers={"Range": "bytes=2880-"})
    assert r.status_code == 206 and r.content == stored[2880:]
    r = httpx.get(f"{url}/images/demo/v1-r.fits", headers={"Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == stored[-100:]
    r = httpx.get(f"{url}/images/demo/v1-r.fits", headers={"Range": f"bytes={len(stored) + 10}-"})
    assert r.status_code == 416


def test_unknown_files_are_404(served) -> None:
    url, _ = served
    for path in (
        "/images/demo/nothing.fits",
        "/images/other/v1-r.fits",
        "/images/demo",
        "/images/",
    ):
        assert httpx.get(url + path).status_code == 404, path


@pytest.mark.parametrize(
    "path",
    [
        "/images/demo/../../qcat.sqlite",
        "/images/demo/..%2F..%2Fqcat.sqlite",
        "/images/%2E%2E/qcat.sqlite",
        "/images/demo/%2E%2E%2F%2E%2E%2Fqcat.sqlite",
        "/images/demo/%2Fetc%2Fpasswd",
        "/images//etc/passwd",
        "/images/demo/.hidden",
        "/images/demo/evil.fits",  # a symlink out of DATA/images
        "/images/outside/secret.fits",  # a collection that is a symlink out
        "/images/demo/v1-r.fits%00.txt",
    ],
)
def test_no_escape_from_the_image_directory(served, path: str) -> None:
    url, _ = served
    status, body = _raw(url, path)
    assert status == 404, (path, status)
    assert b"SECRET" not in body and b"SQLite" not in body
