"""Resolve: bind the names of a parsed ADQL query to the catalog.

ADQL's case rules: a regular identifier matches whatever its case, a
delimited one ("objectId") only its exact spelling. After checking the
delimited ones, every catalog name is folded to lower case, so the rest of
the pipeline (and DuckDB, which is case-insensitive) compares plainly.
sqlglot's ``qualify`` then gives every column its table alias, expands
``*`` and ``t.*``, and rejects unknown columns; its messages are rewritten
here to name the column and suggest close spellings.

The result carries the output columns with their Felis metadata (unit, UCD,
description), which the services put into VOTable FIELDs. Output names follow
ADQL's case rules too: an alias keeps the spelling it was written with, a
column (also one reached through a derived table, a WITH query, ``*`` or the
merged key of a USING or NATURAL join) the catalog's spelling.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.schema import MappingSchema

from partition.hats_writer import HEALPIX_COLUMN
from partition.healpix import radec_to_healpix29
from partition.layout import HEALPIX_ORDER
from qcat.czar.catalog import CatalogSnapshot, TableSnapshot
from qcat.czar.errors import ResolveError
from qcat.schema import ColumnSpec


@dataclass(frozen=True)
class OutputColumn:
    """One column of a query's result, with what the catalog says about it."""

    name: str
    column: ColumnSpec | None = None
    #: ``point``, ``circle`` or ``polygon`` for geometry values (DALI xtype).
    xtype: str | None = None


@dataclass(frozen=True)
class ResolvedQuery:
    """A qualified query tree and the tables it reads (keyed by lower-case name)."""

    tree: exp.Expression
    tables: dict[str, TableSnapshot]
    columns: tuple[OutputColumn, ...]

    def table_of(self, node: exp.Table) -> TableSnapshot:
        """The catalog table a FROM item names."""
        return self.tables[qualified_name(node)]


def qualified_name(node: exp.Table) -> str:
    """``schema.table`` of a (resolved, lower-cased) table node."""
    return f"{node.db}.{node.name}" if node.db else node.name


def resolve(tree: exp.Expression, catalog: CatalogSnapshot) -> ResolvedQuery:
    """Bind ``tree`` (from :func:`qcat.czar.adql.parse_adql`) to ``catalog``."""
    tree = tree.copy()
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables = _bind_tables(tree, catalog, ctes)
    _check_delimited_columns(tree, tables)
    _remember_aliases(tree)
    _name_expressions(tree)
    # The names as written, for messages: folding loses the user's spelling.
    written = {c.name.lower(): c.name for c in tree.find_all(exp.Column)}
    _fold_case(tree)
    # Every name is lower case already: sqlglot need not normalize the schema again.
    mapping: dict[str, object] = dict(_schema(tables))
    schema = MappingSchema(mapping, dialect="duckdb", normalize=False)
    try:
        tree = qualify(
            tree,
            schema=schema,
            dialect="duckdb",
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )
    except OptimizeError as e:
        raise _resolve_error(str(e), tables, tree, written) from None
    _bind_column_functions(tree, tables)
    columns = _output_columns(tree, tables)
    return ResolvedQuery(tree, tables, tuple(columns))


# -- tables -------------------------------------------------------------------


def _bind_tables(
    tree: exp.Expression, catalog: CatalogSnapshot, ctes: set[str]
) -> dict[str, TableSnapshot]:
    known = {t.name.lower(): t for t in catalog.tables()}
    by_short: dict[str, list[TableSnapshot]] = {}
    for t in catalog.tables():
        by_short.setdefault(t.spec.name.lower(), []).append(t)
    bound: dict[str, TableSnapshot] = {}
    for node in list(tree.find_all(exp.Table)):
        if not node.db and node.name.lower() in ctes:
            continue
        written = f"{node.db}.{node.name}" if node.db else node.name
        if node.db:
            table = known.get(written.lower())
        else:
            candidates = by_short.get(node.name.lower(), [])
            if len(candidates) > 1:
                raise ResolveError(
                    f"table name {node.name!r} is ambiguous: qualify it as one of "
                    + ", ".join(t.name for t in candidates)
                )
            table = candidates[0] if candidates else None
        if table is None:
            close = difflib.get_close_matches(written.lower(), list(known), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(known[c].name for c in close)}?" if close else ""
            raise ResolveError(f"no table {written!r} in this service{hint}")
        schema_id = node.args.get("db")
        table_id = node.this
        if (
            isinstance(schema_id, exp.Identifier)
            and schema_id.quoted
            and schema_id.this != table.spec.schema_name
        ) or (
            isinstance(table_id, exp.Identifier)
            and table_id.quoted
            and table_id.this != table.spec.name
        ):
            raise ResolveError(
                f"no table {written!r}: delimited identifiers are case-sensitive; "
                f"the table is {table.name}"
            )
        node.set("db", exp.to_identifier(table.spec.schema_name.lower()))
        node.set("this", exp.to_identifier(table.spec.name.lower()))
        node.set("catalog", None)
        bound[table.name.lower()] = table
    return bound


def _check_delimited_columns(tree: exp.Expression, tables: dict[str, TableSnapshot]) -> None:
    names = {c.name for t in tables.values() for c in t.spec.columns}
    aliases = {a.alias for a in tree.find_all(exp.Alias)}
    for column in tree.find_all(exp.Column):
        ident = column.this
        if isinstance(ident, exp.Identifier) and ident.quoted:
            if ident.this in names or ident.this in aliases:
                continue
            folded = {n.lower(): n for n in names}
            if ident.this.lower() in folded:
                raise ResolveError(
                    f'no column "{ident.this}": delimited identifiers are case-sensitive; '
                    f"the column is {folded[ident.this.lower()]}"
                )


#: ``meta`` key of an ``exp.Alias`` holding the alias as the query wrote it.
WRITTEN_ALIAS = "qcat_written_alias"


def _remember_aliases(tree: exp.Expression) -> None:
    """Record every select-list alias as written: folding (and ``qualify``) lower-case them."""
    for alias in tree.find_all(exp.Alias):
        ident = alias.args.get("alias")
        if isinstance(ident, exp.Identifier):
            alias.meta[WRITTEN_ALIAS] = ident.this


def _name_expressions(tree: exp.Expression) -> None:
    """Name each unnamed select item other than a column ``_col_<position>``.

    ``qualify`` would name ``CAST(x AS ...)`` (or a literal) after ``x``, and
    then ``ORDER BY x`` or ``GROUP BY x`` would bind to that item instead of
    the column ``x``, which is what the query means (and what DuckDB does).
    """
    for select in tree.find_all(exp.Select):
        for i, item in enumerate(list(select.expressions)):
            if not isinstance(item, (exp.Alias, exp.Column, exp.Star)):
                item.replace(exp.alias_(item.copy(), f"_col_{i}"))


def _fold_case(tree: exp.Expression) -> None:
    """Lower-case every name, so DuckDB and ``qualify`` compare them plainly.

    A delimited name stays quoted when it needs quotes to be a name at all
    (``"My Id"``); DuckDB compares quoted names without regard to case too.
    """
    for ident in tree.find_all(exp.Identifier):
        text = ident.this.lower()
        ident.set("this", text)
        ident.set("quoted", bool(ident.quoted) and not _PLAIN_NAME.fullmatch(text))


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def _schema(tables: dict[str, TableSnapshot]) -> dict[str, dict[str, dict[str, str]]]:
    out: dict[str, dict[str, dict[str, str]]] = {}
    for t in tables.values():
        out.setdefault(t.spec.schema_name.lower(), {})[t.spec.name.lower()] = t.column_types
    return out


_UNRESOLVED = re.compile(r"Column '([^']+)' could not be resolved(?: for table: '([^']+)')?")


#: sqlglot's message for a qualified column (``s.nope``) its table lacks.
_UNKNOWN = re.compile(r"Unknown column: (\S+)")


def _resolve_error(
    message: str,
    tables: dict[str, TableSnapshot],
    tree: exp.Expression,
    written: dict[str, str],
) -> ResolveError:
    found = _UNRESOLVED.search(message)
    unknown = _UNKNOWN.search(message)
    if found:
        column, qualifier = found.group(1).strip('"'), found.group(2)
    elif unknown:
        column = unknown.group(1).strip('"')
        qualifier = _qualifier_of(tree, column)
    else:
        return ResolveError(f"cannot resolve the query: {message}")
    names = sorted({c.name for t in tables.values() for c in t.spec.columns})
    real = {n.lower(): n for n in names}
    holders = [t.name for t in tables.values() if column.lower() in _lower_names(t)]
    if len(holders) > 1 and not qualifier:
        return ResolveError(
            f"column {real[column.lower()]!r} is ambiguous: it is in {', '.join(holders)}; "
            "qualify it with a table name or alias"
        )
    where = ""
    if qualifier:
        table = _table_named(tree, qualifier, tables)
        if table is not None:  # suggest from the table the user named
            names = [c.name for c in table.spec.columns]
            where = f" in table {table.name} ({qualifier})"
        else:
            where = f" in table {qualifier}"
    close = difflib.get_close_matches(column.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(real[c] for c in close)}?" if close else ""
    if qualifier and holders:  # the right name on the wrong table of a join
        hint += f"; {', '.join(holders)} has it"
    in_tables = ", ".join(t.name for t in tables.values())
    shown = written.get(column.lower(), column)
    return ResolveError(f"no column {shown!r}{where} (tables read: {in_tables}){hint}")


def _qualifier_of(tree: exp.Expression, column: str) -> str | None:
    """The table qualifier the query wrote ``column`` with, if it wrote one."""
    for node in tree.find_all(exp.Column):
        if node.name.lower() == column.lower() and node.table:
            return node.table
    return None


def _table_named(
    tree: exp.Expression, qualifier: str, tables: dict[str, TableSnapshot]
) -> TableSnapshot | None:
    """The catalog table a FROM item of ``tree`` aliased (or named) ``qualifier`` reads."""
    for node in tree.find_all(exp.Table):
        if qualifier.lower() in (node.alias_or_name.lower(), node.name.lower()):
            return tables.get(qualified_name(node))
    return None


def _lower_names(table: TableSnapshot) -> set[str]:
    return {c.name.lower() for c in table.spec.columns}


# -- functions that need to know their columns ----------------------------------

#: ``meta`` key of a column read by IN_UNIT: the unit the catalog gives it.
UNIT = "qcat_unit"


def _bind_column_functions(tree: exp.Expression, tables: dict[str, TableSnapshot]) -> None:
    """Give IN_UNIT the unit of its column, and write IVO_HEALPIX_INDEX in SQL.

    Both look through derived tables and WITH queries to the catalog column.
    """
    from qcat.czar.adql.expressions import AdqlInUnit, IvoHealpixIndex

    if tree.find(AdqlInUnit, IvoHealpixIndex) is None:
        return  # most queries: no need to build the scopes
    for scope in traverse_scope(tree):
        for column in scope.columns:
            parent = column.parent
            if isinstance(parent, AdqlInUnit) and column.arg_key == "this":
                spec = _column_spec(column, scope, tables)
                if spec is not None and spec.unit:
                    column.meta[UNIT] = spec.unit
        for node in list(scope.expression.find_all(IvoHealpixIndex)):
            if _scope_of(node, scope):
                node.replace(_healpix_index(node, scope, tables))


def _scope_of(node: exp.Expression, scope: Scope) -> bool:
    """Whether ``node`` belongs to ``scope`` itself, not to a subquery inside it."""
    ancestor = node.parent
    while ancestor is not None and ancestor is not scope.expression:
        if isinstance(ancestor, (exp.Select, exp.SetOperation)):
            return False
        ancestor = ancestor.parent
    return True


def _healpix_index(
    node: exp.Expression, scope: Scope, tables: dict[str, TableSnapshot]
) -> exp.Expression:
    """``IVO_HEALPIX_INDEX(order, ra, dec)`` as DuckDB SQL.

    For the main position of a director table, every row already holds the
    NESTED index at order 29 (``_healpix_29``): the order-``k`` index is that
    shifted right by ``2 (29 - k)`` bits. For constants it is computed here.
    """
    from qcat.czar.constants import constant_number
    from qcat.czar.errors import UnsupportedQuery

    order = constant_number(node.args["order"])
    if order is None or order != int(order) or not 0 <= order <= HEALPIX_ORDER:
        raise UnsupportedQuery(
            f"IVO_HEALPIX_INDEX: the order must be a whole number from 0 to {HEALPIX_ORDER}, "
            f"found {node.args['order'].sql('adql')}"
        )
    shift = exp.Literal.number(2 * (HEALPIX_ORDER - int(order)))
    ra, dec = node.args["ra"], node.args["dec"]
    ra_value, dec_value = constant_number(ra), constant_number(dec)
    if ra_value is not None and dec_value is not None:
        if not (0.0 <= ra_value <= 360.0 and -90.0 <= dec_value <= 90.0):
            raise UnsupportedQuery(f"IVO_HEALPIX_INDEX: no position ({ra_value}, {dec_value})")
        index = radec_to_healpix29(np.array([ra_value]), np.array([dec_value]))[0]
        value = exp.Literal.number(int(index) >> int(shift.this))
        return exp.Cast(this=value, to=exp.DataType.build("BIGINT"))
    position = _main_position_of(ra, dec, scope, tables)
    if position is None:
        raise UnsupportedQuery(
            "IVO_HEALPIX_INDEX is only available for constants and for the main position "
            "columns of a table with positions (such as coord_ra, coord_dec of demo.Object)"
        )
    return exp.Paren(this=exp.BitwiseRightShift(this=position, expression=shift))


def _main_position_of(
    ra: exp.Expression, dec: exp.Expression, scope: Scope, tables: dict[str, TableSnapshot]
) -> exp.Column | None:
    """``alias._healpix_29`` when ``ra``, ``dec`` are a director table's main position."""
    if not (isinstance(ra, exp.Column) and isinstance(dec, exp.Column) and ra.table == dec.table):
        return None
    source = scope.sources.get(ra.table)
    table = tables.get(qualified_name(source)) if isinstance(source, exp.Table) else None
    if table is None or table.spec.kind != "director" or not table.partitioned:
        return None
    spec = table.spec
    if (ra.name, dec.name) != ((spec.ra_column or "").lower(), (spec.dec_column or "").lower()):
        return None
    return exp.column(HEALPIX_COLUMN, table=ra.table)


# -- output columns -----------------------------------------------------------


def _projections(tree: exp.Expression) -> list[exp.Expression]:
    query = tree
    while isinstance(query, (exp.SetOperation, exp.Subquery)):
        query = query.this
    return list(query.expressions) if isinstance(query, exp.Select) else []


def _output_columns(tree: exp.Expression, tables: dict[str, TableSnapshot]) -> list[OutputColumn]:
    query = tree
    while isinstance(query, (exp.SetOperation, exp.Subquery)):
        query = query.this
    if not isinstance(query, exp.Select):
        return []
    scope = _tables_scope(query) or build_scope(query)
    out = []
    for projection in query.expressions:
        name, spec = _describe(projection, scope, tables) if scope else (None, None)
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        out.append(OutputColumn(name or projection.alias_or_name, spec, _geometry_xtype(inner)))
    return out


def _tables_scope(select: exp.Select) -> Scope | None:
    """The scope of a SELECT that reads catalog tables only (no WITH, no derived tables).

    Its sources are the table nodes by alias: built directly, as the common
    case does not need sqlglot to walk the whole tree again.
    """
    if select is not select.root() or select.args.get("with_"):
        return None
    from_ = select.args.get("from_")
    items = [from_.this] if from_ is not None else []
    items.extend(j.this for j in select.args.get("joins") or [])
    if not items or not all(isinstance(i, exp.Table) and i.alias for i in items):
        return None
    return Scope(select, sources={i.alias: i for i in items})


def _describe(
    projection: exp.Expression, scope: Scope, tables: dict[str, TableSnapshot]
) -> tuple[str | None, ColumnSpec | None]:
    """Output name and catalog column of one (qualified) select item of ``scope``.

    The name is the alias as written, else the catalog's spelling of the
    column the item names (directly, through a derived table or WITH query,
    or as the merged key ``COALESCE(a.k, b.k)`` of USING and NATURAL joins),
    also for ``CAST(column AS ...)``, which SQL names after the column.
    ``None`` when qcat has nothing better than ``qualify``'s name (``_col_0``).
    """
    inner = projection.this if isinstance(projection, exp.Alias) else projection
    written = projection.meta.get(WRITTEN_ALIAS) if isinstance(projection, exp.Alias) else None
    spec = _column_spec(inner, scope, tables)
    if written is not None:
        return written, spec
    if isinstance(inner, exp.Column):
        return _column_name(inner, scope, tables), spec
    if isinstance(inner, exp.Coalesce) and _is_merged_key(inner):
        return _column_name(inner.this, scope, tables), spec
    if isinstance(inner, exp.Cast) and isinstance(inner.this, exp.Column):
        return _column_name(inner.this, scope, tables), spec  # named after x, as in SQL
    return None, spec


def _source_item(column: exp.Column, scope: Scope) -> tuple[exp.Expression, Scope] | None:
    """The select item of a derived table or WITH query that ``column`` reads."""
    source = scope.sources.get(column.table)
    if isinstance(source, Scope) and isinstance(source.expression, exp.Select):
        for p in source.expression.expressions:
            if p.alias_or_name == column.name:
                return p, source
    return None


def _column_name(column: exp.Column, scope: Scope, tables: dict[str, TableSnapshot]) -> str:
    source = scope.sources.get(column.table)
    if isinstance(source, exp.Table):
        table = tables.get(qualified_name(source))
        if table is not None:
            spec = table.folded_columns.get(column.name)
            return column.name if spec is None else spec.name
    item = _source_item(column, scope)
    if item is not None:
        name, _ = _describe(*item, tables)
        if name is not None:
            return name
    return column.name


def _column_spec(
    node: exp.Expression, scope: Scope, tables: dict[str, TableSnapshot]
) -> ColumnSpec | None:
    if isinstance(node, exp.Coalesce) and _is_merged_key(node):
        node = node.this  # the key of a USING or NATURAL join
    if not isinstance(node, exp.Column):
        return None
    source = scope.sources.get(node.table)
    if isinstance(source, exp.Table):
        table = tables.get(qualified_name(source))
        if table is None:
            return None
        return table.folded_columns.get(node.name)
    item = _source_item(node, scope)
    if item is not None:
        projection, inner_scope = item
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        return _column_spec(inner, inner_scope, tables)
    return None


def _is_merged_key(node: exp.Coalesce) -> bool:
    """``COALESCE(a.k, b.k, ...)``: how ``qualify`` writes the key of USING and NATURAL."""
    items = [node.this, *node.expressions]
    return all(isinstance(i, exp.Column) for i in items) and len({i.name for i in items}) == 1


def _geometry_xtype(node: exp.Expression) -> str | None:
    from qcat.czar.adql.expressions import (
        AdqlBox,
        AdqlCentroid,
        AdqlCircle,
        AdqlPoint,
        AdqlPolygon,
    )

    if isinstance(node, (AdqlPoint, AdqlCentroid)):
        return "point"
    if isinstance(node, AdqlCircle):
        return "circle"
    if isinstance(node, (AdqlPolygon, AdqlBox)):
        return "polygon"
    if isinstance(node, exp.Cast) and node.to.this == exp.DType.USERDEFINED:
        kind = str(node.to.args.get("kind") or "").lower()
        return kind if kind in ("point", "circle", "polygon") else None
    return None
