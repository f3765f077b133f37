"""SODA cutout benchmark: a 200 x 200 cutout from a 4k x 4k image, over HTTP and in-process,
against astropy reading the whole image and cutting it; and 20 concurrent full-CCD cutouts.

    uv run python -m bench.cutout [--size 4096] [--repeats 30] [--concurrent 20]

The image (float32, TAN-SIP, 64 MB for 4096^2) is written into a temporary
data directory and published in a one-row ``ivoa.ObsCore``; the service
runs with uvicorn on 127.0.0.1. The files are in the page cache for every
variant (the first, untimed run of each warms it), so the comparison is of
the work done, not of the disk. Figures are printed, not recorded.

Targets (issue 5): SODA median < 30 ms and >= 10x faster than astropy.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from qcat.geometry import Circle
from services.settings import ServiceSettings
from services.sia.cutout import write_cutout
from tests.service_support import serve_data
from tests.soda_images import PIXEL_DEG, ingest_obscore, wcs_header, write_image


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def _astropy_cut(path: Path, ra: float, dec: float, half: int) -> bytes:
    """What a user without SODA does: read the image, find the pixel, slice, write."""
    with fits.open(path, memmap=False) as hdul:
        data = hdul[0].data
        header = hdul[0].header
        x, y = WCS(header).all_world2pix([[ra, dec]], 0)[0]
        x0, y0 = round(x) - half, round(y) - half
        cut = data[y0 : y0 + 2 * half, x0 : x0 + 2 * half]
        out_header = header.copy()
        out_header["CRPIX1"] -= x0
        out_header["CRPIX2"] -= y0
        buffer = io.BytesIO()
        fits.PrimaryHDU(cut, out_header).writeto(buffer)
        return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    n = args.size
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        header = wcs_header(n, n, 150.0, 2.0, sip=True, rotation_deg=12.0)
        # write_image paints distinct values; float32 keeps the file CCD-sized.
        image = write_image(root / "ccd-r.fits", header, (1500.5, 2200.5))
        with fits.open(image.path) as hdul:
            fits.PrimaryHDU(hdul[0].data.astype(np.float32), hdul[0].header).writeto(
                image.path, overwrite=True
            )
        (stored,) = ingest_obscore(root / "data", [("bench", image, {})])
        ra, dec = image.star_ra, image.star_dec
        radius = 100 * PIXEL_DEG  # a 200 x 200 pixel box
        region = Circle(ra, dec, radius)
        path = root / "data" / "images" / "bench" / "ccd-r.fits"
        print(f"image: {n} x {n} float32, {path.stat().st_size / 1e6:.0f} MB; cutout 200 x 200")

        def pure() -> object:
            return write_cutout(path, region, io.BytesIO())

        pure_ms = _median_ms(pure, args.repeats)
        astropy_ms = _median_ms(lambda: _astropy_cut(path, ra, dec, 100), max(args.repeats // 3, 3))
        with serve_data(root / "data", ServiceSettings.defaults()) as (_, url):
            params = {"ID": stored.did, "CIRCLE": f"{ra} {dec} {radius}"}
            with httpx.Client(timeout=60) as client:

                def http() -> object:
                    r = client.get(f"{url}/soda/sync", params=params)
                    assert r.status_code == 200, r.text
                    return r.content

                http_ms = _median_ms(http, args.repeats)
                size = len(http())
            whole = {"ID": stored.did, "CIRCLE": f"{ra} {dec} 1.0"}

            def full(_: int) -> float:
                with httpx.Client(timeout=120) as c:
                    t0 = time.perf_counter()
                    r = c.get(f"{url}/soda/sync", params=whole)
                    assert r.status_code == 200 and len(r.content) > n * n * 4
                    return time.perf_counter() - t0

            full(0)
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrent) as pool:
                each = list(pool.map(full, range(args.concurrent)))
            wall = time.perf_counter() - t0
        print(f"SODA /soda/sync over HTTP: median {http_ms:7.2f} ms ({size / 1e3:.0f} kB)")
        print(f"pure write_cutout:         median {pure_ms:7.2f} ms")
        print(f"astropy whole read + cut:  median {astropy_ms:7.2f} ms")
        print(f"speed-up HTTP vs astropy:  {astropy_ms / http_ms:5.1f}x")
        print(
            f"{args.concurrent} concurrent full {n}x{n} cutouts: wall {wall:.2f} s, "
            f"median {statistics.median(each):.2f} s, max {max(each):.2f} s, "
            f"{args.concurrent * n * n * 4 / 1e6 / wall:.0f} MB/s"
        )


if __name__ == "__main__":
    main()
