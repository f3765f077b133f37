"""SIA benchmark: image searches over 10,000 ingested images, through HTTP.

Run (builds the images and the data directory the first time):

    uv run python -m bench.sia                       # 10,000 images, median of 31
    uv run python -m bench.sia --count 2000 --repeat 11

The images come from ``bench.image_data small`` (16 x 16 pixel files whose
WCS gives each the footprint of a 4k x 4k CCD, ten dithered visits per
pointing, pointings uniform over the sky), ingested with
``partition.images.ingest_images`` into collection ``bench``. Then ``qcat
serve`` (2 local workers) runs as its own process and each query shape is
sent ``--repeat`` times as GET ``/sia/query`` (what pyvo's ``SIA2Service``
sends) over one keep-alive connection; the time is from sending the request
to the last byte of the answer. Parsing the answer with astropy (as pyvo
does) is timed apart: it is the client's cost, not the service's. The
baseline, in the same run and alternating with it, is the SIA search's own
ADQL prefilter sent to ``/tap/sync`` (same engine, no exact footprint test):
the difference is the cost of the SIA layer. Medians are printed; nothing is
recorded automatically.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import httpx
from astropy.io.votable import parse

from bench.image_data import write_small
from bench.serving import start_qcat_serve
from partition.images import ingest_images
from services.settings import ServiceSettings
from services.sia.sia_adql import sia_adql
from services.sia.sia_params import parse_query


def _prepare(images: Path, data: Path, count: int) -> None:
    if (data / "images" / "bench").is_dir():
        return
    if not images.is_dir() or len(list(images.glob("*.fits"))) < count:
        t0 = time.perf_counter()
        write_small(images, count, seed=1)
        print(f"wrote {count} images in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    result = ingest_images(data, "bench", sorted(images.glob("*.fits"))[:count])
    print(f"ingested {result.rows_added} images in {time.perf_counter() - t0:.0f} s", flush=True)


def _pointing(client: httpx.Client, base: str) -> tuple[float, float, float]:
    """The centre and start time of one ingested image, so the searches hit data."""
    adql = "SELECT TOP 1 s_ra, s_dec, t_min FROM ivoa.ObsCore ORDER BY obs_id"
    response = client.post(f"{base}/tap/sync", data={"QUERY": adql, "RESPONSEFORMAT": "csv"})
    response.raise_for_status()
    ra, dec, t_min = response.text.split()[1].split(",")
    return float(ra), float(dec), float(t_min)


def _shapes(ra: float, dec: float, t_min: float) -> dict[str, list[tuple[str, str]]]:
    d = 0.25
    polygon = f"POLYGON {ra - d} {dec - d} {ra + d} {dec - d} {ra + d} {dec + d} {ra - d} {dec + d}"
    return {
        "circle 0.1 deg": [("POS", f"CIRCLE {ra} {dec} 0.1")],
        "circle 1 deg": [("POS", f"CIRCLE {ra} {dec} 1")],
        "circle 10 deg": [("POS", f"CIRCLE {ra} {dec} 10")],
        "polygon 0.5 deg": [("POS", polygon)],
        "range 2 x 2 deg": [("POS", f"RANGE {ra - 1} {ra + 1} {dec - 1} {dec + 1}")],
        "two circles + band": [
            ("POS", f"CIRCLE {ra} {dec} 0.5"),
            ("POS", f"CIRCLE {(ra + 40) % 360} {-dec} 0.5"),
            ("BAND", "5e-7"),
        ],
        "band + time, no POS": [("BAND", "5e-7"), ("TIME", f"{t_min - 30} {t_min + 30}")],
    }


def _rows(body: bytes) -> int:
    """Rows of a VOTable answer, read with astropy as pyvo does."""
    return len(parse(io.BytesIO(body)).get_first_table().array)


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, default=Path("bench/out/images-small"))
    ap.add_argument("--data", type=Path, default=Path("bench/out/sia-data"))
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=31)
    args = ap.parse_args()
    _prepare(args.images, args.data, args.count)
    proc, base = start_qcat_serve(args.data, args.workers)
    settings = ServiceSettings.defaults()
    try:
        print(f"{base}: {args.workers} workers, median of {args.repeat} runs", flush=True)
        with httpx.Client(timeout=60) as client:
            ra, dec, t_min = _pointing(client, base)
            for label, params in _shapes(ra, dec, t_min).items():
                multi: dict[str, list[str]] = {}
                for name, value in params:
                    multi.setdefault(name, []).append(value)
                adql = sia_adql(parse_query(multi, settings))

                def sia(params: list[tuple[str, str]] = params) -> bytes:
                    response = client.get(f"{base}/sia/query", params=tuple(params))
                    response.raise_for_status()
                    return response.content

                def tap(adql: str = adql) -> bytes:
                    data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql}
                    response = client.post(f"{base}/tap/sync", data=data)
                    response.raise_for_status()
                    return response.content

                rows, candidates = _rows(sia()), _rows(tap())  # also warms caches
                times: dict[str, list[float]] = {"sia": [], "tap": [], "parse": []}
                for _ in range(args.repeat):
                    for name, ask in (("sia", sia), ("tap", tap)):
                        t0 = time.perf_counter()
                        body = ask()
                        times[name].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    _rows(body)
                    times["parse"].append(time.perf_counter() - t0)
                print(
                    f"{label:<22} {rows:>5} images ({candidates:>5} candidates)  "
                    f"SIA {_median_ms(times['sia']):6.1f} ms   TAP prefilter "
                    f"{_median_ms(times['tap']):6.1f} ms   (client parse "
                    f"{_median_ms(times['parse']):5.1f} ms)",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
