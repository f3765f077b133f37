"""Plan: decide how a resolved query runs over the chunks, and write its SQL.

Two shapes (see ``docs/query-engine.md``):

- **chunk-local**: one SELECT over one partitioned table, or over a director
  and its child joined on the director key (rows of one director and all its
  children share a chunk), or a table joined with itself within a radius no
  larger than its margin (each chunk read with its margin), plus any small
  unpartitioned tables (broadcast to every task). Each chunk answers the
  query on its own rows; :mod:`qcat.czar.split` makes the per-chunk and the
  merge queries.
- **gather**: anything else (subqueries, set operations, WITH, other joins).
  Every table reference is fetched from the workers with the columns the
  query uses and the conditions that only concern it (so spatial and key
  pruning still apply), and the czar's DuckDB runs the whole query on them.
  Slower, but exact for every query.

Both shapes prune chunks with :mod:`qcat.czar.constraints` and add its row
filter (a few ``_healpix_29`` ranges of a region, a declination band for
circles) to the per-chunk SQL so Parquet row groups and rows outside the
region are skipped before the exact test. A chunk-local query left with one
task, or one that reads only unpartitioned tables, runs whole on one task;
a plan whose merge only renames columns is marked
``passthrough`` so the engine streams the chunk results straight out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.merge_subqueries import merge_subqueries
from sqlglot.optimizer.scope import Scope, traverse_scope

from partition.director_index import DirectorIndex, KeyLocation
from partition.hats_writer import HEALPIX_COLUMN
from partition.layout import Partition
from partition.margins import (
    ARCSEC_RAD,
    NEIGHBOURHOOD_REACH,
    neighbourhood_ranges,
    points_reach_ranges,
)
from qcat.czar.catalog import Chunk, TableSnapshot
from qcat.czar.colocated import Partner, answered_in_chunk, shared_key
from qcat.czar.constants import constant_number
from qcat.czar.constraints import (
    DEC_SLACK,
    TableConstraints,
    conjuncts,
    constraints_for,
    dec_band_filter,
    healpix_condition,
    own_key_column,
    row_filter,
)
from qcat.czar.errors import QueryError
from qcat.czar.pushdown import terms_inside
from qcat.czar.resolve import ResolvedQuery, qualified_name
from qcat.czar.split import CHUNKS, NotSplittable, has_aggregates, split, splits_as_is
from qcat.czar.statistics import chunks_within, column_bounds
from qcat.czar.translate import to_duckdb
from qcat.geometry import Circle, Region, bounding_circle, contains_sql, regions_intersect
from qcat.geometry.radec_box import box_is_valid, near_box, ra_arc_around
from qcat.geometry.sql import literal

REF = "qcat_ref"
#: ``meta`` key of a derived table's SELECT that chunks compute: its table's ref index.
DERIVED = "qcat_derived"


@dataclass(frozen=True)
class Task:
    """One chunk task: the files bound to each relation of the chunk query.

    ``sql``: this task's own statement, when it differs from the chunk
    query's by conditions that only narrow what the task reads (a
    crossmatch's neighbourhood of its chunk); None runs the chunk query's.
    """

    key: tuple[int, int]
    relations: dict[str, list[str]]
    sql: str | None = None


@dataclass(frozen=True)
class ChunkQuery:
    """One SQL statement run on many chunks; the czar sees the union as ``name``.

    ``inputs`` give, for every relation of ``sql``, the table whose Arrow
    schema it has (used to run ``sql`` on empty inputs for the result schema
    when there is no task to tell it). ``batchable``: ``sql`` gives the same
    rows over the files of several tasks bound together as over each task
    apart, so one worker may run all its tasks as one. ``anywhere``: the
    tasks read only unpartitioned tables, which every worker can read, so
    the engine picks their worker by query (spreading such queries over the
    workers) rather than by chunk.
    """

    name: str
    sql: str
    inputs: dict[str, TableSnapshot]
    tasks: tuple[Task, ...]
    materialize: bool
    batchable: bool = True
    anywhere: bool = False

    def __post_init__(self) -> None:
        if self.batchable and any(t.sql is not None for t in self.tasks):
            raise ValueError("tasks with their own SQL cannot be bound together")


@dataclass(frozen=True)
class QueryPlan:
    """Chunk queries, then a merge query over their results.

    ``passthrough``: the merge only renames the columns of the one chunk
    query's result (positionally, to the output names), so its rows can
    stream straight out without the czar's DuckDB.
    """

    shape: str
    chunk_queries: tuple[ChunkQuery, ...]
    merge_sql: str
    notes: tuple[str, ...] = ()
    passthrough: bool = False


@dataclass
class _Ref:
    """One table reference of the query (a FROM item naming a catalog table)."""

    index: int
    node: exp.Table
    table: TableSnapshot
    alias: str
    terms: list[exp.Expression] = field(default_factory=list)

    @property
    def relation(self) -> str:
        return f"r{self.index}"


def plan(resolved: ResolvedQuery, data_dir: Path, *, whole_query: bool = True) -> QueryPlan:
    """The plan of ``resolved``; ``data_dir`` holds the director indexes.

    With ``whole_query``, a chunk-local query that needs one task only, and
    a query that reads only unpartitioned tables, runs whole on one task (no
    merge); without, the first is split like any other and the second is
    gathered. The table nodes of ``resolved.tree`` are tagged (``meta``)
    with their reference index; every SQL tree is built on a copy, except
    that a single task running the whole query translates ``resolved.tree``
    itself (the plan is its last user).
    """
    tree = resolved.tree
    refs = _table_refs(tree, resolved)
    if whole_query and refs and not any(r.table.partitioned for r in refs):
        return _unpartitioned(tree, refs, resolved)
    # Subqueries written in first: their terms then prune like the query's own.
    written_in, shape = None, None
    merged = _merged_subqueries(tree, resolved)
    if merged is not None:
        written_in, refs, shape = merged
    else:
        shape = _chunk_local_shape(tree, refs)
    if shape is not None:
        local = written_in if written_in is not None else tree
        assert isinstance(local, exp.Select)  # only a single SELECT is chunk-local
        try:
            query_plan = _chunk_local(local, refs, shape, resolved, data_dir, whole_query)
        except NotSplittable:
            pass  # e.g. DISTINCT aggregates over two values: gathered, exact and slower
        else:
            if written_in is None:
                return query_plan
            note = "subqueries (WITH, FROM) written into the query, which is then chunk-local"
            return replace(query_plan, notes=(note, *query_plan.notes))
        refs = _table_refs(tree, resolved)  # the tags of the tree gathered
    return _gather(tree, refs, resolved, data_dir)


def _merged_subqueries(
    tree: exp.Expression, resolved: ResolvedQuery
) -> tuple[exp.Expression, list[_Ref], _Shape] | None:
    """``tree`` with its simple CTEs and derived tables written into it, when that makes
    it chunk-local; its references and shape.

    ``WITH c AS (SELECT objectId FROM Object WHERE <cone>) SELECT ... FROM Source s
    JOIN c ON ...`` is a director-child join in disguise: as written it would be
    gathered, fetching the whole of Source. sqlglot's ``merge_subqueries`` writes
    a subquery into the query that reads it when that cannot change the answer
    (not with aggregates, DISTINCT, LIMIT, window functions, or under an outer
    join where it would, ...). The ADQL as resolved is untouched.
    """
    if not isinstance(tree, exp.Select):
        return None
    if not tree.args.get("with_") and all(isinstance(i, exp.Table) for i in _from_items(tree)):
        return None  # no CTE or derived table of the query's own (found without a walk)
    merged = merge_subqueries(_ctes_as_derived_tables(tree.copy()))
    if merged == tree:
        return None  # nothing could be written in
    refs = _table_refs(merged, resolved)
    shape = _chunk_local_shape(merged, refs)
    return None if shape is None else (merged, refs, shape)


def _ctes_as_derived_tables(tree: exp.Expression) -> exp.Expression:
    """``tree`` with each CTE that the main query reads once, and nothing else reads,
    written as a derived table where it is read (the same thing without recursion,
    which ADQL has not). sqlglot then merges what it can, and the planner computes
    the rest chunk by chunk when it may (:func:`_derived_tables`)."""
    if not isinstance(tree, exp.Select) or not tree.args.get("with_"):
        return tree
    uses: dict[str, list[exp.Table]] = {}
    for table in tree.find_all(exp.Table):
        if not table.db:
            uses.setdefault(table.name, []).append(table)
    main_items = {id(i) for i in _from_items(tree)}
    kept = []
    for cte in tree.args["with_"].expressions:
        found = uses.get(cte.alias_or_name, [])
        if len(found) == 1 and id(found[0]) in main_items and isinstance(cte.this, exp.Select):
            table = found[0]
            table.replace(
                exp.Subquery(
                    this=cte.this, alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name))
                )
            )
        else:
            kept.append(cte)
    if kept:
        tree.args["with_"].set("expressions", kept)
    else:
        tree.set("with_", None)
    return tree


def _from_items(select: exp.Select) -> list[exp.Expression]:
    """The FROM item and joined items of ``select``."""
    source = select.args.get("from_")
    items = [source.this] if source is not None else []
    return items + [j.this for j in select.args.get("joins") or []]


# -- table references ---------------------------------------------------------------


def _table_refs(tree: exp.Expression, resolved: ResolvedQuery) -> list[_Ref]:
    refs: list[_Ref] = []
    for node in tree.find_all(exp.Table):
        name = qualified_name(node)
        if name not in resolved.tables:
            continue  # a CTE
        node.meta[REF] = len(refs)
        refs.append(_Ref(len(refs), node, resolved.tables[name], node.alias_or_name))
    return refs


def _unit_of(resolved: ResolvedQuery, refs: list[_Ref]) -> dict[tuple[str, str], str]:
    units: dict[tuple[str, str], str] = {}
    for ref in refs:
        for c in ref.table.spec.columns:
            if c.unit:
                units[(ref.alias, c.name.lower())] = c.unit
    return units


def _translate(
    node: exp.Expression, units: dict[tuple[str, str], str], *, copy: bool = True
) -> exp.Expression:
    def unit_of(e: exp.Expression) -> str | None:
        return units.get((e.table, e.name)) if isinstance(e, exp.Column) else None

    return to_duckdb(node, unit_of, copy=copy)


# -- chunk-local ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """How the partitioned references of a chunk-local query relate."""

    kind: str  # "single", "director-child", "neighbours", "crossmatch"
    driver: int  # the reference whose chunks define the tasks
    #: neighbours: the reference read with its margin; crossmatch: the other
    #: director table, read in each driver chunk's neighbourhood
    margin: int | None = None
    radius: float = 0.0  # the match radius in degrees (neighbours, crossmatch)


def _chunk_local_shape(tree: exp.Expression, refs: list[_Ref]) -> _Shape | None:
    if not isinstance(tree, exp.Select) or tree.args.get("with_"):
        return None
    derived = _derived_tables(tree, refs)
    if derived is None:
        return None
    inside = {id(n) for d in derived for n in d.select.walk()}
    if any(
        isinstance(n, (exp.Subquery, exp.Exists)) and id(n.this) not in inside
        for n in tree.walk()
        if n is not tree and id(n) not in inside
    ):
        return None if derived else _colocated_subqueries(tree, refs)
    if derived:
        # The query sees each derived table as its table's rows, under the derived alias.
        seen = [r for r in refs if r.node.parent_select is tree]
        refs = seen + [replace(d.ref, alias=d.alias) for d in derived]
    partitioned = [r for r in refs if r.table.partitioned]
    if len(partitioned) == 2 and not all(d.shows_key for d in derived):
        return None  # a join on a column named like the key, but not the key
    if len(partitioned) == 1:
        if any(j.side for j in tree.args.get("joins") or []) and len(refs) > 1:
            return None  # outer joins with broadcast tables: keep it simple and exact
        return _Shape("single", partitioned[0].index)
    if len(partitioned) != 2:
        return None
    a, b = partitioned
    joins = tree.args.get("joins") or []
    if any(j.side for j in joins):
        return None if derived else _outer_director_child(refs, joins, a, b)
    terms = _where_terms(tree)
    for d, c in ((a, b), (b, a)):
        if _joined_on_director_key(d, c, terms):
            return _Shape("director-child", d.index)
    if derived:
        return None  # neighbour joins read margins: a derived table's rows would repeat
    if a.table.spec.kind == b.table.spec.kind == "director":
        for x, y in ((a, b), (b, a)):
            radius = _neighbour_radius(x, y, terms)
            # Two tables, or one without a margin catalog (an attached one): each
            # driver chunk is paired with the chunks in its neighbourhood.
            if radius is not None and (a.table is not b.table or not y.table.margin_arcsec):
                if radius * 3600.0 > MAX_CROSSMATCH_ARCSEC:
                    return None  # neighbourhoods of half the sky: gathered instead
                return _Shape("crossmatch", x.index, margin=y.index, radius=radius)
            if radius is not None:
                margin_deg = y.table.margin_arcsec / 3600.0
                if radius > margin_deg:
                    raise QueryError(
                        f"the match radius {radius * 3600:g} arcsec is larger than the margin "
                        f"of {y.table.name} ({y.table.margin_arcsec:g} arcsec): rows farther "
                        "apart than the margin cannot be matched chunk by chunk"
                    )
                return _Shape("neighbours", x.index, margin=y.index, radius=radius)
    return None


def _colocated_subqueries(tree: exp.Select, refs: list[_Ref]) -> _Shape | None:
    """One partitioned table whose subqueries read only rows in each row's own chunk
    (:mod:`qcat.czar.colocated`): chunk by chunk, each task binding the subqueries'
    tables to their files of the task's chunk, like a director-child join.

    Every chunk of the outer table must exist in the subqueries' tables: a
    task lacking one would be skipped, and its rows would go missing.
    """
    if tree.args.get("joins"):
        return None
    outer = [r for r in refs if r.node.parent_select is tree]
    if len(outer) != 1 or not outer[0].table.partitioned:
        return None
    driver = outer[0]
    subqueries = [n for n in tree.find_all(exp.Select) if n is not tree]
    for sub in subqueries:
        source = sub.args.get("from_")
        table = source.this if source is not None else None
        if not isinstance(table, exp.Table) or REF not in table.meta:
            return None
        partner = refs[table.meta[REF]]
        key = shared_key(driver.table, partner.table)
        if key is None or not answered_in_chunk(
            tree, sub, driver.alias, Partner(partner.alias, partner.table), key
        ):
            return None
        if not {c.partition for c in driver.table.chunks} <= {
            c.partition for c in partner.table.chunks
        }:
            return None
    return _Shape("director-child", driver.index)


def _groups_within_chunks(tree: exp.Select, refs: list[_Ref]) -> bool:
    """Whether GROUP BY names a key that keeps each group's rows in one chunk
    (:func:`_chunk_key`). Only for chunk-local plans whose tasks read each row
    of the keyed table once (single tables and director-child joins, not the
    margins of neighbour joins).
    """
    group = tree.args.get("group")
    if group is None:
        return False
    # Tables the query reads itself: a derived table may reuse its inner alias.
    by_alias = {r.alias: r for r in refs if r.table.partitioned and r.node.parent_select is tree}
    for node in group.expressions:
        ref = by_alias.get(node.table) if isinstance(node, exp.Column) else None
        if ref is not None and node.name == _chunk_key(ref.table):
            return True
    return False


def _chunk_key(table: TableSnapshot) -> str | None:
    """The column whose equal values put rows in one chunk (lower case), if any.

    A director's key (one row per key), or a child's foreign key (its rows
    sit in their director's chunk), unless orphans were kept: those are
    placed by their own position, so rows with one dangling key may lie in
    several chunks.
    """
    spec = table.spec
    if spec.kind == "director":
        return (spec.director_key or "").lower() or None
    if spec.kind == "child" and not int(table.version.properties.get("orphans_kept") or 0):
        return (spec.director_fk_column or "").lower() or None
    return None


@dataclass(frozen=True)
class _Derived:
    """A derived table (FROM subquery) that chunks can compute: ``select`` over ``ref``."""

    alias: str
    select: exp.Select
    ref: _Ref

    @property
    def shows_key(self) -> bool:
        """Whether a column named like the chunk key is that key, unchanged."""
        key = _chunk_key(self.ref.table)
        return key is not None and any(
            p.alias_or_name == key and p.unalias() == exp.column(key, table=self.ref.alias)
            for p in self.select.expressions
        )


def _derived_tables(tree: exp.Select, refs: list[_Ref]) -> list[_Derived] | None:
    """The derived tables of ``tree``'s FROM and joins; ``None`` if one cannot be computed
    chunk by chunk.

    One can when its rows over each chunk are exactly its rows from that
    chunk: it reads one partitioned table, alone, and either keeps rows as
    they are (no aggregate, DISTINCT, window, TOP or ORDER BY) or groups by
    the key that keeps groups in one chunk (:func:`_chunk_key`), HAVING and
    DISTINCT then allowed. ``SELECT COUNT(*) FROM (SELECT objectId FROM
    demo.Source GROUP BY objectId HAVING COUNT(*) > 25) AS t`` is then
    chunk-local, as is joining such a table with its director on the key.
    """
    derived = []
    for item in _from_items(tree):
        if isinstance(item, exp.Table):
            continue
        if not isinstance(item, exp.Subquery) or not isinstance(item.this, exp.Select):
            return None
        select = item.this
        inner = select.args.get("from_")
        table = inner.this if inner is not None else None
        if not isinstance(table, exp.Table) or REF not in table.meta or select.args.get("joins"):
            return None
        ref = refs[table.meta[REF]]
        if not ref.table.partitioned or not _rows_by_chunk(select, ref):
            return None
        derived.append(_Derived(item.alias_or_name, select, ref))
    return derived


def _rows_by_chunk(select: exp.Select, ref: _Ref) -> bool:
    """Whether ``select`` (over ``ref`` alone) gives, over a chunk, its rows from that chunk."""
    if any(select.args.get(k) for k in ("limit", "offset", "order", "with_")):
        return False
    if any(
        isinstance(n, (exp.Subquery, exp.Exists, exp.Select, exp.Window)) and n is not select
        for n in select.walk()
    ):
        return False
    group = select.args.get("group")
    if group is None:
        return not has_aggregates(select) and not select.args.get("distinct")
    key = _chunk_key(ref.table)
    return key is not None and exp.column(key, table=ref.alias) in group.expressions


def _outer_director_child(
    refs: list[_Ref], joins: list[exp.Join], a: _Ref, b: _Ref
) -> _Shape | None:
    """A director and its child in one outer join (LEFT, RIGHT or FULL) on the key.

    Every row of either table lies in exactly one chunk, and a child row in
    its director's: rows that can match share a chunk, so each chunk's outer
    join gives exactly its share of the whole one (unmatched rows included,
    once). Tasks run on the director's chunks and need the child's file of
    the same chunk, so a preserved side must have no chunk the other lacks
    (true of a survey's tables, partitioned alike); otherwise, and for
    anything more (a third table, other joins), the query is gathered.
    """
    if len(refs) != 2 or len(joins) != 1:
        return None
    join = joins[0]
    on = list(conjuncts(join.args.get("on")))
    for d, c in ((a, b), (b, a)):
        if not _joined_on_director_key(d, c, on):
            continue
        right = next((r for r in refs if r.node is join.this), None)
        if right is None:
            return None
        preserved = {"LEFT": [r for r in refs if r is not right], "RIGHT": [right]}.get(
            join.side.upper(), refs
        )
        director_chunks = {x.partition for x in d.table.chunks}
        child_chunks = {x.partition for x in c.table.chunks}
        if d in preserved and not director_chunks <= child_chunks:
            return None
        if c in preserved and not child_chunks <= director_chunks:
            return None
        return _Shape("director-child", d.index)
    return None


def _where_terms(select: exp.Select) -> list[exp.Expression]:
    terms = list(conjuncts(select.args.get("where")))
    for join in select.args.get("joins") or []:
        if not join.side:
            terms.extend(conjuncts(join.args.get("on")))
    return terms


def _joined_on_director_key(d: _Ref, c: _Ref, terms: list[exp.Expression]) -> bool:
    pair = shared_key(d.table, c.table)
    if pair is None or d.table.spec.kind != "director":
        return False  # not a director (d) and its child (c)
    key, fk = pair
    for t in terms:
        if isinstance(t, exp.EQ):
            sides = {(x.table, x.name) for x in (t.this, t.expression) if isinstance(x, exp.Column)}
            if sides == {(d.alias, key), (c.alias, fk)}:
                return True
    return False


def _positional_matches(
    terms: list[exp.Expression],
) -> Iterator[tuple[exp.Expression, exp.Expression, float]]:
    """``(p, q, r)`` for every term saying two positions are within ``r`` degrees.

    The forms: ``DISTANCE(p, q) < r`` (or ``<=``), ``ANGDIST(...) < r``, and
    ``CONTAINS(p, CIRCLE(q, r)) = 1``. ``p`` and ``q`` are POINT expressions.
    """
    from qcat.czar.adql.expressions import (
        AdqlCircle,
        AdqlContains,
        AdqlDistance,
        AdqlPoint,
        QcatAngDist,
    )

    for t in terms:
        if isinstance(t, (exp.LT, exp.LTE)):
            r = constant_number(t.expression)
            d = t.this
            if r is not None and isinstance(d, AdqlDistance):
                yield d.this, d.expression, r
            if r is not None and isinstance(d, QcatAngDist):
                p = AdqlPoint(coord1=d.args["ra1"], coord2=d.args["dec1"])
                q = AdqlPoint(coord1=d.args["ra2"], coord2=d.args["dec2"])
                yield p, q, r
        if isinstance(t, exp.EQ):
            for c, one in ((t.this, t.expression), (t.expression, t.this)):
                if (
                    isinstance(c, AdqlContains)
                    and constant_number(one) == 1.0
                    and isinstance(c.expression, AdqlCircle)
                ):
                    r = constant_number(c.expression.args["radius"])
                    if r is not None:
                        yield c.this, c.expression.args["center"], r


def _is_position_of(p: exp.Expression, ref: _Ref) -> bool:
    """Whether ``p`` is ``POINT(ra, dec)`` of ``ref``'s main position columns."""
    spec = ref.table.spec
    return _is_point_of(p, ref.alias, (spec.ra_column or "", spec.dec_column or ""))


def _is_point_of(p: exp.Expression, alias: str, columns: tuple[str, str]) -> bool:
    """Whether ``p`` is ``POINT(alias.ra, alias.dec)`` of the ``columns`` (ra, dec)."""
    from qcat.czar.adql.expressions import AdqlPoint

    ra, dec = (c.lower() for c in columns)
    return (
        isinstance(p, AdqlPoint)
        and isinstance(p.args["coord1"], exp.Column)
        and p.args["coord1"].table == alias
        and p.args["coord1"].name == ra
        and isinstance(p.args["coord2"], exp.Column)
        and p.args["coord2"].table == alias
        and p.args["coord2"].name == dec
    )


def _neighbour_radius(x: _Ref, y: _Ref, terms: list[exp.Expression]) -> float | None:
    """Radius of a ``DISTANCE(x, y) < r`` (or CONTAINS in a circle around x) term."""
    for p, q, r in _positional_matches(terms):
        if (_is_position_of(p, x) and _is_position_of(q, y)) or (
            _is_position_of(p, y) and _is_position_of(q, x)
        ):
            return r
    return None


def _chunks(
    ref: _Ref, constraints: TableConstraints, data_dir: Path, notes: list[str]
) -> list[Chunk]:
    table = ref.table
    chunks = list(table.chunks)
    if constraints.regions is not None and table.spec.kind == "child":
        chunks = _chunks_by_bounds(chunks, constraints.regions)
        notes.append(
            f"{table.name}: position bounds select {len(chunks)} of {len(table.chunks)} chunks"
        )
    elif constraints.ranges is not None:
        chunks = table.chunks_overlapping(constraints.ranges)
        notes.append(f"{table.name}: region selects {len(chunks)} of {len(table.chunks)} chunks")
    for keys, index, name in _key_indexes(ref, constraints):
        chunks = _chunks_of_keys(ref, keys, index, name, chunks, data_dir, notes)
    return chunks


def _key_indexes(
    ref: _Ref, constraints: TableConstraints
) -> list[tuple[tuple[object, ...], str, str]]:
    """The wanted keys of ``ref``, each with the index that places them and its name in
    plan notes: the director key (a child's foreign key), and a child's own key."""
    table = ref.table
    out = []
    if constraints.keys is not None and table.key_index_path is not None:
        out.append((constraints.keys, table.key_index_path, "director index"))
    own_column = own_key_column(table)
    if constraints.own_keys is not None and own_column is not None:
        assert table.own_key_index_path is not None
        out.append((constraints.own_keys, table.own_key_index_path, f"index of {own_column}"))
    return out


def _chunks_by_statistics(
    ref: _Ref, terms: list[exp.Expression], chunks: list[Chunk], notes: list[str]
) -> list[Chunk]:
    """``chunks`` whose column statistics allow the terms' bounds (:mod:`.statistics`)."""
    bounds = column_bounds(terms, ref.alias, ref.table)
    kept = chunks_within(chunks, bounds)
    if len(kept) < len(chunks):
        notes.append(
            f"{ref.table.name}: column statistics leave {len(kept)} of {len(chunks)} chunks"
        )
    return kept


def _chunks_by_bounds(chunks: list[Chunk], regions: tuple[Region, ...]) -> list[Chunk]:
    """Chunks whose rows' position bounds can meet one of ``regions``.

    A child table's rows sit in their director's chunk, not their own
    position's, so its chunks are pruned by the ra/dec box their rows span
    (from the partition statistics): a circle by its exact distance to the
    box, another region by a circle drawn around the box.
    """
    return [c for c in chunks if any(_may_meet_bounds(r, c.position_bounds) for r in regions)]


def _may_meet_bounds(region: Region, bounds: tuple[float, float, float, float] | None) -> bool:
    if isinstance(region, Circle):
        return _may_come_near(bounds, region.ra, region.dec, region.radius)
    if bounds is None or not box_is_valid(bounds):
        return True
    return regions_intersect(region, bounding_circle(*bounds))


def _may_come_near(
    bounds: tuple[float, float, float, float] | None,
    ra: np.ndarray | float,
    dec: np.ndarray | float,
    radius: float,
) -> bool:
    """Whether rows within a chunk's position ``bounds`` can lie within ``radius`` degrees
    of one of the points (a chunk without usable bounds may)."""
    return bounds is None or not box_is_valid(bounds) or near_box(ra, dec, radius, bounds)


def _chunks_of_keys(
    ref: _Ref,
    keys: tuple[object, ...],
    index: str,
    index_name: str,
    chunks: list[Chunk],
    data_dir: Path,
    notes: list[str],
) -> list[Chunk]:
    """Those of ``chunks`` at the pixels where ``index`` puts ``keys``."""
    found = _locate_keys(data_dir / index, keys)
    wanted = {(f.partition.order, f.partition.pixel) for f in found.values()}
    selected = [c for c in chunks if (c.order, c.pixel) in wanted]
    notes.append(
        f"{ref.table.name}: {index_name} maps {len(keys)} key(s) to {len(selected)} chunk(s)"
    )
    return selected


def _locate_keys(path: Path, keys: tuple[object, ...]) -> dict[object, KeyLocation]:
    """Where the director index at ``path`` puts each of ``keys`` (read-only result)."""
    stat = path.stat()
    return _located(str(path), stat.st_mtime_ns, stat.st_size, keys)


@functools.lru_cache(maxsize=256)
def _located(
    path: str, mtime_ns: int, size: int, keys: tuple[object, ...]
) -> dict[object, KeyLocation]:
    # Planning asks twice per query (chunks, then row filter); the file never changes.
    return _open_index(path, mtime_ns, size).locate(keys)


@functools.lru_cache(maxsize=32)
def _open_index(path: str, mtime_ns: int, size: int) -> DirectorIndex:
    # Reading the footer costs milliseconds; index files never change once written.
    return DirectorIndex(Path(path))


def _row_filter(
    ref: _Ref, constraints: TableConstraints, data_dir: Path, chunks: list[Chunk]
) -> list[exp.Expression]:
    """Conditions implied by ``ref``'s own constraints that let DuckDB skip row groups
    of ``chunks`` (those the tasks read; their pixels, for a table of another kind)."""
    out = _key_filter(ref, constraints, data_dir)
    if ref.table.spec.kind == "director":
        out += row_filter(ref.alias, constraints, ref.table.spec.dec_column, HEALPIX_COLUMN)
    elif ref.table.spec.kind == "child" and ref.table.spec.own_position:
        dec_column = ref.table.spec.own_position[1]
        regions = constraints.regions or ()
        out += dec_band_filter(ref.alias, dec_column, regions)
        if regions and all(isinstance(r, Circle) for r in regions):
            # A child's chunk spans its director's pixel in RA: the circles' RA range too.
            circles = cast(tuple[Circle, ...], regions)
            own = ref.table.chunks_at([c.partition for c in chunks])
            centres = np.array([(c.ra, c.dec) for c in circles], dtype=np.float64)
            radius = max(c.radius for c in circles)
            out += _ra_range(ref, own, centres[:, 0], centres[:, 1], radius)
    return out


def _director_region_filter(child: _Ref, director: TableConstraints) -> list[exp.Expression]:
    """The director's region as a condition on ``child``'s rows, in an inner join on the
    director key.

    A child row joins only its director's row, whose ``_healpix_29`` it carries
    (a kept orphan has no director row and joins nothing), so the ranges that
    hold the director's region hold every child row of the answer. Said
    inside a derived table grouped by the key, it keeps the groups whose
    director can be in the region, each one whole (all its rows share the key).
    """
    if director.ranges is None:
        return []
    return [healpix_condition(exp.column(HEALPIX_COLUMN, table=child.alias), director.ranges)]


def _key_filter(ref: _Ref, constraints: TableConstraints, data_dir: Path) -> list[exp.Expression]:
    """``_healpix_29`` of the wanted keys, from the indexes that store it.

    A key's rows (the director's row and its children's, which carry the
    director's index) all have the key's ``_healpix_29``, and partition files
    are sorted by it, so this turns a scan of the key column of the whole
    chunk into a read of the one row group holding those rows. A child's own
    key index stores its row's ``_healpix_29`` the same way.
    """
    out = []
    for keys, index, _ in _key_indexes(ref, constraints):
        cells = {found.healpix_29 for found in _locate_keys(data_dir / index, keys).values()}
        if None in cells:  # an index written before it stored _healpix_29
            continue
        ranges = np.array(sorted((h, h + 1) for h in cells if h is not None), dtype=np.int64)
        column = exp.column(HEALPIX_COLUMN, table=ref.alias)
        out.append(healpix_condition(column, ranges.reshape(-1, 2)))
    return out


def _chunk_local(
    tree: exp.Select,
    refs: list[_Ref],
    shape: _Shape,
    resolved: ResolvedQuery,
    data_dir: Path,
    whole_query: bool,
) -> QueryPlan:
    notes: list[str] = [f"shape: chunk-local ({shape.kind})"]
    derived = {d.ref.index: d for d in _derived_tables(tree, refs) or []}
    terms = _where_terms(tree)
    driver = refs[shape.driver]
    # The query's terms on a derived table's group keys prune it too; not under an
    # outer join, where a derived table's missing rows would become NULLs instead.
    outer = any(j.side for j in tree.args.get("joins") or [])
    inside = {
        i: [] if outer else terms_inside(terms, d.alias, d.select) for i, d in derived.items()
    }

    def terms_of(ref: _Ref) -> list[exp.Expression]:
        """The terms that concern ``ref``: its derived table's own and those of the query
        that hold inside it, the query's, or none (a subquery's table: the query's terms
        do not filter it)."""
        if ref.index in derived:
            return _where_terms(derived[ref.index].select) + inside[ref.index]
        return terms if ref.node.parent_select is tree else []

    constraints = {r.index: constraints_for(r.alias, r.table, terms_of(r)) for r in refs}
    for d in derived.values():
        d.select.meta[DERIVED] = d.ref.index  # found again in the translated tree
        notes.append(f"derived table {d.alias}: each chunk computes its rows of {d.ref.table.name}")
        if inside[d.ref.index]:
            notes.append(
                f"derived table {d.alias}: {len(inside[d.ref.index])} term(s) of the query on "
                "its group keys (or columns) select its chunks and rows"
            )
    # A director-child join: keys or regions on either side select the same chunks.
    driver_constraints = constraints[driver.index]
    if shape.kind == "director-child":
        other = next(r for r in refs if r.table.partitioned and r is not driver)
        keys = constraints[other.index].keys
        if keys is not None and driver_constraints.keys is None:
            driver_constraints = replace(driver_constraints, keys=keys)
    chunks = _chunks(driver, driver_constraints, data_dir, notes)
    chunks = _chunks_by_statistics(driver, terms_of(driver), chunks, notes)
    bands: list[exp.Expression] = []  # constant declination ranges of broadcast matches
    if shape.kind == "single" and len(refs) > 1:
        chunks, bands = _near_broadcast_positions(driver, refs, terms, chunks, data_dir, notes)
    if shape.kind == "director-child":
        child = next(r for r in refs if r.table.partitioned and r is not driver)
        # The child's own keys sit in the chunks their directors share.
        own = replace(constraints[child.index], keys=None)
        for keys, index, name in _key_indexes(child, own):
            chunks = _chunks_of_keys(child, keys, index, name, chunks, data_dir, notes)
        regions = constraints[child.index].regions
        if regions is not None:  # an inner join: only chunks whose children may match
            holding = {c.partition for c in _chunks_by_bounds(list(child.table.chunks), regions)}
            chunks = [c for c in chunks if c.partition in holding]
            notes.append(f"{child.table.name}: position bounds keep {len(chunks)} chunk(s)")
    tasks = _tasks(chunks, refs, shape)
    if shape.kind == "crossmatch":
        notes.append(
            f"{refs[shape.margin or 0].table.name}: each task reads its chunks within "
            f"{shape.radius * 3600.0:g} arcsec of the driver chunk (no margins)"
        )

    if shape.kind in ("neighbours", "crossmatch"):
        assert shape.margin is not None
        near = refs[shape.margin]
        grown = _grown(constraints[driver.index], shape.radius)
        if grown is not None and constraints[near.index].regions is None:
            constraints[near.index] = replace(constraints[near.index], regions=grown)
    filters = {r.index: _row_filter(r, constraints[r.index], data_dir, chunks) for r in refs}
    if shape.kind == "director-child" and not outer:
        # Only a child joined in the query's FROM (a subquery's is in another scope).
        in_from = [r.index in derived or r.node.parent_select is tree for r in (driver, child)]
        if all(in_from):
            filters[child.index].extend(_director_region_filter(child, constraints[driver.index]))
    extra = [c for r in refs if r.index not in derived for c in filters[r.index]]
    if shape.kind in ("neighbours", "crossmatch"):
        extra.extend(_neighbour_filters(driver, refs[shape.margin or 0], shape.radius, constraints))
    if shape.kind == "single":
        extra.extend(_broadcast_match_bands(driver, refs, terms))
        extra.extend(bands)
    whole = whole_query and len(tasks) == 1
    # One task running the query as written cannot fall back to gathering (the
    # caller's use of ``tree`` after NotSplittable), so it translates ``tree`` itself.
    translated = _translate(tree, _unit_of(resolved, refs), copy=not (whole and splits_as_is(tree)))
    assert isinstance(translated, exp.Select)
    for node in list(translated.find_all(exp.Table)):
        node.replace(_relation(refs[node.meta[REF]], shape))
    for select in list(translated.find_all(exp.Select)):
        if DERIVED in select.meta:  # a derived table's filters go into it
            for condition in filters[select.meta[DERIVED]]:
                select.where(condition, copy=False)
    names = [c.name for c in resolved.columns]
    whole_groups = False
    if whole:  # one task answers the whole query: it runs there as written, no merge needed
        if not splits_as_is(translated):  # still refuse what a query over more chunks would
            split(translated.copy(), names)
        chunk = cast(exp.Select, _rename_outputs(translated, names))
        merge_sql = f"SELECT * FROM {CHUNKS}"
        passthrough = True
    else:
        whole_groups = shape.kind in ("single", "director-child") and _groups_within_chunks(
            tree, refs
        )
        parts = split(translated, names, groups_within_chunks=whole_groups)
        if whole_groups:
            notes.append("grouped by a key: each chunk computes its groups whole")
        chunk = parts.chunk
        # The trees are ours and used once: the generator need not copy them first.
        merge_sql = parts.merge.sql("duckdb", copy=False)
        passthrough = parts.passthrough
    for condition in extra:
        chunk = chunk.where(condition, copy=False)
    if shape.kind == "crossmatch":
        tasks = _with_neighbourhood_sql(chunk, tasks, refs[shape.margin or 0], shape.radius)
    chunk_query = ChunkQuery(
        CHUNKS,
        chunk.sql("duckdb", copy=False),
        {ref.relation: ref.table for ref in refs},
        tuple(tasks),
        materialize=False,
        # Chunks grouped by a key are not bound together on a worker: one DuckDB
        # aggregate over all of a worker's chunks would hold every group of them at
        # once (5M keys per worker for the bench catalog's Source), one chunk's
        # groups at a time stay small (1.8 s -> 1.2-1.3 s, as fast as DuckDB alone
        # over one file).
        batchable=shape.kind not in ("neighbours", "crossmatch") and not whole_groups,
    )
    notes.append(f"{len(tasks)} chunk task(s)")
    if whole:
        notes.append("one task: it runs the whole query, its rows stream straight out")
    elif passthrough:
        notes.append("merge only renames columns: chunk rows stream straight out")
    return QueryPlan(
        "chunk-local", (chunk_query,), merge_sql, tuple(notes), passthrough=passthrough
    )


def _tasks(chunks: list[Chunk], refs: list[_Ref], shape: _Shape) -> list[Task]:
    tasks = []
    for chunk in chunks:
        relations: dict[str, list[str]] = {}
        for ref in refs:
            files = _files_for(ref, chunk, shape)
            if files is None:
                break
            relations[ref.relation] = files
        else:
            tasks.append(Task((chunk.order, chunk.pixel), relations))
    return tasks


@functools.lru_cache(maxsize=1024)
def _reach(partition: Partition, radius_deg: float) -> np.ndarray:
    """Order-29 ranges holding every point within ``radius_deg`` of ``partition``.

    A crossmatch task reads the other table's chunks meeting its driver
    chunk's reach: every driver row lies in exactly one chunk, and every row
    of the other table within the radius of it lies in the reach
    (:func:`neighbourhood_ranges`), so each pair is found by exactly one task
    whatever the two tables' partitions, and no margin is read. Cached: a
    task's files and its SQL both need it (callers only read the array).
    """
    return neighbourhood_ranges(partition, max(radius_deg * 3600.0, MIN_REACH_ARCSEC))


def _with_neighbourhood_sql(
    chunk: exp.Select, tasks: list[Task], near: _Ref, radius: float
) -> list[Task]:
    """Each task's SQL: the chunk query, the other table cut to the task chunk's neighbourhood.

    Only narrows what is read (rows farther than the radius never match), so
    the chunk query without it gives the same rows.
    """
    column = exp.column(HEALPIX_COLUMN, table=near.alias)
    out = []
    for task in tasks:
        reach = _reach(Partition(*task.key), radius)
        own = chunk.copy().where(healpix_condition(column, reach), copy=False)
        out.append(Task(task.key, task.relations, own.sql("duckdb", copy=False)))
    return out


#: Smallest neighbourhood width a crossmatch task uses: neighbourhoods need a
#: positive width, and rows at one position (radius 0) share a chunk anyway.
MIN_REACH_ARCSEC = 1e-3
#: Largest crossmatch radius run chunk by chunk (the widest neighbourhood
#: :func:`neighbourhood_ranges` covers); larger ones are gathered.
MAX_CROSSMATCH_ARCSEC = NEIGHBOURHOOD_REACH / ARCSEC_RAD


#: Unit-vector columns a neighbour join adds to both sides (``qcat_x``, ...).
_UNIT_COLUMNS = ("x", "y", "z")


def _relation(ref: _Ref, shape: _Shape) -> exp.Expression:
    """The FROM item of ``ref`` in a chunk query: its relation under the query's alias.

    The two sides of a neighbour join also carry each row's unit vector, so
    the pair test can start with a cheap chord-length comparison (see
    :func:`_neighbour_filters`).
    """
    if shape.kind not in ("neighbours", "crossmatch") or ref.index not in (
        shape.driver,
        shape.margin,
    ):
        return exp.to_table(ref.relation, alias=ref.alias)
    spec = ref.table.spec
    position = [
        exp.column((spec.ra_column or "").lower()),
        exp.column((spec.dec_column or "").lower()),
    ]
    units = [
        exp.Alias(
            this=exp.Anonymous(this=f"qcat_unit_{k}", expressions=[p.copy() for p in position]),
            alias=exp.to_identifier(f"qcat_{k}"),
        )
        for k in _UNIT_COLUMNS
    ]
    select = exp.Select(expressions=[exp.Star(), *units]).from_(ref.relation, copy=False)
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(ref.alias)))


def _grown(constraints: TableConstraints, radius: float) -> tuple[Circle, ...] | None:
    """The circles a neighbour of a row in ``constraints`` lies in (None: not only circles)."""
    regions = constraints.regions
    if regions is None or not all(isinstance(r, Circle) for r in regions):
        return None
    return tuple(
        Circle(r.ra, r.dec, min(180.0, r.radius + radius)) for r in regions if isinstance(r, Circle)
    )


#: Relative and absolute (chord length) slack of the neighbour pre-test, far above
#: the rounding of unit vectors, so the pre-test never drops a pair the exact test keeps.
CHORD_SLACK = (1e-9, 1e-15)


def _neighbour_filters(
    driver: _Ref, near: _Ref, radius: float, constraints: dict[int, TableConstraints]
) -> list[exp.Expression]:
    """Conditions every matching pair meets, added so DuckDB joins by ranges, not all pairs.

    Two rows within ``radius`` differ in declination by at most ``radius``:
    a band join DuckDB runs as a range (IE) join. Each candidate pair is then
    tested on the chord between the unit vectors (a few multiplications)
    before the exact distance. The near side is also cut to the driver's
    circles grown by the radius.
    """
    dec_column = (driver.table.spec.dec_column or "").lower()
    dec_a = exp.column(dec_column, table=driver.alias)
    r = exp.Literal.number(literal(radius))
    band = exp.Between(
        this=exp.column((near.table.spec.dec_column or "").lower(), table=near.alias),
        low=exp.Sub(this=dec_a, expression=r),
        high=exp.Add(this=dec_a.copy(), expression=r.copy()),
    )
    relative, absolute = CHORD_SLACK
    chord = 2.0 * math.sin(math.radians(min(radius, 180.0)) / 2.0) * (1.0 + relative) + absolute
    squares = [
        exp.Mul(this=exp.Paren(this=d), expression=exp.Paren(this=d.copy()))
        for d in (
            exp.Sub(
                this=exp.column(f"qcat_{k}", table=driver.alias),
                expression=exp.column(f"qcat_{k}", table=near.alias),
            )
            for k in _UNIT_COLUMNS
        )
    ]
    near_enough = exp.LTE(
        this=exp.Add(this=exp.Add(this=squares[0], expression=squares[1]), expression=squares[2]),
        expression=exp.Literal.number(literal(chord * chord)),
    )
    out: list[exp.Expression] = [band, near_enough]
    grown = constraints[near.index].regions
    if grown is not None and near.table.spec.ra_column:
        ra_b = f"{near.alias}.{near.table.spec.ra_column.lower()}"
        dec_b = f"{near.alias}.{(near.table.spec.dec_column or '').lower()}"
        tests = " OR ".join(contains_sql(ra_b, dec_b, g) for g in grown)
        out.append(_parse(f"({tests})"))
    return out


def _broadcast_positions(
    driver: _Ref, refs: list[_Ref], terms: list[exp.Expression]
) -> Iterator[tuple[_Ref, exp.Column, exp.Column, float]]:
    """``(other, ra, dec, r)`` for each term matching the driver's position within
    ``r`` degrees of ``POINT(ra, dec)``, two columns of the broadcast table ``other``.

    The forms are those of :func:`_positional_matches` (a crossmatch of an
    uploaded list, as TOPCAT writes it), with the driver's point on either side.
    """
    from qcat.czar.adql.expressions import AdqlPoint

    position = driver.table.spec.own_position  # a director's main one, a child's own
    if position is None:
        return
    others = {r.alias: r for r in refs if r is not driver and not r.table.partitioned}
    for p, q, radius in _positional_matches(terms):
        for a, b in ((p, q), (q, p)):
            if not (_is_point_of(a, driver.alias, position) and isinstance(b, AdqlPoint)):
                continue
            ra, dec = b.args["coord1"], b.args["coord2"]
            if isinstance(ra, exp.Column) and isinstance(dec, exp.Column) and ra.table == dec.table:
                other = others.get(ra.table)
                if other is not None:
                    yield other, ra, dec, radius
                    break


def _broadcast_match_bands(
    driver: _Ref, refs: list[_Ref], terms: list[exp.Expression]
) -> list[exp.Expression]:
    """Declination bands for positional matches of the chunk's rows with a broadcast table.

    A crossmatch of an uploaded list (``DISTANCE(p, u) < r`` or ``CONTAINS`` in a
    circle of radius r around either position) only pairs rows whose
    declinations differ by at most r; saying so lets DuckDB run a range join
    instead of testing every pair.
    """
    position = driver.table.spec.own_position
    dec_column = position[1].lower() if position else ""
    out: list[exp.Expression] = []
    for _, _, dec, radius in _broadcast_positions(driver, refs, terms):
        r = exp.Literal.number(literal(radius))
        out.append(
            exp.Between(
                this=exp.column(dec_column, table=driver.alias),
                low=exp.Sub(this=dec.copy(), expression=r),
                high=exp.Add(this=dec.copy(), expression=r.copy()),
            )
        )
    return out


def _dec_range(driver: _Ref, decs: np.ndarray, radius: float) -> list[exp.Expression]:
    """``d.dec BETWEEN lo AND hi``, constants: the declinations a row matching one of
    ``decs`` within ``radius`` degrees can have (none when no declination is known).

    The per-row band of :func:`_broadcast_match_bands` makes the join a range
    join but cannot skip anything before it; this one lets Parquet's row-group
    statistics skip the rest of each chunk (files are sorted by position, so
    declinations are close within a row group). A child table, whose chunks
    are kept by loose bounds, gains the most.
    """
    position = driver.table.spec.own_position
    decs = decs[np.isfinite(decs)]
    if position is None or len(decs) == 0:
        return []  # no position: the join itself finds nothing
    lo = max(-90.0, float(decs.min()) - radius - DEC_SLACK)
    hi = min(90.0, float(decs.max()) + radius + DEC_SLACK)
    column = exp.column(position[1].lower(), table=driver.alias)
    return [column.between(exp.Literal.number(literal(lo)), exp.Literal.number(literal(hi)))]


def _ra_range(
    driver: _Ref, chunks: list[Chunk], ras: np.ndarray, decs: np.ndarray, radius: float
) -> list[exp.Expression]:
    """The right ascensions a row matching one of the points within ``radius`` degrees
    can have, as a constant condition (none when that is every RA).

    With :func:`_dec_range` it lets row-group statistics skip all of a chunk
    but the field's part; a child's chunks, kept by their rows' bounds, hold
    rows all along the field's declinations (a chunk can span 90 degrees of
    RA). The rows' RA is then known to lie in [0, 360) only from the chunks'
    statistics (a child's RA is not checked at ingest), so without statistics
    saying so there is no condition.
    """
    position = driver.table.spec.own_position
    if position is None:
        return []
    for chunk in chunks:
        bounds = chunk.position_bounds
        if bounds is None or not (bounds[0] >= 0.0 and bounds[1] < 360.0):
            return []
    arc = ra_arc_around(ras, decs, radius)
    if arc is None:
        return []
    column = exp.column(position[0].lower(), table=driver.alias)
    start, end = (exp.Literal.number(literal(v)) for v in arc)
    if arc[0] <= arc[1]:
        return [column.between(start, end)]
    return [exp.paren(exp.or_(column >= start, column.copy() <= end), copy=False)]


def _broadcast_points(
    other: _Ref, ra: exp.Column, dec: exp.Column, data_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """The positions of broadcast table ``other`` (degrees; NaN where missing), read from
    its file, which is small (an upload has a size limit)."""
    assert other.table.plain_path is not None
    names = [other.table.folded_columns[c.name].name for c in (ra, dec)]
    positions = pq.read_table(data_dir / other.table.plain_path, columns=names)
    ra_deg, dec_deg = (
        positions.column(n).cast(pa.float64()).to_numpy(zero_copy_only=False) for n in names
    )
    return ra_deg, dec_deg


#: A broadcast table with more rows than this is not read to prune chunks (its
#: positions would cover most of the sky anyway, and reading them costs).
MAX_PRUNING_POSITIONS = 1_000_000


def _near_broadcast_positions(
    driver: _Ref,
    refs: list[_Ref],
    terms: list[exp.Expression],
    chunks: list[Chunk],
    data_dir: Path,
    notes: list[str],
) -> tuple[list[Chunk], list[exp.Expression]]:
    """The ``chunks`` within the match radius of a broadcast table's positions, and the
    declination range rows matching them can have (:func:`_dec_range`).

    An inner join of a table partitioned by its own positions with a small
    unpartitioned one (an uploaded list) on their positions within ``r`` has
    rows only in the chunks within ``r`` of one of that table's positions:
    the other chunks are not asked at all. The positions are read from the
    table's file, which is small (an upload has a size limit). A child table's
    rows sit in their director's chunk, so its chunks are kept by the bounds
    of their rows' own positions instead (:func:`_chunks_near_points`).
    """
    child = driver.table.spec.kind == "child"
    bands: list[exp.Expression] = []
    for other, ra, dec, radius in _broadcast_positions(driver, refs, terms):
        if other.table.version.num_rows > MAX_PRUNING_POSITIONS:
            continue
        ra_deg, dec_deg = _broadcast_points(other, ra, dec, data_dir)
        bands.extend(_dec_range(driver, dec_deg, radius))
        width = max(radius * 3600.0, MIN_REACH_ARCSEC)
        if width * ARCSEC_RAD > NEIGHBOURHOOD_REACH:
            continue  # too wide to prune chunks by
        before = len(chunks)
        if child:
            chunks = _chunks_near_points(chunks, ra_deg, dec_deg, width / 3600.0)
        else:
            near = driver.table.chunks_overlapping(points_reach_ranges(ra_deg, dec_deg, width))
            wanted = {c.partition for c in near}
            chunks = [c for c in chunks if c.partition in wanted]
        whose = "whose rows' positions come" if child else "lie"
        notes.append(
            f"{driver.table.name}: {len(chunks)} of {before} chunks {whose} within "
            f"{radius * 3600.0:g} arcsec of a position of {other.table.name}"
        )
        bands.extend(_ra_range(driver, chunks, ra_deg, dec_deg, radius))
    return chunks, bands


def _chunks_near_points(
    chunks: list[Chunk], ra: np.ndarray, dec: np.ndarray, radius: float
) -> list[Chunk]:
    """The ``chunks`` whose rows' position bounds come within ``radius`` degrees of one
    of the points (a chunk without bounds is kept; NaN positions match nothing)."""
    return [c for c in chunks if _may_come_near(c.position_bounds, ra, dec, radius)]


def _parse(sql: str) -> exp.Expression:
    """A DuckDB condition built by qcat's own SQL writers, as a tree."""
    return cast(exp.Expression, sqlglot.parse_one(sql, read="duckdb"))


def _files_for(ref: _Ref, chunk: Chunk, shape: _Shape) -> list[str] | None:
    """Files of ``ref`` for the task of ``chunk``; None when the task has no rows to give."""
    table = ref.table
    if not table.partitioned:
        assert table.plain_path is not None
        return [table.plain_path]
    if shape.kind == "crossmatch" and ref.index == shape.margin:
        near = table.chunks_overlapping(_reach(chunk.partition, shape.radius))
        return [c.path for c in near] or None
    own = table.chunks_at([chunk.partition])
    if not own:
        return None  # an inner join with a chunk this table lacks yields nothing
    files = [own[0].path]
    if shape.margin == ref.index and own[0].margin_path:
        files.append(own[0].margin_path)
    return files


# -- unpartitioned tables only ----------------------------------------------------------


def _unpartitioned(tree: exp.Expression, refs: list[_Ref], resolved: ResolvedQuery) -> QueryPlan:
    """Every table read is unpartitioned: one task runs the whole query, as written.

    Each such table is one file under the data directory that every worker
    can read, so any query over them (joins, subqueries, set operations,
    aggregates, ORDER BY and TOP included) is exact on one worker, and its
    rows stream straight out: there is nothing to merge.
    """
    query = _translate(tree, _unit_of(resolved, refs))
    for node in list(query.find_all(exp.Table)):
        if REF in node.meta:
            ref = refs[node.meta[REF]]
            node.replace(exp.alias_(exp.to_table(ref.relation), ref.alias, table=True))
    query = _rename_outputs(query, [c.name for c in resolved.columns])
    relations = {ref.relation: [cast(str, ref.table.plain_path)] for ref in refs}
    chunk_query = ChunkQuery(
        CHUNKS,
        query.sql("duckdb", copy=False),
        {ref.relation: ref.table for ref in refs},
        (Task((0, 0), relations),),  # no chunk: the engine picks the worker by query id
        materialize=False,
        batchable=False,
        anywhere=True,
    )
    notes = (
        "shape: unpartitioned (every table is one file any worker reads)",
        "one task: it runs the whole query, its rows stream straight out",
    )
    return QueryPlan(
        "unpartitioned", (chunk_query,), f"SELECT * FROM {CHUNKS}", notes, passthrough=True
    )


# -- gather ------------------------------------------------------------------------


def _gather(
    tree: exp.Expression, refs: list[_Ref], resolved: ResolvedQuery, data_dir: Path
) -> QueryPlan:
    notes: list[str] = ["shape: gather (the czar evaluates the query on fetched rows)"]
    needed = _needed_columns(tree, refs)
    pushed = _pushable_terms(tree, refs)
    units = _unit_of(resolved, refs)
    queries = []
    for ref in refs:
        terms = pushed.get(ref.index, [])
        constraints = constraints_for(ref.alias, ref.table, terms) if terms else TableConstraints()
        chunks = []
        if ref.table.partitioned:
            chunks = _chunks(ref, constraints, data_dir, notes)
            chunks = _chunks_by_statistics(ref, terms, chunks, notes)
        columns = sorted(needed.get(ref.index, set())) or [(ref.table.spec.columns[0].name.lower())]
        select = exp.select(*(exp.column(c, table=ref.alias) for c in columns)).from_(
            exp.alias_(exp.to_table(ref.relation), ref.alias, table=True)
        )
        for t in terms:
            select = select.where(_translate(t.copy(), units), copy=False)
        for condition in _row_filter(ref, constraints, data_dir, chunks):
            select = select.where(condition, copy=False)
        if ref.table.partitioned:
            tasks = tuple(Task((c.order, c.pixel), {ref.relation: [c.path]}) for c in chunks)
        else:
            assert ref.table.plain_path is not None
            tasks = (Task((0, ref.index), {ref.relation: [ref.table.plain_path]}),)
        queries.append(
            ChunkQuery(
                f"g{ref.index}",
                select.sql("duckdb", copy=False),
                {ref.relation: ref.table},
                tasks,
                materialize=True,
            )
        )
        notes.append(f"{ref.table.name} AS {ref.alias}: {len(tasks)} task(s), columns {columns}")
    merge = _translate(tree, units)
    for node in list(merge.find_all(exp.Table)):
        if REF in node.meta:
            ref = refs[node.meta[REF]]
            node.replace(exp.alias_(exp.to_table(f"g{ref.index}"), ref.alias, table=True))
    names = [c.name for c in resolved.columns]
    merge = _rename_outputs(merge, names)
    return QueryPlan("gather", tuple(queries), merge.sql("duckdb", copy=False), tuple(notes))


def _rename_outputs(tree: exp.Expression, names: list[str]) -> exp.Expression:
    query = tree
    while isinstance(query, (exp.SetOperation, exp.Subquery)):
        query = query.this
    if isinstance(query, exp.Select) and len(query.expressions) == len(names):
        query.set(
            "expressions",
            [
                exp.Alias(
                    this=p.this if isinstance(p, exp.Alias) else p,
                    alias=exp.to_identifier(n, quoted=True),
                )
                for p, n in zip(query.expressions, names, strict=True)
            ],
        )
    return tree


def _source_ref(scope: Scope, alias: str, refs: list[_Ref]) -> _Ref | None:
    """The table reference ``alias`` names, looking outwards from ``scope``."""
    current: Scope | None = scope
    while current is not None:
        source = current.sources.get(alias)
        if source is not None:
            if isinstance(source, exp.Table) and REF in source.meta:
                return refs[source.meta[REF]]
            return None
        current = current.parent
    return None


def _needed_columns(tree: exp.Expression, refs: list[_Ref]) -> dict[int, set[str]]:
    needed: dict[int, set[str]] = {}
    for scope in traverse_scope(tree):
        for column in scope.columns:
            if not column.table:
                continue
            ref = _source_ref(scope, column.table, refs)
            if ref is not None:
                needed.setdefault(ref.index, set()).add(column.name)
    return needed


def _pushable_terms(tree: exp.Expression, refs: list[_Ref]) -> dict[int, list[exp.Expression]]:
    """WHERE terms that concern one table only, where filtering it early is exact."""
    out: dict[int, list[exp.Expression]] = {}
    for scope in traverse_scope(tree):
        select = scope.expression
        if not isinstance(select, exp.Select):
            continue
        joins = select.args.get("joins") or []
        preserved_only_from = any(j.side for j in joins)
        if preserved_only_from and any(j.side != "LEFT" for j in joins if j.side):
            continue
        for term in conjuncts(select.args.get("where")):
            if any(isinstance(n, (exp.Subquery, exp.Select, exp.Exists)) for n in term.walk()):
                continue
            if any(_is_aggregate_or_window(cast(exp.Expression, n)) for n in term.walk()):
                continue
            aliases = {c.table for c in term.find_all(exp.Column)}
            if len(aliases) != 1:
                continue
            alias = next(iter(aliases))
            source = scope.sources.get(alias)
            if not (isinstance(source, exp.Table) and REF in source.meta):
                continue
            if preserved_only_from:
                from_table = select.args["from_"].this
                if from_table is not source:
                    continue
            out.setdefault(source.meta[REF], []).append(term)
    return out


def _is_aggregate_or_window(node: exp.Expression) -> bool:
    from qcat.czar.split import is_aggregate

    return is_aggregate(node) or isinstance(node, exp.Window)
