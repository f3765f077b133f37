"""Split one SELECT into a per-chunk query and a merge query.

The per-chunk query runs on every chunk; the merge query runs at the czar
over the union of their results (relation ``chunks``). The split is exact:

- plain selections: chunks project (and, under TOP, sort and cut to
  TOP + OFFSET rows each); the merge sorts, cuts and renames;
- DISTINCT: chunks de-duplicate, the merge de-duplicates again;
- aggregates: every aggregate becomes partial aggregates per chunk and group
  and a formula over them in the merge: COUNT -> SUM of counts, SUM, MIN,
  MAX as themselves, AVG -> SUM / COUNT, variances and standard deviations
  from per-chunk counts, means and sums of squared deviations (Chan et al.'s
  pairwise update, numerically stable), and DISTINCT aggregates by grouping
  the chunks on the distinct argument too.

Expressions arrive translated to DuckDB (:mod:`qcat.czar.translate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from sqlglot import exp

from qcat.czar.errors import UnsupportedQuery

CHUNKS = "chunks"

_VARIANCES = (exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance, exp.VariancePop)
_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, *_VARIANCES)


class NotSplittable(UnsupportedQuery):
    """The query has no exact per-chunk/merge split (the planner gathers it instead)."""


@dataclass(frozen=True)
class SplitQuery:
    """The per-chunk SELECT and the merge SELECT (over ``chunks``) of one query.

    ``passthrough``: the merge only renames the chunk columns ``c0, c1, ...``
    to the output names, in order (no DISTINCT, ORDER BY, TOP or aggregate).
    """

    chunk: exp.Select
    merge: exp.Select
    passthrough: bool = False


def is_aggregate(node: exp.Expression) -> bool:
    """Whether ``node`` is one of the aggregate functions qcat merges."""
    return isinstance(node, _AGGREGATES)


def has_aggregates(select: exp.Select) -> bool:
    """Whether the query aggregates (in its own scope, not in subqueries)."""
    for part in (*select.expressions, select.args.get("having")):
        if part is None:
            continue

        def inner(node: exp.Expr, part: exp.Expression = part) -> bool:
            return isinstance(node, exp.Subquery | exp.Select) and node is not part

        for node in part.walk(prune=inner):  # a subquery's aggregates are its own
            if is_aggregate(node):
                return True
    return bool(select.args.get("group"))


def splits_as_is(select: exp.Select) -> bool:
    """Whether every chunk can run ``select`` as written and the merge only concatenates.

    No aggregate, DISTINCT, ORDER BY, TOP or OFFSET: :func:`split` cannot refuse
    such a query, so a plan with one task may skip it.
    """
    if any(select.args.get(k) for k in ("distinct", "order", "limit", "offset")):
        return False
    return not has_aggregates(select)


def split(
    select: exp.Select, names: list[str], *, groups_within_chunks: bool = False
) -> SplitQuery:
    """Split ``select`` (FROM already naming the chunk relations); ``names`` are output names.

    ``select`` becomes the per-chunk query (it is changed in place: callers
    pass a tree of their own), which spares copying a large tree. With
    ``groups_within_chunks`` (every group's rows lie in one chunk: grouped by a
    key the tables are partitioned by), each chunk computes its groups whole,
    HAVING included, and the merge only orders, cuts and concatenates.
    """
    if has_aggregates(select) and not groups_within_chunks:
        return _split_aggregate(select, names)
    return _split_plain(select, names)


def limit_value(select: exp.Select, key: str) -> int | None:
    """The number of ``select``'s TOP (``key="limit"``) or OFFSET, if it has one."""
    node = select.args.get(key)
    if node is None:
        return None
    value = node.args.get("expression") or node.this
    return int(value.this)


def _output(i: int) -> str:
    return f"c{i}"


@dataclass(frozen=True)
class _Sort:
    """How one ORDER BY term sorts: descending or not, NULLs first or not."""

    desc: bool
    nulls_first: bool


def _order_targets(select: exp.Select, names: list[str]) -> list[tuple[exp.Expression, _Sort]]:
    """ORDER BY terms as (expression, sort); positions and aliases resolved."""
    order = select.args.get("order")
    if order is None:
        return []
    aliases = {p.alias_or_name: i for i, p in enumerate(select.expressions)}
    out = []
    for term in order.expressions:
        target = term.this
        if isinstance(target, exp.Literal) and not target.is_string:
            position = int(target.this)
            if not 1 <= position <= len(select.expressions):
                raise UnsupportedQuery(f"ORDER BY {position}: there are only {len(names)} columns")
            target = exp.column(_output(position - 1))
            target.meta["qcat_output"] = True
        elif isinstance(target, exp.Column) and not target.table and target.name in aliases:
            target = exp.column(_output(aliases[target.name]))
            target.meta["qcat_output"] = True
        out.append((target, _Sort(bool(term.args.get("desc")), bool(term.args.get("nulls_first")))))
    return out


def _projection(p: exp.Expression) -> exp.Expression:
    return p.this if isinstance(p, exp.Alias) else p


def _final_select(names: list[str], columns: list[exp.Expression]) -> exp.Select:
    return exp.Select(
        expressions=[
            exp.Alias(this=c, alias=exp.to_identifier(n, quoted=True))
            for c, n in zip(columns, names, strict=True)
        ]
    )


def _ordered(expr: exp.Expression, sort: _Sort) -> exp.Ordered:
    # The NULL order the parser recorded (NULLs largest, docs/adql.md), in chunks and merge
    # alike, so a TOP cut per chunk keeps the rows the merge wants.
    return exp.Ordered(this=expr, desc=sort.desc, nulls_first=sort.nulls_first)


def _split_plain(select: exp.Select, names: list[str]) -> SplitQuery:
    top = limit_value(select, "limit")
    offset = limit_value(select, "offset") or 0
    distinct = bool(select.args.get("distinct"))
    targets = _order_targets(select, names)
    chunk = select
    for key in ("order", "limit", "offset"):
        chunk.set(key, None)
    chunk.set(
        "expressions",
        [_alias(_projection(p), _output(i)) for i, p in enumerate(select.expressions)],
    )
    order_terms: list[tuple[exp.Expression, _Sort]] = []
    for j, (target, sort) in enumerate(targets):
        if target.meta.get("qcat_output"):
            order_terms.append((exp.column(target.name), sort))
            continue
        if distinct:
            raise UnsupportedQuery(
                "with SELECT DISTINCT, ORDER BY must use columns of the select list"
            )
        chunk.expressions.append(_alias(target, f"o{j}"))
        order_terms.append((exp.column(f"o{j}"), sort))
    if top is not None:
        if order_terms:
            chunk.set("order", exp.Order(expressions=[_ordered(e, d) for e, d in order_terms]))
        chunk.set("limit", exp.Limit(expression=exp.Literal.number(top + offset)))
    merge = _final_select(names, [exp.column(_output(i)) for i in range(len(names))])
    merge = merge.from_(CHUNKS, copy=False)
    if distinct:
        merge.set("distinct", exp.Distinct())
    if order_terms:
        merge.set("order", exp.Order(expressions=[_ordered(e, d) for e, d in order_terms]))
    if top is not None:
        merge.set("limit", exp.Limit(expression=exp.Literal.number(top)))
    if offset:
        merge.set("offset", exp.Offset(expression=exp.Literal.number(offset)))
    passthrough = not distinct and not order_terms and top is None and not offset
    return SplitQuery(chunk, merge, passthrough)


def _alias(node: exp.Expression, name: str) -> exp.Alias:
    return exp.Alias(this=node, alias=exp.to_identifier(name))


# -- aggregates ------------------------------------------------------------------


@dataclass
class _Partials:
    """The partial aggregates the chunks compute, by name."""

    chunk_columns: list[exp.Expression] = field(default_factory=list)
    count: int = 0
    variance_means: list[tuple[str, str]] = field(default_factory=list)

    by_sql: dict[str, str] = field(default_factory=dict)

    def add(self, expr: exp.Expression) -> str:
        """The name of the partial computing ``expr`` (one column per distinct partial)."""
        key = expr.sql("duckdb")
        if key in self.by_sql:
            return self.by_sql[key]
        name = f"p{self.count}"
        self.count += 1
        self.chunk_columns.append(cast(exp.Expression, exp.alias_(expr, name)))
        self.by_sql[key] = name
        return name


def _col(name: str) -> exp.Column:
    return exp.column(name)


def _split_aggregate(select: exp.Select, names: list[str]) -> SplitQuery:
    groups = list(select.args["group"].expressions) if select.args.get("group") else []
    distinct_args = {
        _agg_arg(a).sql("duckdb"): _agg_arg(a)
        for part in (*select.expressions, select.args.get("having"))
        if part is not None
        for a in part.find_all(*_AGGREGATES)
        if isinstance(a.this, exp.Distinct)
    }
    if len(distinct_args) > 1:
        raise NotSplittable("several DISTINCT aggregates over different values")
    group_names = [f"g{k}" for k in range(len(groups))]
    chunk_groups = [g.copy() for g in groups]
    distinct_name = None
    if distinct_args:
        distinct_name = "d0"
        chunk_groups.append(next(iter(distinct_args.values())).copy())
    partials = _Partials()

    def merged(node: exp.Expression) -> exp.Expression:
        return _merge_expression(node, groups, group_names, partials, distinct_name)

    outputs = [merged(_projection(p)) for p in select.expressions]
    having = select.args.get("having")
    merge_having = merged(having.this) if having is not None else None
    order_terms = []
    for target, sort in _order_targets(select, names):
        if target.meta.get("qcat_output"):
            index = int(target.name[1:])
            order_terms.append((outputs[index].copy(), sort))
        else:
            order_terms.append((merged(target), sort))

    distinct = bool(select.args.get("distinct"))
    top, offset = limit_value(select, "limit"), limit_value(select, "offset")
    chunk = select
    for key in ("order", "limit", "offset", "having", "distinct"):
        chunk.set(key, None)
    keys = [_alias(g, n) for g, n in zip(chunk_groups, [*group_names, "d0"], strict=False)]
    chunk.set("expressions", [*keys, *partials.chunk_columns])
    if chunk_groups:
        chunk.set("group", exp.Group(expressions=[g.copy() for g in chunk_groups]))
    else:
        chunk.set("group", None)

    source: exp.Expression = exp.to_table(CHUNKS)
    if partials.variance_means:
        # The pooled mean of each variance's argument, per group, for the M2 merge.
        windows = [
            exp.alias_(
                exp.Div(
                    this=_window_sum(exp.Mul(this=_col(n), expression=_col(m)), group_names),
                    expression=exp.func("NULLIF", _window_sum(_col(n), group_names), 0),
                ),
                f"{m}_pooled",
            )
            for n, m in partials.variance_means
        ]
        inner = exp.select(exp.Star(), *windows).from_(CHUNKS)
        source = cast(exp.Expression, exp.alias_(exp.Subquery(this=inner), "pooled", table=True))
    merge = _final_select(names, outputs).from_(source, copy=False)
    if groups:
        merge.set("group", exp.Group(expressions=[_col(n) for n in group_names]))
    if merge_having is not None:
        merge.set("having", exp.Having(this=merge_having))
    if distinct:
        merge.set("distinct", exp.Distinct())
    if order_terms:
        merge.set("order", exp.Order(expressions=[_ordered(e, d) for e, d in order_terms]))
    if top is not None:
        merge.set("limit", exp.Limit(expression=exp.Literal.number(top)))
    if offset:
        merge.set("offset", exp.Offset(expression=exp.Literal.number(offset)))
    return SplitQuery(chunk, merge)


def _window_sum(expr: exp.Expression, partition: list[str]) -> exp.Expression:
    return exp.Window(
        this=exp.Sum(this=expr),
        partition_by=[_col(n) for n in partition] or None,
    )


def _agg_arg(node: exp.Expression) -> exp.Expression:
    arg = node.this
    if isinstance(arg, exp.Distinct):
        return arg.expressions[0]
    return arg


def _merge_expression(
    node: exp.Expression,
    groups: list[exp.Expression],
    group_names: list[str],
    partials: _Partials,
    distinct_name: str | None,
) -> exp.Expression:
    """``node`` rewritten over the chunk results: groups and aggregates replaced."""

    def replace(n: exp.Expression) -> exp.Expression:
        for g, name in zip(groups, group_names, strict=True):
            if n == g:
                return _col(name)
        if is_aggregate(n):
            return _merge_aggregate(n, partials, distinct_name)
        return n

    return node.copy().transform(replace, copy=False)


def _merge_aggregate(
    node: exp.Expression, partials: _Partials, distinct_name: str | None
) -> exp.Expression:
    distinct = isinstance(node.this, exp.Distinct)
    arg = _agg_arg(node)
    if distinct:
        assert distinct_name is not None
        d = _col(distinct_name)
        if isinstance(node, exp.Count):
            return exp.Count(this=exp.Distinct(expressions=[d]))
        if isinstance(node, exp.Sum):
            return exp.Sum(this=exp.Distinct(expressions=[d]))
        if isinstance(node, exp.Avg):
            return exp.Avg(this=exp.Distinct(expressions=[d]))
        if isinstance(node, (exp.Min, exp.Max)):
            return type(node)(this=d)
        raise NotSplittable(f"{node.sql('duckdb')}: DISTINCT is not supported here")
    if isinstance(node, exp.Count):
        name = partials.add(exp.Count(this=arg.copy()))
        return exp.Cast(
            this=exp.func("COALESCE", exp.Sum(this=_col(name)), exp.Literal.number(0)),
            to=exp.DataType.build("BIGINT"),
        )
    if isinstance(node, exp.Sum):
        return exp.Sum(this=_col(partials.add(exp.Sum(this=arg.copy()))))
    if isinstance(node, (exp.Min, exp.Max)):
        return type(node)(this=_col(partials.add(type(node)(this=arg.copy()))))
    if isinstance(node, exp.Avg):
        total = partials.add(
            exp.Sum(this=exp.Cast(this=arg.copy(), to=exp.DataType.build("DOUBLE")))
        )
        count = partials.add(exp.Count(this=arg.copy()))
        return exp.Div(
            this=exp.Sum(this=_col(total)),
            expression=exp.func("NULLIF", exp.Sum(this=_col(count)), 0),
        )
    if isinstance(node, _VARIANCES):
        x = exp.Cast(this=arg.copy(), to=exp.DataType.build("DOUBLE"))
        n = partials.add(exp.Count(this=x.copy()))
        mean = partials.add(exp.Avg(this=x.copy()))
        m2 = partials.add(
            exp.Mul(this=exp.VariancePop(this=x.copy()), expression=exp.Count(this=x.copy()))
        )
        if (n, mean) not in partials.variance_means:
            partials.variance_means.append((n, mean))
        pooled = _col(f"{mean}_pooled")
        deviation = exp.Paren(this=exp.Sub(this=_col(mean), expression=pooled))
        squares = exp.Sum(
            this=exp.Add(
                this=exp.func("COALESCE", _col(m2), exp.Literal.number(0)),
                expression=exp.func(
                    "COALESCE",
                    exp.Mul(
                        this=_col(n),
                        expression=exp.Mul(this=deviation, expression=deviation.copy()),
                    ),
                    exp.Literal.number(0),
                ),
            )
        )
        count_all = exp.Sum(this=_col(n))
        population = isinstance(node, (exp.StddevPop, exp.VariancePop))
        denominator = (
            exp.func("NULLIF", count_all, 0)
            if population
            else exp.func("NULLIF", exp.Sub(this=count_all, expression=exp.Literal.number(1)), 0)
        )
        variance: exp.Expression = exp.Div(this=squares, expression=denominator)
        if not population:
            # A sample variance of one value is undefined (NULL), as in DuckDB.
            variance = exp.Case(
                ifs=[
                    exp.If(
                        this=exp.GT(this=count_all.copy(), expression=exp.Literal.number(1)),
                        true=variance,
                    )
                ]
            )
        if isinstance(node, (exp.Stddev, exp.StddevPop, exp.StddevSamp)):
            return exp.Sqrt(this=variance)
        return variance
    raise NotSplittable(f"cannot merge {node.sql('duckdb')}")
