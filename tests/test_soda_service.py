"""/soda/sync and /soda/async over HTTP, with pyvo and httpx; ImageIndex over ivoa.ObsCore."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from pyvo.dal.adhoc import SodaQuery

from services.settings import ServiceSettings
from services.sia.image_index import ImageIndex
from tests.service_support import dali_error, serve_data
from tests.soda_images import PIXEL_DEG, Stored, ingest_obscore, wcs_header, write_image

N = 200


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Stored], Path]]:
    root = tmp_path_factory.mktemp("soda")
    data = root / "data"
    plain = write_image(root / "v1-r.fits", wcs_header(N, N, 10.0, 20.0, sip=True), (60.2, 140.7))
    mef = write_image(
        root / "v2-g.fits", wcs_header(N, N, 10.0, 20.0, rotation_deg=40.0), (120.0, 90.0), mef=True
    )
    stored = ingest_obscore(data, [("demo", plain, {}), ("demo", mef, {"pol_states": "/I/Q/"})])
    with serve_data(data, ServiceSettings.defaults()) as (_, url):
        yield url, stored, data


def _circle(s: Stored, radius_px: float = 20.0) -> str:
    return f"{s.image.star_ra} {s.image.star_dec} {radius_px * PIXEL_DEG}"


def _star_in(hdu: fits.ImageHDU, s: Stored) -> None:
    peak_y, peak_x = np.unravel_index(np.argmax(hdu.data), hdu.data.shape)
    sx, sy = WCS(hdu.header).all_world2pix([[s.image.star_ra, s.image.star_dec]], 0)[0]
    assert abs(peak_x - sx) <= 1.0 and abs(peak_y - sy) <= 1.0


def test_image_index_reads_the_current_obscore(served) -> None:
    _, stored, data = served
    index = ImageIndex(data)
    try:
        found = index.lookup([stored[0].did, "ivo://qcat/demo?nothing", stored[1].did])
        assert set(found) == {stored[0].did, stored[1].did}
        record = found[stored[1].did]
        assert record.path == (data / "images" / "demo" / "v2-g.fits").resolve()
        assert record.collection == "demo" and record.obs_id == "v2-g"
        # FILTER = 'r': the LSST r band of docs/images.md; pol_states as published
        assert record.pol_states == "/I/Q/" and record.em_min == pytest.approx(5.52e-7)
        assert (record.t_min, record.t_max) == (stored[1].t_min, stored[1].t_max)
        assert index.version() is not None
    finally:
        index.close()


def test_sync_get_cutout(served) -> None:
    url, stored, _ = served
    s = stored[0]
    r = httpx.get(f"{url}/soda/sync", params={"ID": s.did, "CIRCLE": _circle(s)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/fits"
    assert 'filename="v1-r-cutout.fits"' in r.headers["content-disposition"]
    assert int(r.headers["content-length"]) == len(r.content)
    with fits.open(io.BytesIO(r.content)) as cut:
        assert cut[0].data.shape == (41, 41)
        _star_in(cut[0], s)


def test_sync_post_lower_case_names_and_pos(served) -> None:
    url, stored, _ = served
    s = stored[1]
    half = 10 * PIXEL_DEG
    ra, dec = s.image.star_ra, s.image.star_dec
    r = httpx.post(
        f"{url}/soda/sync",
        data={"id": s.did, "pos": f"RANGE {ra - half} {ra + half} {dec - half} {dec + half}"},
    )
    assert r.status_code == 200, r.text
    with fits.open(io.BytesIO(r.content)) as cut:
        assert [h.name for h in cut] == ["PRIMARY", "SCI", "VAR", "MASK"]
        assert cut["SCI"].data.shape == cut["MASK"].data.shape
        _star_in(cut["SCI"], s)


def test_pyvo_soda_query(served) -> None:
    url, stored, _ = served
    s = stored[0]
    query = SodaQuery(
        f"{url}/soda/sync", circle=(s.image.star_ra, s.image.star_dec, 15 * PIXEL_DEG)
    )
    query["ID"] = s.did
    with fits.open(io.BytesIO(query.execute_stream().read())) as cut:
        _star_in(cut[0], s)


def test_whole_file_without_a_region_and_band_time_pol(served) -> None:
    url, stored, data = served
    s = stored[0]
    r = httpx.get(f"{url}/soda/sync", params={"ID": s.did, "BAND": "6e-7 6.5e-7"})
    assert r.status_code == 200 and r.content == (data / "images/demo/v1-r.fits").read_bytes()
    message = dali_error(
        httpx.get(f"{url}/soda/sync", params={"ID": s.did, "BAND": "1e-6 2e-6"}), 400
    )
    assert message.startswith("NoOverlap:") and "BAND" in message
    message = dali_error(
        httpx.get(f"{url}/soda/sync", params={"ID": s.did, "TIME": "50000 50001"}), 400
    )
    assert message.startswith("NoOverlap:") and "TIME" in message
    message = dali_error(httpx.get(f"{url}/soda/sync", params={"ID": s.did, "POL": "I"}), 400)
    assert "no polarization" in message
    r = httpx.get(
        f"{url}/soda/sync", params={"ID": stored[1].did, "POL": "Q", "CIRCLE": _circle(stored[1])}
    )
    assert r.status_code == 200
    assert "V" in dali_error(
        httpx.get(f"{url}/soda/sync", params={"ID": stored[1].did, "POL": "V"}), 400
    )


@pytest.mark.parametrize(
    ("params", "status", "code", "words"),
    [
        ({}, 400, "UsageError", "ID is missing"),
        ({"ID": "ivo://qcat/demo?nope"}, 404, "NotFoundFault", "nope"),
        ({"CIRCLE": "10 20"}, 400, "UsageError", "3 numbers"),
        ({"CIRCLE": "10 20 abc"}, 400, "UsageError", "not a number"),
        ({"CIRCLE": "10 95 0.1"}, 400, "UsageError", "dec"),
        ({"CIRCLE": "10 20 0"}, 400, "UsageError", "radius"),
        ({"CIRCLE": "10 20 500"}, 400, "UsageError", "radius"),
        ({"CIRCLE": "10 20 nan"}, 400, "UsageError", "finite"),
        ({"POLYGON": "10 20 11 20"}, 400, "UsageError", "at least 3 vertices"),
        ({"POLYGON": "10 20 11 20 11"}, 400, "UsageError", "at least 3 vertices"),
        ({"POLYGON": "10 20 11 21 11 20 10 21"}, 400, "UsageError", "POLYGON"),
        ({"POS": "BOX 10 20 1 1"}, 400, "UsageError", "CIRCLE, RANGE or POLYGON"),
        ({"POS": "RANGE 10 11 21 20"}, 400, "UsageError", "above"),
        ({"POS": "RANGE 10 11 20"}, 400, "UsageError", "4 numbers"),
        ({"BAND": "7e-7 6e-7"}, 400, "UsageError", "above"),
        ({"BAND": "-1 6e-7"}, 400, "UsageError", "below"),
        ({"BAND": "6e-7"}, 400, "UsageError", "2 numbers"),
        ({"TIME": "x y"}, 400, "UsageError", "not a number"),
        ({"POL": "Z"}, 400, "UsageError", "polarization"),
        ({"CIRCLE": "200 -60 0.01"}, 400, "NoOverlap", "overlap"),
    ],
)
def test_bad_requests(served, params, status, code, words) -> None:
    url, stored, _ = served
    query = {"ID": stored[0].did, **params} if params and "ID" not in params else params
    message = dali_error(httpx.get(f"{url}/soda/sync", params=query), status)
    assert message.startswith(f"{code}:") and words in message, message


def test_several_values_in_sync_are_refused(served) -> None:
    url, stored, _ = served
    s = stored[0]
    r = httpx.get(f"{url}/soda/sync", params=[("ID", s.did), ("ID", stored[1].did)])
    assert dali_error(r, 400).startswith("MultiValuedParamNotSupported: ID")
    r = httpx.get(
        f"{url}/soda/sync", params={"ID": s.did, "CIRCLE": _circle(s), "POS": "CIRCLE 1 2 3"}
    )
    assert "CIRCLE and POS" in dali_error(r, 400)


def _wait_done(client: httpx.Client, job_url: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        phase = client.get(f"{job_url}/phase").text
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            return phase
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_async_job_with_several_cutouts(served) -> None:
    url, stored, _ = served
    a, b = stored
    with httpx.Client(follow_redirects=False) as client:
        r = client.post(
            f"{url}/soda/async",
            data={"ID": [a.did, b.did], "CIRCLE": [_circle(a), _circle(b, 10)]},
        )
        assert r.status_code == 303
        job_url = r.headers["location"]
        job = client.get(job_url).text
        assert job.count('id="id"') == 2 and job.count('id="circle"') == 2
        # SODA jobs are not TAP jobs, and the reverse.
        job_id = job_url.rsplit("/", 1)[1]
        assert client.get(f"{url}/tap/async/{job_id}").status_code == 404
        assert job_id not in client.get(f"{url}/tap/async").text
        assert job_id in client.get(f"{url}/soda/async").text
        assert client.post(f"{job_url}/phase", data={"PHASE": "RUN"}).status_code == 303
        assert _wait_done(client, job_url) == "COMPLETED"
        results = client.get(f"{job_url}/results").text
        # 2 IDs x 2 circles, all on both images (same field), in the order ID x CIRCLE.
        ids = ["result", "result-2", "result-3", "result-4"]
        assert all(f'id="{i}"' in results for i in ids)
        cuts = []
        for result_id in ids:
            r = client.get(f"{job_url}/results/{result_id}")
            assert r.status_code == 200 and r.headers["content-type"] == "image/fits"
            cuts.append(fits.open(io.BytesIO(r.content)))
        assert cuts[0][0].data.shape == (41, 41) and cuts[1][0].data.shape == (21, 21)
        _star_in(cuts[0][0], a)
        assert [h.name for h in cuts[2]] == ["PRIMARY", "SCI", "VAR", "MASK"]
        _star_in(cuts[3]["SCI"], b)
        assert cuts[3]["SCI"].data.shape[0] < cuts[2]["SCI"].data.shape[0]
        for cut in cuts:
            cut.close()
        assert client.get(f"{job_url}/results/result-9").status_code == 404
        assert client.delete(job_url).status_code == 303
        assert client.get(job_url).status_code == 404


def test_async_job_errors_follow_uws(served) -> None:
    url, stored, _ = served
    with httpx.Client() as client:
        r = client.post(
            f"{url}/soda/async",
            data={"ID": "ivo://qcat/demo?missing", "PHASE": "RUN"},
            follow_redirects=False,
        )
        job_url = r.headers["location"]
        assert _wait_done(client, job_url) == "ERROR"
        error = client.get(f"{job_url}/error")
        assert error.status_code == 200 and "NotFoundFault" in error.text
        assert "NotFoundFault" in client.get(job_url).text
        # A finished job cannot run again; parameters change only while PENDING.
        assert client.post(f"{job_url}/phase", data={"PHASE": "RUN"}).status_code == 400
        r = client.post(f"{url}/soda/async", data={"ID": stored[0].did, "CIRCLE": "200 -60 0.01"})
        job_url = r.headers["location"]
        assert client.get(f"{job_url}/phase").text == "PENDING"
        client.post(f"{job_url}/phase", data={"PHASE": "RUN"})
        assert _wait_done(client, job_url) == "ERROR"
        assert "NoOverlap" in client.get(f"{job_url}/error").text
