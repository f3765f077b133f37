"""``qcat adql ...``: ADQL tools on the command line (``qcat adql check``)."""

from __future__ import annotations

import sys

import click


@click.group()
def adql() -> None:
    """ADQL tools: check a query without running it."""


@adql.command()
@click.argument("query", required=False)
@click.option("--show", is_flag=True, help="Also print the query as qcat normalises it.")
def check(query: str | None, show: bool) -> None:
    """Check that QUERY is valid ADQL 2.1, without running it.

    QUERY is read from standard input when it is '-' or left out. The exit
    status is 0 when the query is valid and 1 when it is not; the error
    names the line and column, shows the line and puts a caret under the
    offending token.

    \b
    Examples:
      qcat adql check 'SELECT TOP 10 objectId, coord_ra FROM demo.Object'
      qcat adql check --show < cone.adql
      echo "SELECT * FROM demo.Object LIMIT 5" | qcat adql check -
    """
    # Imported here so other qcat commands start without loading sqlglot.
    from qcat.czar.adql import AdqlSyntaxError, parse_adql, to_adql

    text = sys.stdin.read() if query in (None, "-") else query
    assert text is not None
    try:
        tree = parse_adql(text)
    except AdqlSyntaxError as e:
        click.echo(str(e))
        click.echo(e.excerpt(text))
        sys.exit(1)
    click.echo("valid ADQL")
    if show:
        click.echo(to_adql(tree, pretty=True))
