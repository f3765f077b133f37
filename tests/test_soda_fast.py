"""The fast cutout path: small reads, cached layouts, direct FITS writing, streaming."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from qcat.geometry import Circle
from services.settings import ServiceSettings
from services.sia import cutout_pixels, soda_routes
from services.sia.cutout import open_cutout, write_cutout
from services.sia.cutout_box import ImageGeometry, PixelBox
from services.sia.cutout_layout import LAYOUTS, cached_layout
from services.sia.soda_errors import NoOverlap
from tests.service_support import serve_data
from tests.soda_images import (
    PIXEL_DEG,
    SkyImage,
    ingest_obscore,
    pixels,
    wcs_header,
    write_image,
)

PAGE = 4096


def _sparse_image(path: Path, n: int, header: fits.Header) -> None:
    """An ``n`` x ``n`` float32 image of zeros, written as a header and a hole (no disk)."""
    hdu = fits.PrimaryHDU(np.zeros((1, 1), dtype=np.float32), header)
    hdu.header["NAXIS1"] = n
    hdu.header["NAXIS2"] = n
    text = hdu.header.tostring(padding=True).encode("ascii")
    data = n * n * 4
    with path.open("wb") as f:
        f.write(text)
        f.truncate(len(text) + data + (-data % 2880))


def test_a_200_pixel_cutout_reads_a_small_fraction_of_a_4k_image(tmp_path, monkeypatch) -> None:
    n = 4096
    header = wcs_header(n, n, 40.0, -20.0, rotation_deg=25.0)
    path = tmp_path / "ccd.fits"
    _sparse_image(path, n, header)
    size = path.stat().st_size
    mapped: list[tuple[int, int, int]] = []
    real_map_rows = cutout_pixels.map_rows

    def spy_map_rows(layout, hdu, first, last, full, strides):
        rows = real_map_rows(layout, hdu, first, last, full, strides)
        mapped.append((first, last, rows.nbytes))
        return rows

    def no_whole_rows(*args, **kwargs):
        raise AssertionError("a narrow box is not read as whole rows")

    monkeypatch.setattr(cutout_pixels, "map_rows", spy_map_rows)
    monkeypatch.setattr(cutout_pixels, "mapped_blocks", no_whole_rows)
    ra, dec = WCS(header).all_pix2world([[1700.0, 2300.0]], 0)[0]
    stream = open_cutout(path, Circle(ra, dec, 100 * PIXEL_DEG))
    (cut,) = stream.plan.cuts
    box = cut.box
    assert 199 <= box.width <= 203 and 199 <= box.height <= 203
    body = stream.read()
    assert len(body) == stream.size
    # Only the box's rows were mapped; copying the box's columns touches a page or two a row.
    assert mapped == [(box.y0, box.y1 + 1, box.height * n * 4)]
    assert mapped[0][2] < 0.05 * size
    touched = 0
    data_offset = cached_layout(path).hdus[0].data_offset
    for row in range(box.y0, box.y1 + 1):
        start = data_offset + (row * n + box.x0) * 4
        end = start + box.width * 4
        touched += (end - 1) // PAGE - start // PAGE + 1
    assert touched * PAGE < 0.02 * size, (touched, size)
    with fits.open(io.BytesIO(body)) as out:
        assert out[0].data.shape == (box.height, box.width)
        assert out[0].header["LTV1"] == -box.x0 and out[0].header["LTV2"] == -box.y0


def test_layouts_are_cached_and_a_replaced_file_is_read_again(tmp_path) -> None:
    first = write_image(tmp_path / "a.fits", wcs_header(100, 100, 10.0, 10.0), (50.0, 50.0))
    elsewhere = write_image(tmp_path / "b.fits", wcs_header(100, 100, 11.0, 10.0), (50.0, 50.0))
    path = tmp_path / "image.fits"
    shutil.copyfile(first.path, path)
    region = Circle(first.star_ra, first.star_dec, 5 * PIXEL_DEG)
    reads = LAYOUTS.reads
    assert fits.getdata(io.BytesIO(_cut(path, region))).shape == (11, 11)
    assert cached_layout(path) is cached_layout(path)
    _cut(path, region)
    assert LAYOUTS.reads == reads + 1  # parsed once, then served from the cache
    # The same name now holds another image (same size, same mtime): its own headers count.
    stat = path.stat()
    replacement = tmp_path / "image.fits.new"
    shutil.copyfile(elsewhere.path, replacement)
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(NoOverlap):
        _cut(path, region)
    assert LAYOUTS.reads == reads + 2
    moved = Circle(elsewhere.star_ra, elsewhere.star_dec, 5 * PIXEL_DEG)
    with fits.open(io.BytesIO(_cut(path, moved))) as cut:
        assert cut[0].header["CRVAL1"] == 11.0
    # A new path is a new entry; the first file is still what it was.
    other = tmp_path / "copy.fits"
    shutil.copyfile(first.path, other)
    with fits.open(io.BytesIO(_cut(other, region))) as cut:
        assert cut[0].header["CRVAL1"] == 10.0
    assert LAYOUTS.reads == reads + 3


def _cut(path: Path, region: Circle) -> bytes:
    buffer = io.BytesIO()
    write_cutout(path, region, buffer)
    return buffer.getvalue()


def _astropy_cutout(path: Path, boxes: dict[int, tuple[PixelBox, int, int]]) -> bytes:
    """The cutout written the way astropy writes HDUs (the reference for the direct writer)."""
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        out: list[fits.PrimaryHDU | fits.ImageHDU] = []
        if 0 not in boxes:
            header = hdul[0].header.copy()
            header.remove("CHECKSUM", ignore_missing=True)
            header.remove("DATASUM", ignore_missing=True)
            for i in range(1, int(header.get("NAXIS", 0)) + 1):
                header.remove(f"NAXIS{i}", ignore_missing=True)
            header["NAXIS"] = 0
            out.append(fits.PrimaryHDU(header=header))
        for index, (box, x_axis, y_axis) in sorted(boxes.items()):
            hdu = hdul[index]
            naxis = hdu.header["NAXIS"]
            slices = [slice(None)] * naxis
            slices[naxis - x_axis] = slice(box.x0, box.x1 + 1)
            slices[naxis - y_axis] = slice(box.y0, box.y1 + 1)
            header = hdu.header.copy()
            offsets = {x_axis: box.x0, y_axis: box.y0}
            for key in list(header.keys()):
                match = re.fullmatch(r"CRPIX(\d+)[A-Z]?", key)
                if match and int(match.group(1)) in offsets:
                    header[key] = float(header[key]) - offsets[int(match.group(1))]
            for axis, offset in offsets.items():
                ltv = float(hdu.header.get(f"LTV{axis}", 0.0)) - offset
                header[f"LTV{axis}"] = (ltv, "original pixel = this pixel - LTV")
            header.remove("CHECKSUM", ignore_missing=True)
            header.remove("DATASUM", ignore_missing=True)
            kind = fits.PrimaryHDU if index == 0 else fits.ImageHDU
            data = np.ascontiguousarray(hdu.data[tuple(slices)])
            made = kind(data=data, header=header, do_not_scale_image_data=True)
            for key in ("BSCALE", "BZERO", "BLANK"):
                if key in hdu.header:
                    made.header[key] = hdu.header[key]
            out.append(made)
        buffer = io.BytesIO()
        fits.HDUList(out).writeto(buffer, output_verify="silentfix")
        return buffer.getvalue()


def _unsigned_mef(path: Path) -> Circle:
    """Scaled integers with checksums, an alternate WCS and LTV already set, and a float plane."""
    header = wcs_header(300, 300, 10.0, 10.0)
    header["LTV1"] = 5.0
    header["CTYPE1A"], header["CTYPE2A"] = "LINEAR", "LINEAR"
    header["CRPIX1A"], header["CRPIX2A"] = 3.0, 7.0
    data = (pixels(300, 300, None) % 60000).astype(np.uint16)
    primary = fits.PrimaryHDU(data, header)
    primary.add_checksum()
    plane = fits.ImageHDU(data.astype(np.float32), header, name="FLOAT")
    fits.HDUList([primary, plane]).writeto(path)
    ra, dec = WCS(header).all_pix2world([[150.0, 150.0]], 0)[0]
    return Circle(ra, dec, 12 * PIXEL_DEG)


def _cube(path: Path) -> Circle:
    header = wcs_header(120, 120, 10.0, 10.0, rotation_deg=30.0)
    header["CTYPE3"], header["CRVAL3"], header["CDELT3"], header["CRPIX3"] = "WAVE", 5e-7, 1e-9, 1.0
    fits.PrimaryHDU(np.arange(3 * 120 * 120, dtype=">f4").reshape(3, 120, 120), header).writeto(
        path
    )
    ra, dec = WCS(header, naxis=2).all_pix2world([[40.0, 70.0]], 0)[0]
    return Circle(ra, dec, 9 * PIXEL_DEG)


def _mef(path: Path) -> Circle:
    image = write_image(path, wcs_header(200, 200, 80.0, -30.0, sip=True), (30.0, 170.0), mef=True)
    return Circle(image.star_ra, image.star_dec, 25 * PIXEL_DEG)  # clipped at two edges


@pytest.mark.parametrize("make", [_unsigned_mef, _cube, _mef])
def test_direct_writer_gives_astropys_bytes(tmp_path, make) -> None:
    path = tmp_path / "image.fits"
    region = make(path)
    stream = open_cutout(path, region)
    boxes = {c.index: (c.box, c.x_axis, c.y_axis) for c in stream.plan.cuts}
    body = stream.read()
    assert body == _astropy_cutout(path, boxes)
    assert len(body) == stream.size and len(body) % 2880 == 0


def test_whole_image_streams_in_blocks(tmp_path) -> None:
    image = write_image(tmp_path / "big.fits", wcs_header(300, 300, 10.0, 10.0), (5.0, 5.0))
    stream = open_cutout(image.path, Circle(image.star_ra, image.star_dec, 1.0))
    chunks = list(stream.chunks(block_bytes=100_000))
    assert max(len(c) for c in chunks) <= 100_000 and len(chunks) > 5
    body = b"".join(chunks)
    assert len(body) == stream.size
    with fits.open(io.BytesIO(body)) as cut:
        np.testing.assert_array_equal(cut[0].data, fits.getdata(image.path))


def test_tile_compressed_image_is_cut_like_the_plain_one(tmp_path) -> None:
    header = wcs_header(150, 150, 10.0, 10.0)
    data = pixels(150, 150, (60.0, 80.0)).astype(np.float32)
    plain, packed = tmp_path / "plain.fits", tmp_path / "packed.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header, name="SCI")]).writeto(plain)
    compressed = fits.CompImageHDU(data, header, name="SCI", compression_type="GZIP_1")
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(packed)
    ra, dec = WCS(header).all_pix2world([[60.0, 80.0]], 0)[0]
    region = Circle(ra, dec, 10 * PIXEL_DEG)
    with (
        fits.open(io.BytesIO(_cut(plain, region))) as a,
        fits.open(io.BytesIO(_cut(packed, region))) as b,
    ):
        np.testing.assert_array_equal(a["SCI"].data, b["SCI"].data)
        assert a["SCI"].header["LTV1"] == b["SCI"].header["LTV1"]


@pytest.mark.parametrize(
    ("ra", "dec", "rotation", "radius_px"),
    [(30.0, -40.0, 17.0, 60), (0.01, -5.0, 8.0, 35), (45.0, 89.99, 40.0, 80), (150.0, 2.0, 0.0, 7)],
)
def test_coarse_first_box_equals_mapping_every_sample(ra, dec, rotation, radius_px) -> None:
    header = wcs_header(400, 300, ra, dec, sip=True, rotation_deg=rotation)
    header["A_ORDER"] = header["B_ORDER"] = 3
    header["A_3_0"], header["B_0_3"] = 4e-8, -3e-8  # a stronger distortion
    wcs = WCS(header)
    shortcut, every = ImageGeometry(wcs, 400, 300), ImageGeometry(wcs, 400, 300)
    assert shortcut.coarse_first
    every.coarse_first = False  # maps every sample, as before the shortcut
    mapped = {"shortcut": 0, "every": 0}
    for name, geometry in (("shortcut", shortcut), ("every", every)):
        real = geometry._on_image

        def counting(points, _real=real, _name=name):
            mapped[_name] += len(points)
            return _real(points)

        geometry._on_image = counting
    rng = np.random.default_rng(3)
    boxes = 0
    for x, y in rng.uniform([-60, -60], [460, 360], size=(16, 2)):
        cra, cdec = wcs.all_pix2world([[x, y]], 0)[0]
        region = Circle(cra, cdec, radius_px * PIXEL_DEG)
        box = shortcut.box(region)
        assert box == every.box(region), (x, y)
        boxes += box is not None
    assert boxes >= 8
    # Fine samples exist (and can be skipped) when the boundary is longer than 256 half pixels.
    if radius_px >= 30:
        assert mapped["shortcut"] < 0.9 * mapped["every"]
    else:
        assert mapped["shortcut"] == mapped["every"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("soda-fast")
    image = write_image(root / "wide.fits", wcs_header(600, 500, 20.0, 5.0), (300.0, 250.0))
    (stored,) = ingest_obscore(root / "data", [("demo", image, {})])
    with serve_data(root / "data", ServiceSettings.defaults()) as (_, url):
        yield url, stored


def test_large_cutouts_stream_over_http(served, monkeypatch) -> None:
    url, stored = served
    monkeypatch.setattr(soda_routes, "INLINE_BYTES", 10_000)  # every answer streams
    params = {"ID": stored.did, "CIRCLE": f"{stored.image.star_ra} {stored.image.star_dec} 1.0"}
    with httpx.stream("GET", f"{url}/soda/sync", params=params) as r:
        assert r.status_code == 200
        body = r.read()
    assert int(r.headers["content-length"]) == len(body)
    with fits.open(io.BytesIO(body)) as cut:
        np.testing.assert_array_equal(cut[0].data, fits.getdata(stored.image.path))
    head = httpx.head(f"{url}/soda/sync", params=params)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(body))
    # A small cutout is produced at once, with the same headers.
    small = dict(params, CIRCLE=f"{stored.image.star_ra} {stored.image.star_dec} {5 * PIXEL_DEG}")
    monkeypatch.setattr(soda_routes, "INLINE_BYTES", 4 << 20)
    r = httpx.get(f"{url}/soda/sync", params=small)
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    assert fits.getdata(io.BytesIO(r.content)).shape == (11, 11)


def test_a_client_that_stops_reading_does_not_hold_up_other_large_cutouts(tmp_path) -> None:
    """Large answers take turns (one at a time here); a turn stuck on a client that
    does not read is given up after ``large_answer_patience_s``, so others go on."""
    n = 3000  # 36 MB of pixels: more than the socket buffers between the two ends hold
    header = wcs_header(n, n, 40.0, -20.0)
    path = tmp_path / "big.fits"
    _sparse_image(path, n, header)
    image = SkyImage(path, 40.0, -20.0, n / 2, n / 2, (n, n))
    (stored,) = ingest_obscore(tmp_path / "data", [("demo", image, {})])
    settings = ServiceSettings.defaults(large_answer_turns=1)
    query = f"ID={quote(stored.did)}&CIRCLE=40%20-20%201.0"
    with serve_data(tmp_path / "data", settings) as (_, url):
        host, port = url.removeprefix("http://").split("/")[0].split(":")
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect((host, int(port)))
            stalled.sendall(f"GET /soda/sync?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert stalled.recv(12).startswith(b"HTTP/1.1 200")  # then it reads no more
            time.sleep(0.5)  # the server fills the socket buffers and waits, in its turn
            r = httpx.get(f"{url}/soda/sync?{query}", timeout=60)
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(r.content) > 32_000_000
    with fits.open(io.BytesIO(r.content)) as cut:
        assert cut[0].data.shape == (n, n) and not cut[0].data.any()


def test_whole_rows_are_sent_as_views_on_the_files_mapping(tmp_path) -> None:
    """A box of whole image rows is no copy: each block is a view on the cached mapping,
    and the bytes are the file's own."""
    n = 256
    header = wcs_header(n, n, 40.0, -20.0)
    image = write_image(tmp_path / "rows.fits", header, (128.0, 128.0))
    # A circle wider than the image: every row, whole.
    stream = open_cutout(image.path, Circle(image.star_ra, image.star_dec, 2 * n * PIXEL_DEG))
    blocks = list(stream.chunks(block_bytes=64 * 1024))
    views = [b for b in blocks if isinstance(b, memoryview)]
    assert all(v.obj is cached_layout(image.path).mapping for v in views)
    with fits.open(image.path) as original, fits.open(io.BytesIO(b"".join(blocks))) as out:
        assert views and sum(len(v) for v in views) == original[0].data.nbytes
        np.testing.assert_array_equal(out[0].data, original[0].data)


def test_a_whole_file_is_its_mapping_in_blocks(tmp_path) -> None:
    from services.sia.soda import WholeFile

    data = np.random.default_rng(1).bytes(300_000)
    path = tmp_path / "f.fits"
    path.write_bytes(data)
    answer = WholeFile(path)
    blocks = list(answer.chunks(block_bytes=65_536))
    assert answer.size == len(data) and [len(b) for b in blocks][:2] == [65_536, 65_536]
    assert all(isinstance(b, memoryview) for b in blocks) and b"".join(blocks) == data
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    assert WholeFile(empty).size == 0 and list(WholeFile(empty).chunks()) == []


def test_a_file_cut_short_while_streaming_is_an_error_not_a_crash(tmp_path) -> None:
    """Reading a mapped page past the end of its file would kill the service (SIGBUS):
    each block first checks that the file still holds it."""
    from services.sia.soda import WholeFile

    n = 256
    image = write_image(tmp_path / "cut.fits", wcs_header(n, n, 40.0, -20.0), (128.0, 128.0))
    size = image.path.stat().st_size
    whole_rows = open_cutout(image.path, Circle(image.star_ra, image.star_dec, 2 * n * PIXEL_DEG))
    narrow = open_cutout(image.path, Circle(image.star_ra, image.star_dec, 20 * PIXEL_DEG))
    whole_file = WholeFile(image.path)
    streams = [s.chunks(block_bytes=16_384) for s in (whole_rows, narrow, whole_file)]
    for stream in streams:
        next(stream)  # started: the file is mapped
    os.truncate(image.path, size // 2)
    for stream in streams:
        with pytest.raises(OSError, match="cut short"):
            for _ in stream:
                pass
