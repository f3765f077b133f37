"""The ``qcat`` command line."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="qcat")
def main() -> None:
    """qcat: a distributed astronomical catalog database with IVOA services."""
