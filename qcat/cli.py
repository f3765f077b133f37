"""The ``qcat`` command line (DESIGN.md section 7).

Errors users can cause (:class:`qcat.errors.QcatError`) are printed as one
message naming the file, row, column or option at fault, with exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from qcat.cli_options import data_option, setting_option
from qcat.config import resolve_data_dir
from qcat.errors import QcatError

F = TypeVar("F", bound=Callable[..., Any])


def _reports_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except QcatError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: the published data is unchanged", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="qcat")
def main() -> None:
    """qcat: a distributed astronomical catalog database with IVOA services."""


@main.command()
@data_option
@click.option(
    "--schema",
    "schema",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Felis YAML file describing the table.",
)
@click.option("--table", "table", required=True, help="Table name, TAP style: schema.table.")
@click.option(
    "--attach",
    "attach",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve an existing HATS catalog directory without rewriting it.",
)
@click.option("--ra", help="Right ascension column (overrides the schema).")
@click.option("--dec", help="Declination column (overrides the schema).")
@click.option("--key", help="Director key column (overrides the schema's primary key).")
@click.option("--director", help="Director table of a child table (schema.table).")
@click.option(
    "--director-key", "director_key", help="Column of this table holding the director key."
)
@click.option(
    "--orphans",
    type=click.Choice(["reject", "keep"]),
    default="reject",
    show_default=True,
    help="Child rows whose director row does not exist: reject the ingest, or keep "
    "them placed by their own position.",
)
@click.option(
    "--key-index",
    "key_index",
    is_flag=True,
    help="Also index a child table's own primary key, so a lookup by it (WHERE sourceId = N) "
    "reads one chunk instead of every chunk; costs a sort of the key at ingest (the demo "
    "Source: about a third more time). Later ingests keep the index. Without FILES it "
    "indexes the published table as it is.",
)
@setting_option("--threshold", "partition_threshold", int)
@setting_option("--highest-order", "highest_order", int)
@setting_option("--margin-arcsec", "margin_arcsec", float)
@setting_option("--row-group-rows", "row_group_rows", click.IntRange(min=0))
@setting_option("--memory-limit", "ingest_memory_limit")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@_reports_errors
def ingest(
    data: Path | None,
    schema: Path | None,
    table: str,
    attach: Path | None,
    ra: str | None,
    dec: str | None,
    key: str | None,
    director: str | None,
    director_key: str | None,
    orphans: str,
    key_index: bool,
    threshold: int,
    highest_order: int,
    margin_arcsec: float,
    row_group_rows: int,
    memory_limit: str,
    quiet: bool,
    files: tuple[Path, ...],
) -> None:
    """Load FILES (Parquet, CSV, FITS, VOTable) into a table, as one transaction.

    The new data becomes visible at one commit or not at all; inputs already
    ingested into the table are skipped, so re-running is harmless.

    \b
    Examples:
      qcat ingest --data ./qcat-data --schema demo.yaml --table demo.Object obj-*.parquet
      qcat ingest --schema demo.yaml --table demo.Source src.csv --orphans keep
      qcat ingest --schema demo.yaml --table demo.Source src-*.parquet --key-index
      qcat ingest --table demo.Source --key-index     # index the published rows
      qcat ingest --table survey.stars stars.fits --ra RA_ICRS --dec DE_ICRS --key id
      qcat ingest --attach /archive/gaia_dr3_hats --table gaia.source
    """
    from partition.ingest import IngestOptions, ingest_table
    from qcat.errors import ConfigError
    from qcat.tap_schema import TAP_SCHEMA, refresh_tap_schema

    data_dir = resolve_data_dir(data)
    if table.split(".")[0].strip('"').upper() == TAP_SCHEMA:
        raise ConfigError(
            f"--table {table}: the {TAP_SCHEMA} tables are generated from the other tables' "
            "metadata and cannot be ingested"
        )
    options = IngestOptions(
        threshold=threshold,
        highest_order=highest_order,
        margin_arcsec=margin_arcsec,
        row_group_rows=row_group_rows,
        memory_limit=memory_limit,
        orphans="keep" if orphans == "keep" else "reject",
        child_key_index=key_index,
        show_progress=not quiet,
    )
    if attach is not None:
        from partition.attach import attach_catalog

        if files:
            raise ConfigError("--attach takes no FILES")
        result = attach_catalog(
            data_dir, attach, table, schema_path=schema, key=key, options=options
        )
    else:
        if not files and not key_index:
            raise ConfigError("give at least one input FILE (or --attach DIR)")
        # --key-index without FILES indexes the published table's own key.
        spec = _table_spec(data_dir, schema, table, files[0] if files else None, ra, dec, key)
        spec = spec.with_overrides(
            ra=ra if schema else None,
            dec=dec if schema else None,
            key=key if schema else None,
            director=director,
            director_fk=director_key,
        )
        for note in spec.notes:
            click.echo(f"inferred: {note}", err=True)
        result = ingest_table(data_dir, spec, list(files), options)
    # A running service sees the new table in TAP_SCHEMA at its next query.
    refresh_tap_schema(data_dir)
    for path in result.skipped_inputs:
        click.echo(f"skipped (already ingested): {path}", err=True)
    for note in result.notes:
        click.echo(note, err=True)
    v = result.version
    if v is not None:
        click.echo(
            f"{result.table}: version {v.version}, {v.num_rows:,} rows in "
            f"{v.num_partitions} partitions ({result.rows_added:,} rows added)"
        )


@main.command("ingest-images")
@data_option
@click.option(
    "--collection",
    required=True,
    help="Collection the images belong to (obs_collection; part of their identifiers).",
)
@click.option("--strict", is_flag=True, help="Fail (ingesting nothing) if any file is unusable.")
@click.option("--facility", help="facility_name of every image (default: the TELESCOP keyword).")
@click.option(
    "--instrument", help="instrument_name of every image (default: the INSTRUME keyword)."
)
@setting_option("--authority", "image_authority")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_reports_errors
def ingest_images_command(
    data: Path | None,
    collection: str,
    strict: bool,
    facility: str | None,
    instrument: str | None,
    authority: str,
    quiet: bool,
    inputs: tuple[Path, ...],
) -> None:
    """Ingest FITS images (files, or directories of them) into ivoa.ObsCore.

    Reads each file's headers (celestial WCS of any kind astropy understands,
    converted to ICRS; filter; times), computes its footprint, copies it to
    DATA/images/COLLECTION/ and adds its ObsCore row, all in one transaction.
    Files without a usable WCS are skipped and named (--strict: the ingest
    fails and nothing changes); images ingested before are skipped.

    \b
    Examples:
      qcat ingest-images --data ./qcat-data --collection demo images/
      qcat ingest-images --collection hsc --facility Subaru --instrument HSC a.fits b.fits.gz
      qcat ingest-images --collection survey --strict /archive/night-42/
    """
    from partition.images import ingest_images
    from qcat.tap_schema import refresh_tap_schema

    data_dir = resolve_data_dir(data)
    result = ingest_images(
        data_dir,
        collection,
        list(inputs),
        strict=strict,
        facility=facility,
        instrument=instrument,
        authority=authority,
        show_progress=not quiet,
    )
    if result.rows_added:
        refresh_tap_schema(data_dir)
    for skipped in result.skipped:
        click.echo(f"skipped: {skipped.path}: {skipped.reason}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    v = result.version
    total = f"; ivoa.ObsCore version {v.version} has {v.num_rows:,} images" if v else ""
    click.echo(f"{collection}: {result.rows_added} image(s) added{total}")


def _table_spec(
    data_dir: Path,
    schema: Path | None,
    table: str,
    first: Path | None,
    ra: str | None,
    dec: str | None,
    key: str | None,
) -> Any:
    from partition.readers import read_schema
    from qcat.errors import ConfigError
    from qcat.schema import infer_spec, spec_from_felis

    if schema is not None:
        return spec_from_felis(schema, table)
    existing = _existing_spec(data_dir, table)
    if existing is not None:
        return existing
    if first is None:
        raise ConfigError(f"--table {table}: no such table in {data_dir} to index; give FILES")
    return infer_spec(read_schema(first), table, ra=ra, dec=dec, key=key)


def _existing_spec(data_dir: Path, table: str) -> Any:
    from qcat.errors import NotFoundError
    from qcat.metadata.store import MetadataStore

    if not (data_dir / "qcat.sqlite").exists():
        return None
    store = MetadataStore.for_data_dir(data_dir)
    try:
        return store.table(table).spec
    except NotFoundError:
        return None
    finally:
        store.close()


#: ``--set NAME=VALUE`` of ``qcat serve`` and ``qcat demo``: the service's limits.
service_settings_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set one of the service's named settings (repeatable), e.g. --set "
    "tap_client_queries=16 --set public_url=https://data.example.org; "
    "they are listed in docs/service.md.",
)


@main.command()
@data_option
@setting_option("--host", "serve_host")
@setting_option("--port", "serve_port", int)
@setting_option("--workers", "serve_workers", int)
@setting_option("--worker-memory-limit", "serve_worker_memory_limit")
@service_settings_option
@_reports_errors
def serve(
    data: Path | None,
    host: str,
    port: int,
    workers: int,
    worker_memory_limit: str,
    assignments: tuple[str, ...],
) -> None:
    """Serve the tables of the data directory over HTTP: TAP (/tap) and /healthz.

    Starts --workers local worker processes and the TAP service, prints the
    TAP URL and serves until Ctrl-C or SIGTERM, which stop the workers too.
    Every query is logged to DATA/logs/queries.jsonl.

    \b
    Examples:
      qcat serve --data ./qcat-data                  # http://127.0.0.1:8080/tap
      qcat serve --data /srv/qcat --host 0.0.0.0 --port 80 --workers 8
      qcat serve --port 0                            # any free port (printed)
      qcat serve --set public_url=https://data.example.org --set tap_client_queries=8
    """
    from services.server import serve_data_dir
    from services.settings import ServiceSettings

    settings = ServiceSettings.assigned(assignments)  # checked before anything starts
    serve_data_dir(
        resolve_data_dir(data),
        host=host,
        port=port,
        workers=workers,
        worker_memory_limit=worker_memory_limit,
        announce=lambda url: _announce(f"qcat TAP service at {url} (Ctrl-C stops it)"),
        settings=settings,
    )
    click.echo("stopped: workers shut down", err=True)


def _announce(text: str) -> None:
    click.echo(text)
    sys.stdout.flush()


@main.command()
@data_option
@click.option(
    "--objects",
    type=int,
    default=100_000,
    show_default=True,
    help="Number of Object rows (about 10 Source rows each).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@setting_option("--threshold", "partition_threshold", int)
@setting_option("--host", "serve_host")
@setting_option("--port", "serve_port", int)
@setting_option("--workers", "serve_workers", int)
@setting_option("--worker-memory-limit", "serve_worker_memory_limit")
@click.option(
    "--images/--no-images",
    default=True,
    show_default=True,
    help="Also render FITS images of the catalog's stars and ingest them into ivoa.ObsCore "
    "(SIA, SODA, DataLink).",
)
@click.option("--no-serve", is_flag=True, help="Only generate and ingest the data; do not serve.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@service_settings_option
@_reports_errors
def demo(
    data: Path | None,
    objects: int,
    seed: int,
    threshold: int,
    host: str,
    port: int,
    workers: int,
    worker_memory_limit: str,
    images: bool,
    no_serve: bool,
    quiet: bool,
    assignments: tuple[str, ...],
) -> None:
    """Generate the demo survey (catalog and images), ingest it and serve it over TAP and SIA.

    The catalog is demo.Object + demo.Source; the images (--images, the
    default) are 60 FITS files of five fields in ugrizy showing the catalog's
    stars, in ivoa.ObsCore as collection "demo". Data already generated and
    ingested by an earlier run is reused. The service then runs like `qcat
    serve` (Ctrl-C stops it) and prints how to query it from pyvo and TOPCAT.

    \b
    Examples:
      qcat demo                       # 100k objects, ~1M sources into ./qcat-data, then serve
      qcat demo --port 9000           # serve at http://127.0.0.1:9000/tap
      qcat demo --objects 10000000 --data /big/qcat-data --no-serve --no-images
    """
    from qcat.demo_service import demo_instructions, run_demo
    from services.settings import ServiceSettings

    settings = ServiceSettings.assigned(assignments)  # checked before the data is made
    data_dir = resolve_data_dir(data)
    rendered = run_demo(
        data_dir,
        objects=objects,
        seed=seed,
        threshold=threshold,
        images=images,
        show_progress=not quiet,
    )
    if no_serve:
        return
    from services.server import serve_data_dir

    serve_data_dir(
        data_dir,
        host=host,
        port=port,
        workers=workers,
        worker_memory_limit=worker_memory_limit,
        announce=lambda url: _announce(demo_instructions(url, rendered)),
        settings=settings,
    )
    click.echo("stopped: workers shut down", err=True)


@main.group()
def admin() -> None:
    """Operator commands: verify stored data, list tables and ingests."""


@admin.command()
@data_option
@click.option("--table", help="Verify only this table (schema.table).")
@_reports_errors
def verify(data: Path | None, table: str | None) -> None:
    """Check every file of the published tables against its recorded checksum.

    Exit status 0 when all files are intact, 1 when any is missing or changed.

    \b
    Example:
      qcat admin verify --data ./qcat-data
    """
    from partition.verify import verify_data_dir

    report = verify_data_dir(resolve_data_dir(data), table)
    for problem in report.problems:
        click.echo(f"BAD {problem}")
    click.echo(f"{report.files_checked} files checked, {len(report.problems)} problem(s)")
    if report.problems:
        sys.exit(1)


@admin.command()
@data_option
@_reports_errors
def tables(data: Path | None) -> None:
    """List the tables with their current version, rows and partitions."""
    from qcat.metadata.store import MetadataStore

    store = MetadataStore.for_data_dir(resolve_data_dir(data))
    try:
        for t in store.tables():
            v = store.current_version(t.name)
            if v is None:
                click.echo(f"{t.name}\t{t.kind}\t(no data)")
            else:
                click.echo(
                    f"{t.name}\t{t.kind}\tversion {v.version}\t{v.num_rows} rows\t"
                    f"{v.num_partitions} partitions"
                )
    finally:
        store.close()


@admin.command()
@data_option
@click.option("--table", help="Only this table.")
@_reports_errors
def ingests(data: Path | None, table: str | None) -> None:
    """List ingest transactions with their status."""
    from qcat.metadata.store import MetadataStore

    store = MetadataStore.for_data_dir(resolve_data_dir(data))
    try:
        for rec in store.ingests(table):
            click.echo(
                f"{rec.id}\t{rec.table}\t{rec.operation}\t{rec.status}\t"
                f"{rec.started_at:%Y-%m-%d %H:%M:%S}\t{rec.message or ''}"
            )
    finally:
        store.close()


# Commands defined beside the code they drive; errors are reported the same way.
from qcat.czar.adql.cli import adql  # noqa: E402
from qcat.czar.cli import explain, query  # noqa: E402
from qcat.worker.cli import worker  # noqa: E402

for _command in (query, explain):
    assert _command.callback is not None
    _command.callback = _reports_errors(_command.callback)
adql.add_command(explain)
main.add_command(adql)
main.add_command(query)
main.add_command(worker)
