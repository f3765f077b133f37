"""TAP /async: UWS 1.1 jobs over HTTP with pyvo, raw HTTP and a restart of the service."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
import pyvo
from astropy.io import votable

from services.settings import ServiceSettings
from tests.service_support import Served, dali_error, demo_service
from tests.xsd import assert_schema_valid

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
BRIGHT = "SELECT objectId, r_psfMag FROM demo.Object WHERE r_psfMag < 21 ORDER BY objectId"
BRIGHT_RAW = "SELECT objectId, r_psfMag FROM object WHERE r_psfMag < 21 ORDER BY objectId"
#: Long enough to still run when a test aborts it or restarts the service.
SLOW = (
    "SELECT COUNT(*) FROM demo.Source AS a JOIN demo.Source AS b ON a.band = b.band "
    "WHERE a.psFlux < b.psFlux"
)


def settings() -> ServiceSettings:
    return ServiceSettings.defaults(tap_wait_max_s=5.0, tap_execution_duration_max_s=600)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with demo_service(tmp_path_factory.mktemp("async"), settings(), threshold=500) as served:
        yield served


def create(served: Served, **params: str) -> str:
    """POST a job; return its URL (from the 303)."""
    response = httpx.post(served.url + "/async", data=params, follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(served.url + "/async/")
    return location


def job_doc(url: str, **params: str) -> ET.Element:
    response = httpx.get(url, params=params, timeout=60)
    assert response.status_code == 200, response.text
    assert_schema_valid(response.content)
    return ET.fromstring(response.content)


def phase_of(url: str) -> str:
    return httpx.get(url + "/phase").text


def wait_final(url: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = job_doc(url, WAIT="5")
        phase = doc.findtext(f"{UWS}phase")
        if phase not in ("PENDING", "QUEUED", "EXECUTING"):
            return str(phase)
    raise AssertionError(f"{url} never finished")


def test_pyvo_run_async_matches_duckdb(served: Served) -> None:
    result = pyvo.dal.TAPService(served.url).run_async(BRIGHT, maxrec=100_000)
    got = [(int(r["objectId"]), float(r["r_psfMag"])) for r in result]
    assert got == served.raw_rows(BRIGHT_RAW)


def test_pyvo_submit_wait_fetch_and_delete(served: Served) -> None:
    job = pyvo.dal.TAPService(served.url).submit_job(
        "SELECT COUNT(*) AS n FROM demo.Source", runid="mine"
    )
    assert job.phase == "PENDING"
    job.run()
    job.wait(timeout=60)
    assert job.phase == "COMPLETED"
    assert (
        job.fetch_result().to_table()["n"][0]
        == served.raw_rows("SELECT count(*) FROM source")[0][0]
    )
    url = job.url
    job.delete()
    assert httpx.get(url).status_code == 404


def test_phase_run_at_creation_and_result_formats(served: Served) -> None:
    url = create(served, QUERY=BRIGHT, PHASE="RUN", RESPONSEFORMAT="csv", LANG="ADQL")
    assert wait_final(url) == "COMPLETED"
    doc = job_doc(url)
    [result] = doc.iter(f"{UWS}result")
    href = result.get("{http://www.w3.org/1999/xlink}href")
    assert href == url + "/results/result"
    response = httpx.get(href)
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    assert len(lines) - 1 == len(served.raw_rows(BRIGHT_RAW))
    assert_schema_valid(httpx.get(url + "/results").content)
    assert doc.findtext(f"{UWS}startTime") and doc.findtext(f"{UWS}endTime")


def test_overflow_is_reported_in_the_result(served: Served) -> None:
    url = create(served, QUERY=BRIGHT, PHASE="RUN", MAXREC="3")
    assert wait_final(url) == "COMPLETED"
    table = votable.parse(io.BytesIO(httpx.get(url + "/results/result").content))
    assert len(table.get_first_table().array) == 3
    infos = [i for i in table.resources[0].infos if i.name == "QUERY_STATUS"]
    assert [i.value for i in infos][-1] == "OVERFLOW"


def test_failed_job_reports_its_error(served: Served) -> None:
    url = create(served, QUERY="SELECT nope FROM demo.Object", PHASE="RUN")
    assert wait_final(url) == "ERROR"
    summary = job_doc(url).find(f"{UWS}errorSummary")
    assert summary is not None and "nope" in (summary.findtext(f"{UWS}message") or "")
    assert "nope" in dali_error(httpx.get(url + "/error"), 200)
    assert httpx.get(url + "/results/result").status_code == 404
    bad_lang = create(served, QUERY="SELECT 1", LANG="SQL", PHASE="RUN")
    assert wait_final(bad_lang) == "ERROR"
    assert "LANG=SQL" in dali_error(httpx.get(bad_lang + "/error"), 200)


def test_job_resources_and_changes_while_pending(served: Served) -> None:
    url = create(served, QUERY="SELECT TOP 1 objectId FROM demo.Object", RUNID="r-1")
    assert phase_of(url) == "PENDING"
    assert httpx.get(url + "/owner").text == "127.0.0.1"
    assert httpx.get(url + "/quote").status_code == 200
    response = httpx.post(url + "/executionduration", data={"EXECUTIONDURATION": "30"})
    assert response.status_code == 303
    assert httpx.get(url + "/executionduration").text == "30"
    # Beyond the service's maximum: cut to it.
    httpx.post(url + "/executionduration", data={"EXECUTIONDURATION": "100000"})
    assert httpx.get(url + "/executionduration").text == "600"
    httpx.post(url + "/destruction", data={"DESTRUCTION": "2000-01-01T00:00:00Z"})
    assert httpx.get(url + "/destruction").text.startswith("2000-01-01T00:00:00")
    httpx.post(url + "/parameters", data={"QUERY": "SELECT TOP 2 objectId FROM demo.Object"})
    params = ET.fromstring(httpx.get(url + "/parameters").content)
    assert [p.text for p in params if p.get("id") == "query"] == [
        "SELECT TOP 2 objectId FROM demo.Object"
    ]
    assert job_doc(url).findtext(f"{UWS}runId") == "r-1"
    assert httpx.post(url + "/phase", data={"PHASE": "RUN"}).status_code == 303
    assert wait_final(url) == "COMPLETED"
    # Finished: its duration and parameters are fixed, and it cannot run again.
    assert "PENDING" in dali_error(
        httpx.post(url + "/executionduration", data={"EXECUTIONDURATION": "5"}), 400
    )
    assert "cannot run again" in dali_error(httpx.post(url + "/phase", data={"PHASE": "RUN"}), 400)
    assert "SUSPEND" in dali_error(httpx.post(url + "/phase", data={"PHASE": "SUSPEND"}), 400)


def test_abort_stops_the_query_on_the_workers(served: Served) -> None:
    url = create(served, QUERY=SLOW, PHASE="RUN")
    deadline = time.monotonic() + 30
    while phase_of(url) != "EXECUTING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    assert httpx.post(url + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    assert phase_of(url) == "ABORTED"
    served.wait_idle(timeout=10)
    assert time.monotonic() - t0 < 10


def test_execution_duration_is_enforced(served: Served) -> None:
    url = create(served, QUERY=SLOW, EXECUTIONDURATION="1", PHASE="RUN")
    assert wait_final(url, timeout=60) == "ABORTED"
    message = job_doc(url).find(f"{UWS}errorSummary")
    assert message is not None
    assert "execution duration of 1 s" in (message.findtext(f"{UWS}message") or "")
    served.wait_idle(timeout=10)


def test_wait_blocks_until_the_phase_changes(served: Served) -> None:
    url = create(served, QUERY="SELECT TOP 1 objectId FROM demo.Object")
    t0 = time.monotonic()
    doc = job_doc(url, WAIT="1")  # PENDING: blocks for the whole WAIT
    assert doc.findtext(f"{UWS}phase") == "PENDING" and time.monotonic() - t0 >= 0.9
    t0 = time.monotonic()
    doc = job_doc(url, WAIT="1", PHASE="EXECUTING")  # not in the phase the client saw
    assert time.monotonic() - t0 < 0.9
    httpx.post(url + "/phase", data={"PHASE": "RUN"})
    assert wait_final(url) == "COMPLETED"


def test_job_list_filters(served: Served) -> None:
    pending = create(served, QUERY="SELECT 1 AS one FROM demo.Object")
    response = httpx.get(served.url + "/async", params={"PHASE": "PENDING"})
    assert_schema_valid(response.content)
    refs = ET.fromstring(response.content).findall(f"{UWS}jobref")
    assert pending.rsplit("/", 1)[1] in [r.get("id") for r in refs]
    assert all(r.findtext(f"{UWS}phase") == "PENDING" for r in refs)
    last = ET.fromstring(httpx.get(served.url + "/async", params={"LAST": "1"}).content)
    assert [r.get("id") for r in last.findall(f"{UWS}jobref")] == [pending.rsplit("/", 1)[1]]
    future = ET.fromstring(
        httpx.get(served.url + "/async", params={"AFTER": "2999-01-01T00:00:00Z"}).content
    )
    assert future.findall(f"{UWS}jobref") == []
    assert "not a UWS phase" in dali_error(
        httpx.get(served.url + "/async", params={"PHASE": "DONE"}), 400
    )
    assert "LAST" in dali_error(httpx.get(served.url + "/async", params={"LAST": "-2"}), 400)


def test_delete_then_unknown_ids(served: Served) -> None:
    url = create(served, QUERY="SELECT 1 AS one FROM demo.Object")
    response = httpx.delete(url, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == served.url + "/async"
    assert "does not exist" in dali_error(httpx.get(url), 404)
    url = create(served, QUERY="SELECT 1 AS one FROM demo.Object")
    response = httpx.post(url, data={"ACTION": "DELETE"}, follow_redirects=False)
    assert response.status_code == 303
    for path in ("", "/phase", "/results", "/error", "/parameters"):
        dali_error(httpx.get(served.url + "/async/no-such-job" + path), 404)
