"""Errors of the query pipeline, each naming what in the query is at fault."""

from __future__ import annotations

from qcat.errors import QcatError


class QueryError(QcatError):
    """A query that cannot be answered as written (the user's to fix)."""


class ResolveError(QueryError):
    """A table, column or function the query names does not exist or is ambiguous."""


class UnsupportedQuery(QueryError):
    """Valid ADQL that qcat cannot evaluate (for example a geometry it has no test for)."""
