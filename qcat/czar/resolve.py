"""Resolve: bind the names of a parsed ADQL query to the catalog.

ADQL's case rules: a regular identifier matches whatever its case, a
delimited one ("objectId") only its exact spelling. After checking the
delimited ones, every catalog name is folded to lower case, so the rest of
the pipeline (and DuckDB, which is case-insensitive) compares plainly.
sqlglot's ``qualify`` then gives every column its table alias, expands
``*`` and ``t.*``, and rejects unknown columns; its messages are rewritten
here to name the column and suggest close spellings.

The result carries the output columns with their Felis metadata (unit, UCD,
description), which the services put into VOTable FIELDs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

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
    explicit_alias = {
        id(p) for p in _projections(tree) if isinstance(p, exp.Alias) and p.args.get("alias")
    }
    explicit_names = [id(p) in explicit_alias for p in _projections(tree)]
    _fold_case(tree)
    schema: dict[str, object] = dict(_schema(tables))
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
        raise _resolve_error(str(e), tables) from None
    columns = _output_columns(tree, tables, explicit_names)
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


def _fold_case(tree: exp.Expression) -> None:
    """Lower-case every catalog name (output aliases keep the case they were written in)."""
    for ident in tree.find_all(exp.Identifier):
        parent = ident.parent
        if isinstance(parent, exp.Alias) and parent.args.get("alias") is ident:
            continue
        ident.set("this", ident.this.lower())
        ident.set("quoted", False)


_DUCKDB_TYPES = {
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "binary": "BLOB",
}


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type name of an Arrow column type."""
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    return _DUCKDB_TYPES.get(str(arrow_type), "VARCHAR")


def _schema(tables: dict[str, TableSnapshot]) -> dict[str, dict[str, dict[str, str]]]:
    out: dict[str, dict[str, dict[str, str]]] = {}
    for t in tables.values():
        fields = t.spec.arrow_schema()
        out.setdefault(t.spec.schema_name.lower(), {})[t.spec.name.lower()] = {
            f.name.lower(): duckdb_type(f.type) for f in fields
        }
    return out


_UNRESOLVED = re.compile(r"Column '([^']+)' could not be resolved(?: for table: '([^']+)')?")


def _resolve_error(message: str, tables: dict[str, TableSnapshot]) -> ResolveError:
    found = _UNRESOLVED.search(message)
    if not found:
        return ResolveError(f"cannot resolve the query: {message}")
    column = found.group(1).strip('"')
    names = sorted({c.name for t in tables.values() for c in t.spec.columns})
    close = difflib.get_close_matches(column.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
    real = {n.lower(): n for n in names}
    hint = f"; did you mean {', '.join(real[c] for c in close)}?" if close else ""
    where = f" in table {found.group(2)}" if found.group(2) else ""
    in_tables = ", ".join(t.name for t in tables.values())
    return ResolveError(f"no column {column!r}{where} (tables read: {in_tables}){hint}")


# -- output columns -----------------------------------------------------------


def _projections(tree: exp.Expression) -> list[exp.Expression]:
    query = tree
    while isinstance(query, (exp.SetOperation, exp.Subquery)):
        query = query.this
    return list(query.expressions) if isinstance(query, exp.Select) else []


def _output_columns(
    tree: exp.Expression, tables: dict[str, TableSnapshot], explicit: list[bool]
) -> list[OutputColumn]:
    query = tree
    while isinstance(query, (exp.SetOperation, exp.Subquery)):
        query = query.this
    scope = build_scope(query) if isinstance(query, exp.Select) else None
    out = []
    written_aliases = iter(explicit) if len(explicit) == len(_projections(tree)) else None
    for projection in _projections(tree):
        had_alias = next(written_aliases) if written_aliases is not None else True
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        spec = _column_spec(inner, scope, tables) if scope is not None else None
        name = projection.alias_or_name
        if spec is not None and not had_alias:
            name = spec.name  # the catalog's spelling, not the folded one
        out.append(OutputColumn(name, spec, _geometry_xtype(inner)))
    return out


def _column_spec(
    node: exp.Expression, scope: Scope, tables: dict[str, TableSnapshot]
) -> ColumnSpec | None:
    if not isinstance(node, exp.Column):
        return None
    source = scope.sources.get(node.table)
    if isinstance(source, exp.Table):
        table = tables.get(qualified_name(source))
        if table is None:
            return None
        return next((c for c in table.spec.columns if c.name.lower() == node.name), None)
    if isinstance(source, Scope) and isinstance(source.expression, exp.Select):
        for p in source.expression.expressions:
            if p.alias_or_name == node.name:
                inner = p.this if isinstance(p, exp.Alias) else p
                return _column_spec(inner, source, tables)
    return None


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
    return None
