"""The ADQL 2.1 front end of the czar: text -> validated sqlglot tree -> text.

Public API::

    parse_adql(text) -> sqlglot.exp.Expression    # one query, validated
    to_adql(tree) -> str                          # back to ADQL text
    AdqlSyntaxError                               # line, column, message, expected
    Adql                                          # the sqlglot dialect ("adql")
    FUNCTIONS                                     # the allow-list of functions

Names are imported on first use, so importing this package (for example by
the command line) does not load sqlglot until a query is parsed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qcat.czar.adql.dialect import Adql, to_adql
    from qcat.czar.adql.errors import AdqlSyntaxError
    from qcat.czar.adql.functions import FUNCTIONS
    from qcat.czar.adql.parse import parse_adql

__all__ = ["FUNCTIONS", "Adql", "AdqlSyntaxError", "parse_adql", "to_adql"]

_HOMES = {
    "Adql": "qcat.czar.adql.dialect",
    "to_adql": "qcat.czar.adql.dialect",
    "AdqlSyntaxError": "qcat.czar.adql.errors",
    "FUNCTIONS": "qcat.czar.adql.functions",
    "parse_adql": "qcat.czar.adql.parse",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)
