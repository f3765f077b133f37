"""Uncorrelated ``x IN (SELECT ...)`` subqueries, answered before the query they filter.

Asking for the light curves of the objects in a cone is often written
``SELECT ... FROM demo.Source s WHERE s.objectId IN (SELECT objectId FROM
demo.Object WHERE CONTAINS(...) = 1)``. As a whole such a query is gathered,
which reads the child table everywhere. But the subquery does not refer to
the outer query, so its answer is the same for every row: the engine runs
it first and, when it gives at most :data:`MAX_INLINED_VALUES` distinct
integers or strings, writes them into the query as a list (``s.objectId IN
(1, 2, ...)``). The planner then treats that like any key list (the
director index picks the chunks, a key filter the row groups). A larger or
otherwise typed answer leaves the subquery in place, and the query is
gathered as before: slower, never wrong.

Only AND-ed terms of the outermost WHERE are rewritten: there a NULL in the
list and a missing one filter alike (NULL and FALSE both drop the row), and
nothing negates the term.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import build_scope

from qcat.czar.constraints import conjuncts
from qcat.czar.resolve import OutputColumn, ResolvedQuery, qualified_name

#: The most distinct values written into a query in place of its IN subquery.
MAX_INLINED_VALUES = 10_000


@dataclass(frozen=True)
class InSubquery:
    """One ``x IN (SELECT ...)`` term the engine may answer first."""

    term: exp.In
    #: the subquery alone, as a query of its own (a copy: planning it tags its nodes)
    query: ResolvedQuery


def in_subqueries(resolved: ResolvedQuery) -> list[InSubquery]:
    """The uncorrelated IN subqueries among the AND-ed terms of the outermost WHERE.

    A subquery qualifies when it names no column of the outer query and
    reads catalog tables only (not a WITH query of the outer one).
    """
    tree = resolved.tree
    if not isinstance(tree, exp.Select) or tree.args.get("with_"):
        return []
    root = build_scope(tree)
    if root is None:
        return []
    standalone = {id(s.expression) for s in root.subquery_scopes if not s.is_correlated_subquery}
    found = []
    for term in conjuncts(tree.args.get("where")):
        subquery = term.args.get("query") if isinstance(term, exp.In) else None
        select = subquery.this if isinstance(subquery, exp.Subquery) else None
        if (
            isinstance(term, exp.In)
            and isinstance(select, exp.Select)
            and id(select) in standalone
            and len(select.expressions) == 1
            and all(qualified_name(t) in resolved.tables for t in select.find_all(exp.Table))
        ):
            column = OutputColumn(select.expressions[0].alias_or_name)
            query = ResolvedQuery(select.copy(), resolved.tables, (column,))
            found.append(InSubquery(term, query))
    return found


def run_first_note(subqueries: list[InSubquery]) -> str | None:
    """What a plan made without running ``subqueries`` says about them (None: none)."""
    if not subqueries:
        return None
    return (
        f"{len(subqueries)} IN subquery(ies) run first when the query runs; at most "
        f"{MAX_INLINED_VALUES:,} integer or string values then replace each (plan below: "
        "the query as written)"
    )


def inlinable(values: Iterable[object]) -> set[int | str] | None:
    """``values`` without NULLs, if all are integers or all strings and there are
    at most :data:`MAX_INLINED_VALUES` distinct ones; else None."""
    out: set[int | str] = set()
    kind: type | None = None
    for value in values:
        if value is None:
            continue
        # bool is an int in Python, but TRUE is no key; floats are compared inexactly.
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return None
        if kind is not None and type(value) is not kind:
            return None
        kind = type(value)
        out.add(value)
        if len(out) > MAX_INLINED_VALUES:
            return None
    return out


def write_in(sub: InSubquery, values: set[int | str]) -> None:
    """Replace the subquery of ``sub`` by the list ``values`` (no values: FALSE)."""
    if not values:
        sub.term.replace(exp.false())
        return
    listed = [
        exp.Literal.string(v) if isinstance(v, str) else exp.Literal.number(str(v))
        for v in sorted(values, key=lambda v: (isinstance(v, str), v))
    ]
    sub.term.replace(exp.In(this=sub.term.this, expressions=listed))
