"""Settings: every limit is a named setting with a default and help text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "QCAT_DATA"
DEFAULT_DATA_DIR = "qcat-data"


def resolve_data_dir(value: str | os.PathLike[str] | None) -> Path:
    """Return the data directory: ``value``, else ``$QCAT_DATA``, else ``./qcat-data``."""
    if value:
        return Path(value)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class Setting:
    """One named setting: its default and what it controls."""

    name: str
    default: int | float | str
    help: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "partition_threshold",
            1_000_000,
            "Largest number of rows one HATS partition may hold before it is split "
            "into its four children.",
        ),
        Setting(
            "highest_order",
            10,
            "Deepest HEALPix order a partition may have (order 10 pixels are ~3.4 arcmin).",
        ),
        Setting("lowest_order", 0, "Shallowest HEALPix order a partition may have."),
        Setting(
            "row_group_rows",
            0,
            "Rows per Parquet row group in table files (DuckDB prunes by row group); "
            "0: about 4 MB of column data, so wide tables get shorter groups.",
        ),
        Setting("margin_arcsec", 60.0, "Width of the margin (overlap) catalog in arcseconds."),
        Setting(
            "ingest_memory_limit",
            "2GB",
            "DuckDB memory limit while ingesting; beyond it DuckDB spills to disk.",
        ),
        Setting(
            "index_row_group_rows",
            16_384,
            "Rows per row group of the director index; a key lookup reads one group.",
        ),
        # The HTTP service (`qcat serve`, `qcat demo`; docs/service.md).
        Setting("serve_host", "127.0.0.1", "Address the HTTP service listens on."),
        Setting("serve_port", 8080, "Port the HTTP service listens on (0: any free port)."),
        Setting("serve_workers", 2, "Local worker processes `qcat serve` starts."),
        Setting(
            "serve_worker_memory_limit",
            "1GB",
            "DuckDB memory limit of each local worker process started by `qcat serve`.",
        ),
        Setting(
            "serve_czar_memory_limit",
            "2GB",
            "DuckDB memory limit of the czar (merging chunk results) in the service process.",
        ),
        Setting(
            "public_url",
            "",
            "Public base URL of the service (e.g. https://data.example.org) used in "
            "/capabilities; empty: taken from each request.",
        ),
        Setting(
            "tap_maxrec_default",
            100_000,
            "Rows a TAP query returns when the request gives no MAXREC.",
        ),
        Setting(
            "tap_maxrec_hard",
            10_000_000,
            "Largest MAXREC a TAP request may ask for; larger values are cut to it.",
        ),
        Setting(
            "tap_sync_timeout_s",
            600.0,
            "Seconds a synchronous TAP query may run before it is stopped on the workers.",
        ),
        Setting(
            "tap_retention_s",
            604_800,
            "Seconds a TAP job and its results are kept (declared in /capabilities).",
        ),
        Setting(
            "tap_client_queries",
            4,
            "Queries one client address may run at once; more are refused with HTTP 503.",
        ),
        Setting(
            "tap_max_queries",
            16,
            "Queries the service runs at once over all clients; more are refused with HTTP 503.",
        ),
        Setting(
            "tap_async_running",
            2,
            "Asynchronous TAP jobs executing at once; more wait in phase QUEUED.",
        ),
        Setting(
            "tap_execution_duration_s",
            3600,
            "Seconds an asynchronous TAP job may execute unless its EXECUTIONDURATION says less.",
        ),
        Setting(
            "tap_execution_duration_max_s",
            86_400,
            "Largest EXECUTIONDURATION a client may set for an asynchronous job (seconds).",
        ),
        Setting(
            "tap_wait_max_s",
            60.0,
            "Longest a UWS WAIT request blocks before answering with the job as it is (seconds).",
        ),
        Setting(
            "tap_upload_max_bytes",
            50_000_000,
            "Largest table (bytes of VOTable) a TAP request may upload.",
        ),
        Setting(
            "tap_upload_max_rows",
            1_000_000,
            "Most rows an uploaded TAP table may have.",
        ),
        Setting(
            "tap_max_query_chars",
            100_000,
            "Longest ADQL text (characters) a TAP request may send.",
        ),
        Setting(
            "image_authority",
            "qcat",
            "IVOA authority of image identifiers: obs_publisher_did is "
            "ivo://<authority>/<collection>?<obs_id> (set before the first image ingest).",
        ),
        Setting(
            "datalink_max_ids",
            500,
            "ID values one DataLink /datalink/links request resolves; the links of the IDs "
            "beyond it are left out and the response says QUERY_STATUS=OVERFLOW.",
        ),
        Setting(
            "large_answer_turns",
            2,
            "Large answers (SODA cutouts over 4 MiB, whole image files) producing bytes at "
            "once; the others wait, and a freed turn goes to the one asked first "
            "(see docs/soda.md).",
        ),
        Setting(
            "large_answer_patience_s",
            0.05,
            "How long one block of a large answer may hold its turn (a client reading "
            "slowly) before the next answer in line starts.",
        ),
        Setting(
            "sia_maxrec_default",
            1000,
            "Images an SIA /sia/query returns without MAXREC; more say QUERY_STATUS=OVERFLOW.",
        ),
        Setting(
            "sia_maxrec_hard",
            100_000,
            "Largest MAXREC an SIA /sia/query honours (larger values are cut to it).",
        ),
    )
}
