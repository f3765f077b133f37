"""Terms of a query that also hold inside one of its derived tables.

``SELECT * FROM (SELECT objectId, COUNT(*) AS n FROM demo.Source GROUP BY
objectId) AS t WHERE t.objectId = 123`` asks about one object, but the key
term is the outer query's: the derived table's own WHERE is empty, so
planned alone it reads every chunk. A term about the derived table's group
keys alone holds for a whole group or for none of it, so keeping only the
rows that can pass it keeps every group the outer WHERE then keeps. Written
over the derived table's own columns, such a term prunes its chunks and
gives its row filters as its own WHERE would. The query is not changed: the
outer term still decides which rows remain. (An ungrouped derived table
keeps rows one for one, so a term on any of its columns counts.)

sqlglot's ``pushdown_predicates`` does not push into grouped subqueries,
which is the case left here: plain derived tables are written into the
query before planning (``plan._merged_subqueries``).
"""

from __future__ import annotations

from sqlglot import exp

#: What a term or a column's expression must not hold to be evaluated inside instead.
_OPAQUE = (exp.Subquery, exp.Exists, exp.Select, exp.AggFunc, exp.Window, exp.Rand)


def terms_inside(
    terms: list[exp.Expression], alias: str, select: exp.Select
) -> list[exp.Expression]:
    """Those of ``terms`` (the outer query's AND-ed terms) that are about derived table
    ``alias`` alone, on its group keys (every column when it is not grouped), each
    rewritten over ``select``'s own columns (a copy)."""
    columns = _substitutable(select)
    inside = []
    for term in terms:
        if _opaque(term):
            continue
        used = list(term.find_all(exp.Column))
        if not used or any(c.table != alias or c.name not in columns for c in used):
            continue

        def own(node: exp.Expression) -> exp.Expression:
            return columns[node.name].copy() if isinstance(node, exp.Column) else node

        inside.append(term.transform(own))
    return inside


def _substitutable(select: exp.Select) -> dict[str, exp.Expression]:
    """The output columns of ``select`` a term may be written over, by output name."""
    group = select.args.get("group")
    keys = group.expressions if group is not None else None
    out = {}
    for item in select.expressions:
        value = item.unalias()
        if (keys is None or value in keys) and not _opaque(value):
            out[item.alias_or_name] = value
    return out


def _opaque(node: exp.Expression) -> bool:
    return any(isinstance(n, _OPAQUE) for n in node.walk())
