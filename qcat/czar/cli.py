"""``qcat query``: run one ADQL query from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from qcat.cli_options import data_option
from qcat.config import resolve_data_dir


@click.command()
@click.argument("query")
@data_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the result to this file (.parquet, .csv, .tsv, .fits, .vot).",
)
@click.option(
    "--workers",
    type=int,
    default=2,
    show_default=True,
    help="Local worker processes to start for the query.",
)
@click.option(
    "--max-rows",
    type=int,
    default=50,
    show_default=True,
    help="Rows shown on the terminal (all rows go to --output).",
)
@click.option("--memory-limit", default="1GB", show_default=True, help="Memory limit per worker.")
def query(
    query: str,
    data: Path | None,
    output: Path | None,
    workers: int,
    max_rows: int,
    memory_limit: str,
) -> None:
    """Run the ADQL QUERY over the tables of the data directory.

    Starts local worker processes, runs the query through the czar and
    prints the result as a table, or writes it to --output. QUERY '-' reads
    the query from standard input.

    \b
    Examples:
      qcat query --data ./qcat-data 'SELECT COUNT(*) FROM demo.Object'
      qcat query 'SELECT TOP 10 objectId, coord_ra, coord_dec FROM demo.Object
                  WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -29.0, 0.1)) = 1'
      qcat query 'SELECT * FROM demo.Source WHERE objectId = 68719476744' -o lc.fits
    """
    from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
    from qcat.worker.pool import LocalWorkers
    from services.tap.formats import ResultInfo, format_for_path, write_result_file

    text = sys.stdin.read() if query == "-" else query
    data_dir = resolve_data_dir(data)
    if output is not None:
        format_for_path(output)
    with LocalWorkers(
        data_dir, workers, memory_limit=memory_limit, setup_sql_module=WORKER_SETUP_MODULE
    ) as pool:
        engine = QueryEngine(data_dir, pool.locations)
        try:
            result = engine.execute(text)
            try:
                if output is not None:
                    info = ResultInfo(query=text, query_id=result.query_id)
                    rows = write_result_file(result.reader, result.columns, output, info=info)
                    click.echo(f"{rows:,} rows written to {output}", err=True)
                else:
                    _print_table(result.reader, [c.name for c in result.columns], max_rows)
            finally:
                result.close()
        finally:
            engine.close()


def _print_table(reader: object, names: list[str], max_rows: int) -> None:
    import pyarrow as pa
    from rich.console import Console
    from rich.table import Table

    assert isinstance(reader, pa.RecordBatchReader)
    shown = Table(*names)
    rows = 0
    for batch in reader:
        for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            if rows < max_rows:
                shown.add_row(*("" if v is None else str(v) for v in row))
            rows += 1
    console = Console()
    console.print(shown)
    more = f" (first {max_rows} shown)" if rows > max_rows else ""
    console.print(f"{rows:,} rows{more}")


@click.command()
@click.argument("query")
@data_option
def explain(query: str, data: Path | None) -> None:
    """Print the plan of QUERY: its shape, the chunks it touches, per-chunk and merge SQL.

    \b
    Example:
      qcat adql explain --data ./qcat-data 'SELECT COUNT(*) FROM demo.Object
          WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(10, 20, 1)) = 1'
    """
    from qcat.czar.adql import parse_adql
    from qcat.czar.catalog import CatalogSnapshot
    from qcat.czar.plan import plan
    from qcat.czar.resolve import resolve
    from qcat.czar.semijoin import run_first_note, run_first_subqueries

    text = sys.stdin.read() if query == "-" else query
    data_dir = resolve_data_dir(data)
    resolved = resolve(parse_adql(text), CatalogSnapshot.for_data_dir(data_dir))
    first = run_first_note(run_first_subqueries(resolved))
    query_plan = plan(resolved, data_dir)
    click.echo(f"shape: {query_plan.shape}")
    for note in (first, *query_plan.notes) if first else query_plan.notes:
        click.echo(f"  {note}")
    for cq in query_plan.chunk_queries:
        chunks = ", ".join(f"{o}/{p}" for o, p in (t.key for t in cq.tasks[:20]))
        more = " ..." if len(cq.tasks) > 20 else ""
        click.echo(
            f"\nchunk query {cq.name} on {len(cq.tasks)} chunk(s) (order/pixel: {chunks}{more}):"
        )
        click.echo(f"  {cq.sql}")
    click.echo(f"\nmerge:\n  {query_plan.merge_sql}")
