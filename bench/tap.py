"""TAP benchmark: the low-volume questions through HTTP, as a pyvo-like client sends them.

It ends with ``bench.query``'s concurrency test through HTTP: 20 clients
asking 5 questions each at once, the 0.1 degree cone, then the four
low-volume questions mixed (time to the last byte, no parse).

Run after ``bench.ingest`` has built a catalog (default: the 10M-object one):

    uv run python -m bench.tap --data bench/out/qcat-data

It starts ``qcat serve`` (2 local workers) as its own process, then times
``--repeat`` synchronous queries per question over one keep-alive HTTP
connection (POST /tap/sync, VOTable BINARY2, what ``pyvo.TAPService.run_sync``
sends), parsing each answer with astropy as pyvo does. The last questions are
the crossmatch TOPCAT writes for an uploaded list (:data:`UPLOAD_CROSSMATCH`,
200 positions in one field, sent inline as multipart, as pyvo does), and the
same list against the detections (:data:`UPLOAD_SOURCE_CROSSMATCH`). The time to the
response's last byte (the service) and the client's parse are printed apart,
and their sum per request. ``bench.query`` times
the same questions through ``QueryEngine`` without HTTP, so the HTTP
layer's share is the difference. Medians are printed; figures are recorded
by hand in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from astropy.io.votable import from_table, parse, writeto
from astropy.table import Table

from bench.query import CONE_CENTRE, LOW_VOLUME
from bench.serving import start_qcat_serve


def _key(client: httpx.Client, url: str) -> int:
    """An objectId in the dense field the cones look at."""
    ra, dec = CONE_CENTRE
    adql = (
        "SELECT TOP 1 objectId FROM demo.Object WHERE "
        f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, 0.01)) = 1"
    )
    response = client.post(f"{url}/sync", data={"QUERY": adql, "RESPONSEFORMAT": "csv"})
    response.raise_for_status()
    return int(response.text.split()[1])


#: TOPCAT's crossmatch of an uploaded list, within 5 arcsec.
UPLOAD_CROSSMATCH = (
    "SELECT u.id, o.objectId, DISTANCE(POINT('ICRS', u.ra, u.dec), "
    "POINT('ICRS', o.coord_ra, o.coord_dec)) AS sep "
    "FROM TAP_UPLOAD.targets AS u JOIN demo.Object AS o "
    "ON 1 = CONTAINS(POINT('ICRS', o.coord_ra, o.coord_dec), "
    "CIRCLE('ICRS', u.ra, u.dec, 5.0 / 3600.0))"
)


#: The same list against the detections' own positions (a child table).
UPLOAD_SOURCE_CROSSMATCH = (
    "SELECT u.id, s.sourceId, DISTANCE(POINT('ICRS', u.ra, u.dec), "
    "POINT('ICRS', s.ra, s.dec)) AS sep "
    "FROM TAP_UPLOAD.targets AS u JOIN demo.Source AS s "
    "ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), "
    "CIRCLE('ICRS', u.ra, u.dec, 5.0 / 3600.0))"
)


def upload_targets(ra: float, dec: float, n: int = 200) -> bytes:
    """A VOTable of ``n`` positions within half a degree of (ra, dec)."""
    rng = np.random.default_rng(1)
    table = Table(
        {
            "id": np.arange(n),
            "ra": np.mod(ra + rng.uniform(-0.5, 0.5, n), 360.0),
            "dec": np.clip(dec + rng.uniform(-0.5, 0.5, n), -90.0, 90.0),
        }
    )
    out = io.BytesIO()
    writeto(from_table(table), out)
    return out.getvalue()


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def concurrent_http(
    url: str, question: Callable[[int, int], str], clients: int = 20
) -> list[float]:
    """Seconds to the last byte of each answer, ``clients`` clients asking 5 questions each,
    all at once, each over its own keep-alive connection (``bench.query``'s concurrency
    test, through HTTP). Client ``i`` asks ``question(i, n)`` as its ``n``-th question."""
    lock = threading.Lock()
    latencies: list[float] = []

    def client(i: int) -> None:
        with httpx.Client(timeout=120) as http:
            for n in range(5):
                data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": question(i, n)}
                t0 = time.perf_counter()
                response = http.post(f"{url}/sync", data=data)
                response.raise_for_status()
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("bench/out/qcat-data"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=21)
    args = ap.parse_args()
    ra, dec = CONE_CENTRE
    # The 20 clients all come from 127.0.0.1: the per-address limit would refuse 16 of them.
    limits = ["tap_client_queries=20", "tap_max_queries=20"]
    proc, base = start_qcat_serve(args.data, args.workers, limits)
    url = base + "/tap"
    try:
        print(f"{url}: {args.workers} workers, median of {args.repeat} runs", flush=True)
        with httpx.Client(timeout=60) as client:
            key = _key(client, url)
            questions = {
                label: template.format(key=key, ra=ra, dec=dec)
                for label, template in LOW_VOLUME.items()
            }
            questions["upload crossmatch, 200 pos"] = UPLOAD_CROSSMATCH
            questions["upload x Source, 200 pos"] = UPLOAD_SOURCE_CROSSMATCH
            targets = upload_targets(ra, dec)
            for label, adql in questions.items():
                data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql, "MAXREC": "100000"}
                files = None
                if adql in (UPLOAD_CROSSMATCH, UPLOAD_SOURCE_CROSSMATCH):
                    data["UPLOAD"] = "targets,param:targets"
                    files = {"targets": ("targets.xml", targets, "application/x-votable+xml")}

                def ask(
                    data: dict[str, str] = data, files: Any = files
                ) -> tuple[int, float, float]:
                    """Rows, seconds to the response's last byte, seconds parsing it."""
                    t0 = time.perf_counter()
                    response = client.post(f"{url}/sync", data=data, files=files)
                    response.raise_for_status()
                    t1 = time.perf_counter()
                    table = parse(io.BytesIO(response.content)).get_first_table()
                    return len(table.array), t1 - t0, time.perf_counter() - t1

                rows = ask()[0]  # warm caches
                served, parsed, total = [], [], []
                for _ in range(args.repeat):
                    _, http, parsing = ask()
                    served.append(http)
                    parsed.append(parsing)
                    total.append(http + parsing)
                print(
                    f"{label:<28} {rows:>6} rows  HTTP median {_median_ms(served):7.1f} ms"
                    f"  astropy parse {_median_ms(parsed):6.1f} ms"
                    f"  both {_median_ms(total):7.1f} ms",
                    flush=True,
                )
            # As bench.query: client i asks about its own object, or a cone 0.05 deg further.
            keys = [key + i for i in range(20)]  # neighbouring ids; absent ones answer empty
            cone, lookup = LOW_VOLUME["cone 0.1 deg"], list(LOW_VOLUME.values())

            def cones(i: int, n: int) -> str:
                return cone.format(key=keys[i], ra=ra + 0.05 * i, dec=dec)

            def mixed(i: int, n: int) -> str:
                return lookup[(i + n) % 4].format(key=keys[i], ra=ra + 0.05 * i, dec=dec)

            for label, question in (
                ("20 concurrent 0.1 deg cones", cones),
                ("20 concurrent mixed", mixed),
            ):
                concurrent_http(url, question)  # warm the connections' first requests
                median = _median_ms(concurrent_http(url, question))
                print(f"{label:<28} (100 queries)  HTTP median {median:7.1f} ms", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
