"""Command-line options shared by the commands of ``qcat`` (defined once, used everywhere)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from qcat.config import SETTINGS

data_option = click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: $QCAT_DATA, else ./qcat-data).",
)


def setting_option(flag: str, setting: str, kind: Any = None) -> Callable[[Any], Any]:
    """``flag`` as an option whose default and help come from the named setting."""
    return click.option(
        flag,
        type=kind,
        default=SETTINGS[setting].default,
        show_default=True,
        help=SETTINGS[setting].help,
    )
