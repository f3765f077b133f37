"""Workers: real ``qcat worker`` processes serving chunk tasks over a small demo catalog."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psutil
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

from partition.ingest import IngestOptions, ingest_table
from qcat.metadata.records import PartitionRecord
from qcat.metadata.store import MetadataStore
from qcat.worker.client import WorkerClient
from qcat.worker.errors import (
    TaskCancelled,
    TaskError,
    TaskTimeout,
    WorkerError,
    WorkerUnavailable,
)
from qcat.worker.pool import LocalWorkers
from qcat.worker.task import ChunkTask
from tests.conftest import make_demo

TABLE = "demo.Object"
# a query that cannot finish in time on any machine (~80 s of hashing)
SLOW_SQL = "SELECT sum(hash(range)) AS s FROM range(10000000000)"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding demo.Object in many small chunks, plus bait outside tables/."""
    root = tmp_path_factory.mktemp("worker")
    demo = make_demo(3000)
    src = root / "objects.parquet"
    pq.write_table(demo.objects, src)
    data = root / "data"
    options = IngestOptions(threshold=300, show_progress=False)
    ingest_table(data, demo.object_spec, [src], options)
    # bait: a Parquet file outside tables/, and a link inside tables/ pointing at it
    pq.write_table(pa.table({"secret": [42]}), data / "outside.parquet")
    (data / "tables" / "link.parquet").symlink_to(data / "outside.parquet")
    return data


@pytest.fixture(scope="module")
def partitions(data_dir: Path) -> list[PartitionRecord]:
    with MetadataStore.for_data_dir(data_dir) as store:
        return store.partitions(TABLE)


@pytest.fixture(scope="module")
def workers(data_dir: Path) -> Iterator[LocalWorkers]:
    with LocalWorkers(
        data_dir, 2, memory_limit="512MB", setup_sql_module="tests.worker_setup"
    ) as pool:
        yield pool


@pytest.fixture(scope="module")
def clients(workers: LocalWorkers) -> Iterator[list[WorkerClient]]:
    clients = [WorkerClient(loc) for loc in workers.locations]
    yield clients
    for c in clients:
        c.close()


_ids = iter(range(10**9))


def task(sql: str, relations: dict[str, list[str]] | None = None, **kw: object) -> ChunkTask:
    """A task with a fresh id, a 30 s deadline unless given, in query ``q`` unless given."""
    n = next(_ids)
    return ChunkTask(
        query_id=str(kw.get("query_id", f"q{n}")),
        task_id=f"t{n}",
        sql=sql,
        relations=relations or {},
        deadline=float(kw.get("deadline", time.time() + 30)),  # type: ignore[arg-type]
    )


def sorted_rows(table: pa.Table, key: str = "objectId") -> pa.Table:
    return table.sort_by(key)


# -- the task and its ticket ----------------------------------------------------------------------


def test_ticket_round_trip_and_validation() -> None:
    t = ChunkTask("q", "t", "SELECT 1", {"obj": ["tables/a/x.parquet"]}, 123.5)
    assert ChunkTask.from_ticket(t.to_ticket()) == t
    body = json.loads(t.to_ticket())
    for bad, words in (
        (b"not json", "not a JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({**body, "extra": 1}).encode(), "unknown extra"),
        (json.dumps({k: v for k, v in body.items() if k != "sql"}).encode(), "missing sql"),
        (json.dumps({**body, "deadline": "soon"}).encode(), "'deadline' must be a number"),
        (json.dumps({**body, "relations": {"1x": ["a.parquet"]}}).encode(), "'1x'"),
        (json.dumps({**body, "relations": {"o": "a.parquet"}}).encode(), "non-empty list"),
        (json.dumps({**body, "relations": {"o": ["/abs/../b.parquet"]}}).encode(), "'..'"),
        (json.dumps({**body, "relations": {"o": ["a/../b.parquet"]}}).encode(), "'..'"),
        (json.dumps({**body, "relations": {"o": ["a.csv"]}}).encode(), "not a .parquet"),
        (json.dumps({**body, "query_id": ""}).encode(), "query_id"),
    ):
        with pytest.raises(TaskError, match=words):
            ChunkTask.from_ticket(bad)


# -- results --------------------------------------------------------------------------------------


def test_chunk_task_equals_reading_the_partition(
    clients: list[WorkerClient], data_dir: Path, partitions: list[PartitionRecord]
) -> None:
    p = max(partitions, key=lambda p: p.num_rows)
    columns = "objectId, coord_ra, coord_dec, {} AS two"
    where = "WHERE coord_dec > -30"
    sql = f"SELECT {columns.format('twice(objectId)')} FROM obj {where}"
    got = clients[0].run(task(sql, {"obj": [p.path]})).read_all()
    direct = f"read_parquet('{data_dir / p.path}')"
    want = duckdb.sql(f"SELECT {columns.format('objectId * 2')} FROM {direct} {where}")
    want = want.to_arrow_table()
    assert got.num_rows == want.num_rows > 0
    assert sorted_rows(got).equals(sorted_rows(want))


def test_partition_plus_margin(
    clients: list[WorkerClient], data_dir: Path, partitions: list[PartitionRecord]
) -> None:
    with MetadataStore.for_data_dir(data_dir) as store:
        version = store.current_version(TABLE)
    assert version is not None and version.margin_path is not None
    pairs = [
        (p, f"{version.margin_path}/dataset/{Path(p.path).relative_to(Path(p.path).parents[2])}")
        for p in partitions
    ]
    p, margin = next((p, m) for p, m in pairs if (data_dir / m).is_file())
    margin_rows = pq.read_metadata(data_dir / margin).num_rows
    assert margin_rows > 0
    sql = "SELECT objectId, _healpix_29 FROM obj"
    got = clients[1].run(task(sql, {"obj": [p.path, margin]})).read_all()
    assert got.num_rows == p.num_rows + margin_rows
    files = ", ".join(f"'{data_dir / f}'" for f in (p.path, margin))
    want = duckdb.sql(f"SELECT objectId, _healpix_29 FROM read_parquet([{files}])").to_arrow_table()
    assert sorted_rows(got).equals(sorted_rows(want))
    # two relations in one task: each name sees only its own files
    sql = "SELECT (SELECT count(*) FROM p) AS np, (SELECT count(*) FROM m) AS nm"
    two = clients[1].run(task(sql, {"p": [p.path], "m": [margin]})).read_all()
    assert two.to_pylist() == [{"np": p.num_rows, "nm": margin_rows}]


def test_counts_over_all_chunks_across_two_workers(
    clients: list[WorkerClient], partitions: list[PartitionRecord], data_dir: Path
) -> None:
    assert len(partitions) > 10
    # four threads share the two clients: two threads per client at once
    totals = [0, 0, 0, 0]

    def run_share(i: int) -> None:
        for p in partitions[i::4]:
            reader = clients[i % 2].run(task("SELECT count(*) AS n FROM obj", {"obj": [p.path]}))
            totals[i] += reader.read_all()["n"][0].as_py()

    threads = [threading.Thread(target=run_share, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with MetadataStore.for_data_dir(data_dir) as store:
        version = store.current_version(TABLE)
    assert version is not None
    assert all(n > 0 for n in totals)
    assert sum(totals) == version.num_rows == 3000


# -- streaming ------------------------------------------------------------------------------------


def test_big_result_streams_with_bounded_client_memory(
    clients: list[WorkerClient], partitions: list[PartitionRecord]
) -> None:
    p = max(partitions, key=lambda p: p.num_rows)
    repeat = 6_000_000 // p.num_rows + 1
    sql = f"SELECT objectId, coord_ra, coord_dec, range AS k FROM obj, range({repeat})"
    me = psutil.Process()
    reader = clients[0].run(task(sql, {"obj": [p.path]}))
    base = me.memory_info().rss
    rows = batches = nbytes = peak = 0
    for batch in reader:
        rows += batch.num_rows
        nbytes += batch.nbytes
        batches += 1
        del batch
        if batches % 10 == 0:
            peak = max(peak, me.memory_info().rss - base)
    assert rows == p.num_rows * repeat >= 6_000_000
    assert batches >= 50
    assert nbytes > 180_000_000
    assert peak < nbytes / 3, f"client grew by {peak:,} bytes for {nbytes:,} streamed"


def test_streaming_is_lazy_and_an_abandoned_stream_is_cleaned_up(
    clients: list[WorkerClient], partitions: list[PartitionRecord]
) -> None:
    p = partitions[0]
    # ~ trillions of rows: only a lazy worker can send the first batch
    sql = "SELECT objectId, range AS k FROM obj, range(1000000000000)"
    start = time.monotonic()
    reader = clients[1].run(task(sql, {"obj": [p.path]}))
    first = reader.read_next_batch()
    assert first.num_rows > 0 and time.monotonic() - start < 5
    assert clients[1].health()["running_tasks"] == 1
    reader.close()
    del reader
    assert _eventually(lambda: clients[1].health()["running_tasks"] == 0)
    assert clients[1].health()["rss_bytes"] < 1_500_000_000


# -- security -------------------------------------------------------------------------------------


def _raw_ticket(location: str, relations: dict[str, list[str]]) -> flight.FlightError:
    """Send a ticket the ChunkTask constructor would refuse; return the worker's error."""
    body = {
        "query_id": "raw",
        "task_id": "raw-1",
        "sql": "SELECT count(*) FROM obj",
        "relations": relations,
        "deadline": time.time() + 30,
    }
    client = flight.FlightClient(location)
    try:
        with pytest.raises(flight.FlightError) as info:
            client.do_get(flight.Ticket(json.dumps(body).encode())).read_all()
        return info.value
    finally:
        client.close()


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_lockdown_refuses_everything_but_reading_tables(
    clients: list[WorkerClient], workers: LocalWorkers, data_dir: Path, tmp_path: Path
) -> None:
    for client in clients:  # each worker opens the metadata store (SQLite adds -wal, -shm)
        client.inventory()
    before = _snapshot(data_dir)
    tables = data_dir / "tables"
    attacks = [
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error.*/etc/passwd"),
        (f"SELECT * FROM read_parquet('{data_dir}/outside.parquet')", "Permission Error"),
        (f"SELECT * FROM read_parquet('{tables}/../outside.parquet')", "Permission Error"),
        (f"SELECT * FROM glob('{tmp_path}/*')", "Permission Error"),
        (f"COPY (SELECT 1) TO '{tables}/x.csv'", "only SELECT.*COPY"),
        (f"ATTACH '{tables}/x.duckdb' AS x", "only SELECT.*ATTACH"),
        (f"EXPORT DATABASE '{tables}/export'", "only SELECT.*EXPORT"),
        ("INSTALL httpfs", "only SELECT"),
        ("LOAD httpfs", "only SELECT"),
        ("SET memory_limit='10GB'", "only SELECT.*SET"),
        ("PRAGMA version", "only SELECT.*PRAGMA"),
        ("PRAGMA enable_profiling", "only SELECT.*PRAGMA"),
        ("CREATE TABLE t AS SELECT 1", "only SELECT.*CREATE"),
        ("CREATE MACRO evil(x) AS x", "only SELECT.*CREATE"),
        ("SELECT 1; SELECT 2", "exactly one SELECT statement, got 2"),
        ("SELECT 1; COPY (SELECT 1) TO 'y.csv'", "exactly one SELECT statement, got 2"),
        (f"SELECT * FROM query('COPY (SELECT 1) TO ''{tables}/q.csv''')", "single SELECT"),
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM no_such_table", "no_such_table"),
    ]
    for i, (sql, words) in enumerate(attacks):
        client = clients[i % 2]
        with pytest.raises(TaskError, match=words) as info:
            client.run(task(sql)).read_all()
        message = str(info.value)
        assert client.location in message and "Traceback" not in message, message

    # relation files: refused client-side by ChunkTask, and by the worker if sent anyway
    for path, words, syntactic in (
        ("tables/../outside.parquet", "must not contain '..'", True),
        (f"{data_dir}/outside.parquet", "is not in an attached catalog", False),
        ("qcat.sqlite", "is not a .parquet file", True),
        ("outside.parquet", "is outside the tables directory", False),
        ("tables/link.parquet", "is outside the tables directory", False),
        ("tables/nope/Npix=1.parquet", "does not exist", False),
    ):
        relations = {"obj": [path]}
        if syntactic:
            with pytest.raises(TaskError, match=re.escape(words)):
                task("SELECT 1", relations)
        for loc in workers.locations:
            err = _raw_ticket(loc, relations)
            assert isinstance(err, flight.FlightServerError)
            assert f"file {path!r} {words}" in str(err), str(err)
            assert "Traceback" not in str(err)

    # the lockdown is in place and cannot be read as anything else
    settings = (
        clients[0]
        .run(
            task(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('lock_configuration', "
                "'enable_external_access', 'allowed_directories', 'memory_limit', "
                "'autoinstall_known_extensions', 'autoload_known_extensions', "
                "'parquet_metadata_cache', 'disable_parquet_prefetching')"
            )
        )
        .read_all()
    )
    got = dict(zip(settings["name"].to_pylist(), settings["value"].to_pylist(), strict=True))
    assert got["lock_configuration"] == "true"
    assert got["enable_external_access"] == "false"
    assert got["autoinstall_known_extensions"] == got["autoload_known_extensions"] == "false"
    assert f"{tables.resolve()}/" in got["allowed_directories"]
    assert got["memory_limit"] == "488.2 MiB"  # the pool's 512MB
    # read settings hold for the task's own cursor, not only the worker's connection
    assert got["parquet_metadata_cache"] == got["disable_parquet_prefetching"] == "true"

    assert _snapshot(data_dir) == before
    assert not Path("y.csv").exists()
    for client in clients:
        health = client.health()
        assert health["status"] == "ok" and health["running_tasks"] == 0


# -- deadlines and cancel -------------------------------------------------------------------------


def test_deadline_stops_a_long_task(clients: list[WorkerClient]) -> None:
    start = time.monotonic()
    with pytest.raises(TaskTimeout, match="exceeded its deadline"):
        clients[0].run(task(SLOW_SQL, deadline=time.time() + 0.5)).read_all()
    elapsed = time.monotonic() - start
    print(f"deadline 0.5 s: TaskTimeout after {elapsed:.3f} s")
    assert 0.4 < elapsed < 2.0, elapsed  # ~1.5 s: allow for a shared, loaded machine
    # a deadline that passed already: refused without running
    with pytest.raises(TaskTimeout, match="exceeded its deadline"):
        clients[0].run(task("SELECT 1", deadline=time.time() - 1)).read_all()
    # mid-stream: the stream ends with the timeout, not as a short complete result
    reader = clients[0].run(
        task("SELECT range FROM range(100000000000)", deadline=time.time() + 0.7)
    )
    with pytest.raises(TaskTimeout, match="exceeded its deadline"):
        for _ in reader:
            time.sleep(0.01)
    assert _eventually(lambda: clients[0].health()["running_tasks"] == 0)


def test_cancel_stops_running_tasks_on_both_workers(clients: list[WorkerClient]) -> None:
    outcome: dict[int, tuple[type[BaseException] | None, float]] = {}

    def long_task(i: int) -> None:
        try:
            # one task computes its first batch, the other is streaming
            sql = SLOW_SQL if i == 0 else "SELECT range FROM range(100000000000)"
            for _ in clients[i].run(task(sql, query_id="doomed")):
                time.sleep(0.01)
            outcome[i] = (None, time.monotonic())
        except WorkerError as e:
            outcome[i] = (type(e), time.monotonic())

    threads = [threading.Thread(target=long_task, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    assert _eventually(lambda: all(c.health()["running_tasks"] == 1 for c in clients))
    cancelled_at = time.monotonic()
    stopped = [c.cancel("doomed") for c in clients]
    for t in threads:
        t.join(10)
    assert stopped == [1, 1]
    lags = [outcome[i][1] - cancelled_at for i in range(2)]
    assert [outcome[i][0] for i in range(2)] == [TaskCancelled, TaskCancelled]
    assert max(lags) < 3.0, lags
    print(f"cancel took {max(lags):.3f} s")
    # a late task of the cancelled query is refused; other queries still run
    for c in clients:
        with pytest.raises(TaskCancelled, match="was cancelled"):
            c.run(task("SELECT 1", query_id="doomed")).read_all()
        assert c.run(task("SELECT 1 AS x")).read_all().to_pylist() == [{"x": 1}]
        assert c.cancel("nothing-running") == 0


def test_a_finished_task_leaves_its_cursor_to_a_task_over_the_same_files(
    data_dir: Path, partitions: list[PartitionRecord]
) -> None:
    """The next task over the same files skips creating its views; a task that failed or
    was stopped closes its cursor, and what runs next is neither stopped nor wrong."""
    a, b = partitions[0], partitions[1]
    on_a, on_b = {"obj": [a.path]}, {"obj": [b.path]}
    ids = "SELECT objectId FROM obj"

    def want(p: PartitionRecord) -> list[int]:
        return sorted(pq.read_table(data_dir / p.path, columns=["objectId"])[0].to_pylist())

    def got(t: ChunkTask) -> list[int]:
        return sorted(client.run(t).read_all()[0].to_pylist())

    with LocalWorkers(data_dir, 1, memory_limit="256MB") as pool:
        client = WorkerClient(pool.locations[0])

        def idle() -> int:
            return int(client.health()["idle_cursors"])

        assert idle() == 0
        assert got(task(ids, on_a)) == want(a)
        assert _eventually(lambda: idle() == 1)
        assert got(task(ids, on_a)) == want(a)  # took the idle cursor, gave it back
        assert _eventually(lambda: idle() == 1)
        assert got(task(ids, on_b)) == want(b)  # other files: a cursor of their own
        assert _eventually(lambda: idle() == 2)
        with pytest.raises(TaskError, match="Conversion Error"):
            client.run(task("SELECT CAST('x' || objectId AS INT) FROM obj", on_a)).read_all()
        assert _eventually(lambda: idle() == 1) and client.health()["running_tasks"] == 0
        slow = (
            "SELECT sum(hash(range + objectId)) FROM range(10000000000), "
            "(SELECT objectId FROM obj LIMIT 1)"
        )
        errors: list[BaseException] = []
        runner = threading.Thread(
            target=_drain, args=(client, task(slow, on_b, query_id="stop"), errors)
        )
        runner.start()
        assert _eventually(lambda: client.health()["running_tasks"] == 1 and idle() == 0)
        assert client.cancel("stop") == 1
        runner.join(10)
        assert [type(e) for e in errors] == [TaskCancelled]
        assert _eventually(lambda: client.health()["running_tasks"] == 0) and idle() == 0
        assert got(task(ids, on_b)) == want(b)
        assert got(task(ids, on_a)) == want(a)
        assert _eventually(lambda: idle() == 2)
        client.close()


def test_max_tasks_queues_extra_tasks(data_dir: Path) -> None:
    with LocalWorkers(data_dir, 1, memory_limit="256MB", max_tasks=1) as pool:
        client = WorkerClient(pool.locations[0])
        outcome: list[BaseException] = []
        blocker = threading.Thread(
            target=_drain, args=(client, task(SLOW_SQL, query_id="b"), outcome)
        )
        blocker.start()
        assert _eventually(lambda: client.health()["running_tasks"] == 1)
        # the second task waits for the only slot, and its deadline passes meanwhile
        start = time.monotonic()
        with pytest.raises(TaskTimeout, match="exceeded its deadline"):
            client.run(task("SELECT 1", deadline=time.time() + 0.5)).read_all()
        assert time.monotonic() - start < 2.0
        assert client.health()["running_tasks"] == 1
        assert client.cancel("b") == 1
        blocker.join(10)
        assert [type(e) for e in outcome] == [TaskCancelled]
        assert client.run(task("SELECT 2 AS x")).read_all()["x"].to_pylist() == [2]
        client.close()


# -- failures -------------------------------------------------------------------------------------


def test_worker_killed_mid_stream(data_dir: Path, partitions: list[PartitionRecord]) -> None:
    with LocalWorkers(data_dir, 1, memory_limit="256MB") as pool:
        client = WorkerClient(pool.locations[0])
        pid = client.health()["pid"]
        sql = "SELECT objectId, range AS k FROM obj, range(1000000000)"
        reader = client.run(task(sql, {"obj": [partitions[0].path]}))
        rows = reader.read_next_batch().num_rows
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match=pool.locations[0]):
            for batch in reader:
                rows += batch.num_rows
        with pytest.raises(WorkerUnavailable, match=pool.locations[0]):
            client.health()
        client.close()


def test_pool_reports_a_worker_that_cannot_start(data_dir: Path) -> None:
    with pytest.raises(WorkerUnavailable, match="no_such_module"):
        LocalWorkers(data_dir, 1, memory_limit="256MB", setup_sql_module="no_such_module")
    with pytest.raises(WorkerUnavailable, match="Memory must have a number"):
        LocalWorkers(data_dir, 1, memory_limit="lots")


def test_workers_exit_with_their_parent(data_dir: Path, tmp_path: Path) -> None:
    """A process that starts workers and is then SIGKILLed leaves no worker behind."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from qcat.worker.pool import LocalWorkers\n"
        f"pool = LocalWorkers(Path({str(data_dir)!r}), 2, memory_limit='256MB')\n"
        "print(' '.join(str(w.pid) for w in pool.workers), flush=True)\n"
        "time.sleep(60)\n"
    )
    import subprocess
    import sys

    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    assert parent.stdout is not None
    pids = [int(x) for x in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    # A busy machine may soon give a freed pid to another process: compare start times.
    workers = [psutil.Process(p) for p in pids]
    parent.kill()
    parent.wait()
    assert _eventually(lambda: not any(_still_running(w) for w in workers), timeout=30), pids


# -- health and inventory -------------------------------------------------------------------------


def test_health_and_inventory(
    clients: list[WorkerClient], workers: LocalWorkers, partitions: list[PartitionRecord]
) -> None:
    for client, w in zip(clients, workers.workers, strict=True):
        h = client.health()
        assert h["status"] == "ok" and h["pid"] == w.pid
        assert h["running_tasks"] == 0 and h["rss_bytes"] > 10_000_000 and h["uptime_s"] > 0
        inv = client.inventory()
        assert [t["table"] for t in inv] == [TABLE]
        (obj,) = inv
        assert obj["version"] == 1 and obj["num_rows"] == 3000
        want = [{"order": p.order, "pixel": p.pixel, "num_rows": p.num_rows} for p in partitions]
        assert obj["chunks"] == want


# -- helpers --------------------------------------------------------------------------------------


def _drain(client: WorkerClient, t: ChunkTask, errors: list[BaseException]) -> None:
    try:
        for _ in client.run(t):
            pass
    except WorkerError as e:
        errors.append(e)


def _still_running(process: psutil.Process) -> bool:
    """Whether this very process (not a later one with its pid) still runs."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _eventually(check: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False
