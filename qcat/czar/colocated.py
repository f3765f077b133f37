"""Subqueries whose answer for a row lies in that row's own chunk.

A child table's rows are stored in the chunk of their director row. So a
subquery over the child that is correlated on the key, as in

    SELECT o.objectId, (SELECT MAX(s.psFlux) FROM demo.Source s
                        WHERE s.objectId = o.objectId) FROM demo.Object o ...
    ... WHERE NOT EXISTS (SELECT 1 FROM demo.Source s
                          WHERE s.objectId = o.objectId AND s.band = 'u')

sees, for each outer row, exactly the child rows with that row's key: all
of them in the outer row's chunk. Run chunk by chunk, with the child's file
of the same chunk, it gives each row the answer it has over the whole
table, whatever else the subquery does (aggregates, IN, NOT IN, ORDER BY,
TOP): its rows are the same. The same holds the other way round (a child
row asking about its director), and for ``o.key IN (SELECT s.fk FROM child
s WHERE ...)`` as an AND-ed term of the WHERE even uncorrelated, since only
child rows with fk = key can make it true (NULL and FALSE drop the row
alike there).

Gathered instead, such a query fetches the whole child table (8 s for the
first example on the bench catalog).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from qcat.czar.catalog import TableSnapshot
from qcat.czar.constraints import conjuncts
from qcat.czar.split import has_aggregates


@dataclass(frozen=True)
class Partner:
    """The table a subquery reads, as a FROM item: its alias and table."""

    alias: str
    table: TableSnapshot


def shared_key(outer: TableSnapshot, partner: TableSnapshot) -> tuple[str, str] | None:
    """``(outer column, partner column)`` whose equal values put rows in one chunk.

    A director and its child (either way round), by the director key and the
    child's foreign key; ``None`` for any other pair.
    """
    for director, child, flipped in ((outer, partner, False), (partner, outer, True)):
        d, c = director.spec, child.spec
        if d.kind != "director" or c.kind != "child":
            continue
        if (c.director_table or "").lower() != director.name.lower():
            continue
        key = (c.director_ref_column or d.director_key or "").lower()
        fk = (c.director_fk_column or "").lower()
        if key and fk:
            return (fk, key) if flipped else (key, fk)
    return None


def answered_in_chunk(
    tree: exp.Select, sub: exp.Select, outer_alias: str, partner: Partner, key: tuple[str, str]
) -> bool:
    """Whether subquery ``sub`` of ``tree`` (FROM ``outer_alias`` alone) gives each outer
    row the same answer over that row's chunk as over the whole table.

    ``partner`` is the one table ``sub`` reads; ``key`` the pair of columns
    (outer, partner) from :func:`shared_key`.
    """
    if partner.alias == outer_alias:
        return False  # a shadowed alias: the terms could not be told apart
    if not _reads_only_its_table(sub):
        return False
    clause = _clause_of(tree, sub)
    if clause == "expressions":
        if has_aggregates(tree) or tree.args.get("distinct") or tree.args.get("group"):
            return False  # the outer query's merge would have to evaluate it
    elif clause != "where":
        return False
    outer_key = exp.column(key[0], table=outer_alias)
    partner_key = exp.column(key[1], table=partner.alias)
    for term in conjuncts(sub.args.get("where")):
        if isinstance(term, exp.EQ) and {term.this, term.expression} == {outer_key, partner_key}:
            return True  # correlated on the key: the subquery sees that key's rows only
    return _key_in_list(tree, sub, outer_key, partner_key)


def _reads_only_its_table(sub: exp.Select) -> bool:
    """One table in FROM, no join, no set operation, no subquery or CTE of its own."""
    if sub.args.get("joins") or sub.args.get("with_"):
        return False
    source = sub.args.get("from_")
    if source is None or not isinstance(source.this, exp.Table):
        return False
    return not any(
        isinstance(n, (exp.Select, exp.SetOperation, exp.Subquery)) and n is not sub
        for n in sub.walk()
    )


def _clause_of(tree: exp.Select, sub: exp.Select) -> str | None:
    """The argument of ``tree`` holding ``sub`` (``where``, ``expressions``, ...)."""
    node: exp.Expr = sub
    while node.parent is not None and node.parent is not tree:
        node = node.parent
    return node.arg_key if node.parent is tree else None


def _key_in_list(
    tree: exp.Select, sub: exp.Select, outer_key: exp.Column, partner_key: exp.Column
) -> bool:
    """``outer.key IN (SELECT partner.fk ...)`` as an AND-ed term of the WHERE.

    Only partner rows whose fk equals the key can make the term true, and
    they share the outer row's chunk; a NULL the others might add only turns
    FALSE into NULL, which drops the row the same way.
    """
    holder = sub.parent
    if not isinstance(holder, exp.Subquery) or not isinstance(holder.parent, exp.In):
        return False
    term = holder.parent
    if term.this != outer_key or not any(t is term for t in conjuncts(tree.args.get("where"))):
        return False
    if len(sub.expressions) != 1 or sub.expressions[0].unalias() != partner_key:
        return False
    if any(sub.args.get(k) for k in ("limit", "offset", "order")):
        return False
    group = sub.args.get("group")
    if group is not None and list(group.expressions) != [partner_key]:
        return False  # groups other than by the key mix chunks
    return group is not None or not has_aggregates(sub)
