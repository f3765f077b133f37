"""SODA cutout benchmark on a realistic survey image, against astropy reading the whole image.

    uv run python -m bench.cutout [--image PATH] [--repeats 30] [--concurrent 20]

The image is ``bench/image_data.py large``: a 4096 x 4096 multi-extension file
(float32 image and variance, int32 mask, TAN-SIP WCS in each, 192 MiB) with
stars. It is generated into a temporary directory, or taken from ``--image``
(a file written by ``python -m bench.image_data large``, with its
``-stars.parquet`` beside it), then ingested with ``ingest_images`` into a
temporary data directory served by uvicorn on 127.0.0.1.

Timed side by side, medians of ``--repeats`` (each variant once untimed
first, so every file is in the page cache and the comparison is of the work
done, not of the disk), each cutout a 200 x 200 pixel circle around a star:

* ``astropy``: what a user without SODA does: open the file, read every
  extension the cutout returns, find the box with the WCS, cut, shift CRPIX,
  write the FITS file;
* ``pure``: :func:`services.sia.cutout.write_cutout` into memory;
* ``http``: ``/soda/sync`` over HTTP (httpx, one connection).

Then the whole CCD (a 192 MiB answer) is asked alone, and by ``--concurrent``
users at the same time, each a ``curl`` process writing to /dev/null (so the
clients do not share the server's interpreter): per-request median and wall
time, and the latency of small cutouts another user asks meanwhile (one
every 50 ms).

The same users then fetch the image file itself from a bare HTTP server
that hands it to the kernel with ``os.sendfile`` (no FITS work, no Python
between the page cache and the socket): once all at once, and once one at a
time in order of arrival (the best median any order of service can give).
That is the floor of this machine for moving these bytes to these clients.

Targets (issue 5): SODA median < 30 ms and >= 10x faster than astropy.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.server
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from bench.image_data import CCD_PIXELS, CCD_SCALE_ARCSEC, write_large
from partition.images.ingest import ingest_images
from qcat.geometry import Circle
from services.settings import ServiceSettings
from services.sia.cutout import write_cutout
from tests.service_support import serve_data

HALF = 100  # pixels: a 200 x 200 cutout
HDUS = ("IMAGE", "VARIANCE", "MASK")


def _median_ms(run: Callable[[int], object], repeats: int) -> float:
    run(0)  # warm caches
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        run(i)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def astropy_cut(path: Path, ra: float, dec: float, radius_deg: float) -> bytes:
    """What a user without SODA does: read the whole file, find the box, cut, write."""
    with fits.open(path, memmap=False) as hdul:
        out: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU(header=hdul[0].header)]
        for name in HDUS:
            hdu = hdul[name]
            data = hdu.data  # the whole plane
            wcs = WCS(hdu.header)
            x, y = wcs.all_world2pix([[ra, dec]], 0)[0]
            half = radius_deg / float(np.min(proj_plane_pixel_scales(wcs)))
            ny, nx = data.shape
            x0, x1 = max(round(x - half), 0), min(round(x + half), nx - 1)
            y0, y1 = max(round(y - half), 0), min(round(y + half), ny - 1)
            header = hdu.header.copy()
            header["CRPIX1"] -= x0
            header["CRPIX2"] -= y0
            out.append(fits.ImageHDU(data[y0 : y1 + 1, x0 : x1 + 1], header))
        buffer = io.BytesIO()
        fits.HDUList(out).writeto(buffer)
        return buffer.getvalue()


def _image(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    """The large image and its star list: given, or generated into ``tmp``."""
    if args.image is not None:
        path = Path(args.image)
        return path, path.with_name(path.name.removesuffix(".fits") + "-stars.parquet")
    path = write_large(tmp / "large", CCD_PIXELS, 20_000, 1)
    return path, path.with_name(path.name.removesuffix(".fits") + "-stars.parquet")


def _targets(stars_path: Path, n: int, count: int) -> list[tuple[float, float]]:
    """``count`` stars at least a cutout's half-width from the edges (fixed choice)."""
    stars = pq.read_table(stars_path).to_pandas()
    ok = stars[
        (stars.x > HALF + 2)
        & (stars.x < n - HALF - 3)
        & (stars.y > HALF + 2)
        & (stars.y < n - HALF - 3)
    ]
    chosen = ok.sample(n=count, random_state=1)
    return list(zip(chosen.ra.astype(float), chosen.dec.astype(float), strict=True))


def _curl(url: str) -> float:
    done = subprocess.run(
        ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code} %{time_total}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    code, seconds = done.stdout.split()
    assert code == "200", done.stdout
    return float(seconds)


class _InOrder:
    """A lock granted in order of arrival (tickets), one holder at a time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._cond:
            mine = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._serving == mine)
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


@contextlib.contextmanager
def _sendfile_server(path: Path, in_order: bool) -> Iterator[str]:
    """A bare HTTP server answering every GET with ``path``'s bytes via ``os.sendfile``."""
    size = path.stat().st_size
    order = _InOrder() if in_order else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with order.turn() if order else contextlib.nullcontext():
                self.send_response(200)
                self.send_header("Content-Type", "application/fits")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.flush()
                with path.open("rb") as f:
                    sent = 0
                    while sent < size:
                        sent += os.sendfile(self.connection.fileno(), f.fileno(), sent, size - sent)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _all_at_once(url: str, users: int) -> tuple[list[float], float]:
    """Per-request seconds and wall time of ``users`` curl clients fetching ``url`` at once."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(users) as pool:
        each = list(pool.map(_curl, [url] * users))
    return each, time.perf_counter() - t0


#: How often the interactive user asks a small cutout during the concurrency run.
SMALL_EVERY_S = 0.05


def _small_while(url: str, running: list[concurrent.futures.Future[float]]) -> list[float]:
    """Latencies (ms) of small cutouts asked every :data:`SMALL_EVERY_S` while ``running`` run.

    The pace is fixed: a user asking again the moment an answer arrives takes
    whatever CPU the large answers leave, so the large answers' times would
    depend on how fast the small ones are served.
    """
    times = []
    with httpx.Client(timeout=60) as client:
        next_at = time.perf_counter()
        while not all(f.done() for f in running):
            time.sleep(max(0.0, next_at - time.perf_counter()))
            t0 = time.perf_counter()
            next_at = t0 + SMALL_EVERY_S
            r = client.get(url)
            assert r.status_code == 200, r.text
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, help="a `bench.image_data large` file to reuse")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source, stars = _image(args, tmp)
        with fits.open(source) as hdul:
            n = int(hdul["IMAGE"].header["NAXIS1"])
        result = ingest_images(tmp / "data", "bench", [source])
        (did,) = result.added
        path = tmp / "data" / "images" / "bench" / source.name
        radius = HALF * CCD_SCALE_ARCSEC / 3600.0
        targets = _targets(stars, n, max(args.repeats, 1))
        print(
            f"image: {n} x {n} MEF (image, variance, mask), {path.stat().st_size / 2**20:.0f} MiB;"
            f" cutout: circle of {HALF} px radius around a star; load {os.getloadavg()[0]:.2f}"
        )

        def pure(i: int) -> object:
            ra, dec = targets[i % len(targets)]
            return write_cutout(path, Circle(ra, dec, radius), io.BytesIO())

        def baseline(i: int) -> object:
            ra, dec = targets[i % len(targets)]
            return astropy_cut(path, ra, dec, radius)

        with serve_data(tmp / "data", ServiceSettings.defaults()) as (_, url):
            with httpx.Client(timeout=60) as client:

                def http(i: int) -> bytes:
                    ra, dec = targets[i % len(targets)]
                    params = {"ID": did, "CIRCLE": f"{ra} {dec} {radius}"}
                    r = client.get(f"{url}/soda/sync", params=params)
                    assert r.status_code == 200, r.text
                    return r.content

                size = len(http(0))
                astropy_ms = _median_ms(baseline, args.repeats)
                pure_ms = _median_ms(pure, args.repeats)
                http_ms = _median_ms(http, args.repeats)
            ra, dec = targets[0]
            query = urllib.parse.urlencode({"ID": did, "CIRCLE": f"{ra} {dec} 1.0"})
            whole = f"{url}/soda/sync?{query}"
            if shutil.which("curl") is None:
                raise SystemExit("curl is needed for the concurrency run")
            _curl(whole)
            alone = statistics.median(_curl(whole) for _ in range(3))
            small_url = f"{url}/soda/sync?" + urllib.parse.urlencode(
                {"ID": did, "CIRCLE": f"{ra} {dec} {radius}"}
            )
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrent + 1) as pool:
                running = [pool.submit(_curl, whole) for _ in range(args.concurrent)]
                # Meanwhile, one more user asks small cutouts: are they still served at once?
                small = pool.submit(_small_while, small_url, running)
                each = [f.result() for f in running]
                wall = time.perf_counter() - t0
                small_ms = small.result()
        floors = {}
        for in_order in (False, True):
            with _sendfile_server(path, in_order) as file_url:
                _curl(file_url)
                floors[in_order] = _all_at_once(file_url, args.concurrent)
    full_mb = len(HDUS) * n * n * 4 / 2**20
    print(f"astropy whole read + cut:  median {astropy_ms:7.2f} ms")
    print(f"pure write_cutout:         median {pure_ms:7.2f} ms ({astropy_ms / pure_ms:5.1f}x)")
    print(
        f"SODA /soda/sync over HTTP: median {http_ms:7.2f} ms ({astropy_ms / http_ms:5.1f}x; "
        f"{size / 1e3:.0f} kB)"
    )
    print(f"one full {n}x{n} cutout alone ({full_mb:.0f} MiB): {alone:.2f} s")
    print(
        f"{args.concurrent} concurrent full {n}x{n} cutouts ({full_mb:.0f} MiB each): "
        f"wall {wall:.2f} s, per request median {statistics.median(each):.2f} s, "
        f"max {max(each):.2f} s, {args.concurrent * full_mb / wall:.0f} MiB/s"
    )
    if small_ms:
        print(
            f"  meanwhile {len(small_ms)} 200 x 200 cutouts: median "
            f"{statistics.median(small_ms):.1f} ms, max {max(small_ms):.1f} ms"
        )
    for in_order, (times, seconds) in floors.items():
        how = "one at a time, in order" if in_order else "all at once"
        print(
            f"floor: the file by os.sendfile to {args.concurrent} users, {how}: wall "
            f"{seconds:.2f} s, per request median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s"
        )


if __name__ == "__main__":
    main()
