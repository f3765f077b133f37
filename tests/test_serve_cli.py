"""``qcat serve`` and ``qcat demo`` as an operator runs them: real processes, real signals."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import pyvo
from astropy.io import fits
from click.testing import CliRunner
from pyvo.dal.exceptions import DALOverflowWarning, DALQueryError

from qcat.cli import main
from tests.conftest import qcat_cli

OBJECTS = 300
URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/tap)")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``qcat demo --no-serve``: the demo catalog generated and ingested, nothing served."""
    data = tmp_path_factory.mktemp("serve") / "data"
    prepared = qcat_cli("demo", *demo_args(data), "--no-serve")
    assert "demo.Object" in prepared.stdout and "demo.Source" in prepared.stdout
    assert "demo images: 60 files of collection demo ingested" in prepared.stdout
    assert "ivoa.ObsCore" in prepared.stdout
    assert "http://" not in prepared.stdout
    return data


def demo_args(data: Path) -> tuple[str | Path, ...]:
    return ("--objects", str(OBJECTS), "--threshold", "200", "--data", data, "--quiet")


def start(*args: str | Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("QCAT_DATA", None)
    return subprocess.Popen(
        [sys.executable, "-m", "qcat", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_url(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    """The TAP URL the command prints, and everything it printed up to it."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        found = URL_LINE.search(line)
        if found:
            return found.group(1), seen
    proc.kill()
    raise AssertionError(f"no URL printed:\n{seen}\n{proc.stderr.read() if proc.stderr else ''}")


def wait_healthy(tap_url: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(tap_url.removesuffix("/tap") + "/healthz", timeout=5)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "service never became healthy"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and _not_zombie(p)]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def serve_process(demo_data: Path) -> Iterator[subprocess.Popen[str]]:
    proc = start("serve", "--data", demo_data, "--port", "0", "--workers", "2")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_answers_and_stops_cleanly_on_sigint(
    serve_process: subprocess.Popen[str], demo_data: Path
) -> None:
    url, printed = wait_for_url(serve_process)
    assert "qcat TAP service at" in printed
    health = wait_healthy(url)
    workers = health["workers"]
    assert isinstance(workers, list) and len(workers) == 2
    pids = [int(w["pid"]) for w in workers]
    children = {c.pid for c in psutil.Process(serve_process.pid).children()}
    assert set(pids) <= children
    result = pyvo.dal.TAPService(url).run_sync("SELECT COUNT(*) AS n FROM demo.Object")
    assert result.to_table()["n"][0] == OBJECTS
    status, err = stop(serve_process, signal.SIGINT)
    assert status == 0, err
    assert "stopped" in err and "Traceback" not in err
    assert "leaked" not in err  # objects frozen at start-up are freed at exit
    assert gone(pids)
    log = (demo_data / "logs" / "queries.jsonl").read_text().splitlines()
    assert any('"SELECT COUNT(*) AS n FROM demo.Object"' in line for line in log)


def test_the_demo_sources_are_found_by_their_own_id(demo_data: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    top = "SELECT TOP 1 sourceId, objectId FROM demo.Source ORDER BY sourceId DESC"
    qcat_cli("query", "--data", demo_data, "-o", first, top)
    header, row = first.read_text().split()
    source_id = row.split(",")[0]
    adql = f"SELECT sourceId, objectId FROM demo.Source WHERE sourceId = {source_id}"
    plan = qcat_cli("adql", "explain", "--data", demo_data, adql).stdout
    assert "index of sourceId maps 1 key(s) to 1 chunk(s)" in plan
    found = tmp_path / "found.csv"
    qcat_cli("query", "--data", demo_data, "-o", found, adql)
    assert found.read_text().split() == [header, row]


def test_a_restart_keeps_finished_jobs_and_fails_running_ones(demo_data: Path) -> None:
    """Kill -9 the service while one job runs and after another finished, then restart it."""
    slow = (  # ~3e10 rows of a triple cross join: still running when the service is killed
        "SELECT COUNT(*) FROM demo.Source AS a CROSS JOIN demo.Source AS b "
        "CROSS JOIN demo.Source AS c WHERE SIN(a.psFlux + b.psFlux + c.psFlux) > 2"
    )
    first = start("serve", "--data", demo_data, "--port", "0", "--workers", "2")
    try:
        url, _ = wait_for_url(first)
        pids = [int(w["pid"]) for w in wait_healthy(url)["workers"]]  # type: ignore[index]
        tap = pyvo.dal.TAPService(url)
        done = tap.submit_job("SELECT COUNT(*) AS n FROM demo.Object")
        done.run()
        done.wait(timeout=60)
        assert done.phase == "COMPLETED"
        result = httpx.get(f"{done.url}/results/result").content
        running = tap.submit_job(slow)
        running.run()
        deadline = time.monotonic() + 60
        while httpx.get(f"{running.url}/phase").text != "EXECUTING":
            assert time.monotonic() < deadline, running.phase
            time.sleep(0.05)
    finally:
        first.kill()
        first.wait()
    assert gone(pids)
    second = start("serve", "--data", demo_data, "--port", "0", "--workers", "2")
    try:
        url2, _ = wait_for_url(second)
        base, base2 = url.removesuffix("/tap"), url2.removesuffix("/tap")
        assert httpx.get(f"{done.url}/results/result".replace(base, base2)).content == result
        job = pyvo.dal.AsyncTAPJob(running.url.replace(base, base2))
        assert job.phase == "ERROR"
        with pytest.raises(DALQueryError, match="restarted"):
            job.raise_if_error()
    finally:
        stop(second, signal.SIGTERM)


def test_serve_errors_name_the_problem(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["serve", "--data", str(tmp_path / "nope"), "--port", "0"])
    assert missing.exit_code == 1
    assert "nope" in missing.output and "no such data directory" in missing.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = runner.invoke(main, ["serve", "--data", str(tmp_path), "--port", str(port)])
    assert taken.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in taken.output
    for assignment, message in (
        ("tap_client_querie=3", "is not a service setting; did you mean tap_client_queries?"),
        ("tap_client_queries=many", "the value must be a whole number"),
        ("tap_sync_timeout_s=0", "the value must be positive and finite"),
        ("partition_threshold=10", "'partition_threshold' is not a service setting"),
        ("public_url", "write NAME=VALUE"),
    ):
        for command in ("serve", "demo"):
            args = [command, "--data", str(tmp_path / "nope"), "--set", assignment]
            refused = runner.invoke(main, args)
            assert refused.exit_code == 1, refused.output
            assert f"--set {assignment}" in refused.output or repr(assignment) in refused.output
            assert message in refused.output, refused.output
    assert not (tmp_path / "nope").exists()  # refused before anything was made


def test_service_settings_are_set_from_the_command_line(demo_data: Path) -> None:
    proc = start(
        "serve", "--data", demo_data, "--port", "0", "--workers", "1",
        "--set", "public_url=https://data.example.org", "--set", "tap_maxrec_default=7",
    )  # fmt: skip
    try:
        url, _ = wait_for_url(proc)
        capabilities = httpx.get(f"{url}/capabilities", timeout=30).text
        assert "https://data.example.org/tap" in capabilities
        assert re.search(r"<default unit=\"row\">7</default>", capabilities), capabilities
        with pytest.warns(DALOverflowWarning):
            answer = pyvo.dal.TAPService(url).run_sync("SELECT objectId FROM demo.Object")
        assert len(answer) == 7 and answer.query_status == "OVERFLOW"
        status, err = stop(proc, signal.SIGTERM)
        assert status == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_serves_explains_and_stops_on_sigterm(
    demo_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proc = start("demo", *demo_args(demo_data), "--port", "0", "--workers", "1")
    try:
        url, printed = wait_for_url(proc)
        assert proc.stdout is not None
        while "cutout.fits" not in printed:
            line = proc.stdout.readline()
            assert line, printed
            printed += line
        assert f'pyvo.dal.TAPService("{url}")' in printed and "TOPCAT" in printed
        assert "already ingested, skipped" in printed  # the images of demo_data, reused
        base = url.removesuffix("/tap")
        for service in ("/sia/query?POS=", "/datalink/links?ID=", "/soda/sync?ID=", "/images/"):
            assert base + service in printed, service
        pids = [int(w["pid"]) for w in wait_healthy(url)["workers"]]  # type: ignore[attr-defined]
        # the printed pyvo snippets run as printed
        code = printed.split("paste:", 1)[1].split("From TOPCAT")[0]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(textwrap.dedent(code), {})
        assert "objectId" in out.getvalue() and "r_psfMag" in out.getvalue()
        images_code = printed.split("paste:")[2]
        monkeypatch.chdir(tmp_path)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(textwrap.dedent(images_code), {})
        assert "-u-01" in out.getvalue() and "band_name" in out.getvalue()
        with fits.open(tmp_path / "cutout.fits") as cutout:
            assert any(h.data is not None and 0 < h.data.size < 512 * 512 for h in cutout)
        status, err = stop(proc, signal.SIGTERM)
        assert status == 0, err
        assert "Traceback" not in err and "leaked" not in err, err
        assert gone(pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_help_shows_examples() -> None:
    runner = CliRunner()
    serve_help = runner.invoke(main, ["serve", "--help"]).output
    assert "qcat serve --data ./qcat-data" in serve_help and "--workers" in serve_help
    demo_help = runner.invoke(main, ["demo", "--help"]).output
    assert "--no-serve" in demo_help and "qcat demo --port 9000" in demo_help
    assert "--images / --no-images" in demo_help
