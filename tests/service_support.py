"""A real TAP service for tests: a small demo catalog, local workers, uvicorn on 127.0.0.1."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import uvicorn
from astropy.io import votable
from starlette.applications import Starlette

from partition.ingest import IngestOptions, ingest_table
from services.app import create_app
from services.server import base_url, bind, server_config
from services.service import Service
from services.settings import ServiceSettings
from tests.conftest import make_demo
from tests.formats import write_as


@dataclass
class Served:
    url: str  # the TAP base URL
    service: Service
    raw: duckdb.DuckDBPyConnection
    data: Path

    def raw_rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.raw.sql(sql).fetchall()]

    def log(self) -> list[dict[str, Any]]:
        path = self.data / "logs" / "queries.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def log_entry(self, query_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The query's log entry, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.log() if e["query_id"] == query_id]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no log entry for {query_id}"
            time.sleep(0.05)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no query runs at the czar or on any worker."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.service.worker_health()
            busy = self.service.limiter.running() + sum(h.running_tasks or 0 for h in health)
            dispatching = [t for t in threading.enumerate() if t.name.startswith("qcat-dispatch")]
            if busy == 0 and not dispatching:
                return
            assert time.monotonic() < deadline, (busy, dispatching)
            time.sleep(0.05)


@contextmanager
def uvicorn_thread(app: Starlette) -> Iterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 in a thread; yield its base URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def demo_service(root: Path, settings: ServiceSettings, *, threshold: int) -> Iterator[Served]:
    """Ingest a 3000-object demo catalog under ``root`` and serve it; yield the TAP handle."""
    demo = make_demo(3000, seed=5)
    objects = write_as(demo.objects, root / "objects.parquet", "parquet")
    sources = write_as(demo.sources, root / "sources.parquet", "parquet")
    data = root / "data"
    options = IngestOptions(threshold=threshold, show_progress=False)
    for spec, path in ((demo.object_spec, objects), (demo.source_spec, sources)):
        ingest_table(data, spec, [path], options)
    raw = duckdb.connect()
    raw.execute(f"CREATE VIEW object AS SELECT * FROM read_parquet('{objects}')")
    raw.execute(f"CREATE VIEW source AS SELECT * FROM read_parquet('{sources}')")
    with serve_data(data, settings) as (service, url):
        yield Served(url + "/tap", service, raw, data)


@contextmanager
def serve_data(data: Path, settings: ServiceSettings) -> Iterator[tuple[Service, str]]:
    """Start the service over ``data`` (2 workers) and uvicorn; yield it and its base URL."""
    with (
        Service.start(data, workers=2, worker_memory_limit="512MB", settings=settings) as service,
        uvicorn_thread(create_app(service)) as url,
    ):
        yield service, url


def dali_error(response: httpx.Response, status: int) -> str:
    """Check ``response`` is a DALI error document with ``status``; return its message."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/x-votable+xml")
    doc = votable.parse(io.BytesIO(response.content))
    statuses = [i for i in doc.resources[0].infos if i.name == "QUERY_STATUS"]
    assert [i.value for i in statuses] == ["ERROR"]
    assert "Traceback" not in response.text
    return str(statuses[0].content)
