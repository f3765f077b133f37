"""``parse_adql``: ADQL text -> a validated sqlglot tree (the czar's first stage)."""

from __future__ import annotations

from sqlglot import exp

from qcat.czar.adql import dialect as _dialect  # noqa: F401  (registers sqlglot's "adql")
from qcat.czar.adql.parser import parse_tree
from qcat.czar.adql.validate import validate


def parse_adql(text: str) -> exp.Expression:
    """Parse one ADQL 2.1 query and check it; raise :class:`AdqlSyntaxError` if invalid.

    The result is an ``exp.Select`` or a set operation (``exp.Union``,
    ``exp.Intersect``, ``exp.Except``) -- or, for ``(query) ORDER BY ...``,
    an ``exp.Subquery`` carrying ``order``/``offset`` -- with ``with_``
    holding any WITH clause; ``docs/adql.md`` describes every shape. The tree is new and
    owned by the caller.
    """
    return validate(parse_tree(text))
