"""ADQL as a sqlglot dialect: parse with qcat's parser, print ADQL text back.

``sqlglot.parse_one(query, read="adql")`` runs :func:`parse_adql` (the
recursive-descent parser and the validation), and
``tree.sql(dialect="adql")`` or :func:`to_adql` prints a tree as ADQL 2.1.
Printing then parsing gives back an equal tree (the round trip the tests
check); the text is normalised (keywords in upper case, ``JOIN`` as
``INNER JOIN``, comments dropped).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp, generator, tokens
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy

from qcat.czar.adql import expressions as ax
from qcat.czar.adql.keywords import RESERVED


def _coord_sys_args(node: exp.Expression) -> list[Any]:
    coord_sys = node.args.get("coord_sys")
    return [coord_sys] if coord_sys is not None else []


def _plain_point(node: exp.Expression) -> bool:
    """A POINT written as its two coordinates (no coordinate system of its own)."""
    return isinstance(node, ax.AdqlPoint) and node.args.get("coord_sys") is None


def _coordinates(node: exp.Expression) -> list[Any]:
    """A centre or vertex as it was most likely written: two numbers, or one POINT."""
    if _plain_point(node):
        return [node.args["coord1"], node.args["coord2"]]
    return [node]


def _circle_sql(gen: generator.Generator, node: exp.Expression) -> str:
    args = [*_coord_sys_args(node), *_coordinates(node.args["center"]), node.args["radius"]]
    return gen.func("CIRCLE", *args)


def _box_sql(gen: generator.Generator, node: exp.Expression) -> str:
    args = [
        *_coord_sys_args(node),
        *_coordinates(node.args["center"]),
        node.args["width"],
        node.args["height"],
    ]
    return gen.func("BOX", *args)


def _polygon_sql(gen: generator.Generator, node: exp.Expression) -> str:
    vertices = node.expressions
    args: list[Any] = _coord_sys_args(node)
    if all(_plain_point(v) for v in vertices):
        for vertex in vertices:
            args.extend(_coordinates(vertex))
    else:
        args.extend(vertices)
    return gen.func("POLYGON", *args)


def _distance_sql(gen: generator.Generator, node: exp.Expression) -> str:
    a, b = node.this, node.expression
    if _plain_point(a) and _plain_point(b):
        return gen.func("DISTANCE", *_coordinates(a), *_coordinates(b))
    return gen.func("DISTANCE", a, b)


def _log_sql(gen: generator.Generator, node: exp.Expression) -> str:
    if node.expression is not None:  # the base-10 logarithm, LOG10(x)
        return gen.func("LOG10", node.expression)
    return gen.func("LOG", node.this)


class Adql(Dialect):
    """The ADQL 2.1 dialect (registered in sqlglot as ``"adql"``)."""

    # Regular identifiers are case-insensitive, delimited ones case-sensitive.
    NORMALIZATION_STRATEGY = NormalizationStrategy.LOWERCASE
    # ADQL does not say; qcat sorts NULLs as the largest values, like PostgreSQL.
    NULL_ORDERING = "nulls_are_large"

    class Tokenizer(tokens.Tokenizer):
        """Quoting rules only; parsing goes through :mod:`qcat.czar.adql.parser`."""

        QUOTES: ClassVar = ["'"]
        IDENTIFIERS: ClassVar = ['"']
        STRING_ESCAPES: ClassVar = ["'"]
        IDENTIFIER_ESCAPES: ClassVar = ['"']

    class Generator(generator.Generator):
        """Prints ADQL 2.1: TOP instead of LIMIT, MOD() instead of %, ADQL's names."""

        LIMIT_IS_TOP = True
        RESERVED_KEYWORDS: ClassVar = {word.lower() for word in RESERVED}
        TYPE_MAPPING: ClassVar = {
            **generator.Generator.TYPE_MAPPING,
            exp.DType.DOUBLE: "DOUBLE PRECISION",
            exp.DType.INT: "INTEGER",
            exp.DType.FLOAT: "REAL",
        }
        TRANSFORMS: ClassVar = {
            **generator.Generator.TRANSFORMS,
            exp.Ceil: lambda self, e: self.func("CEILING", e.this),
            exp.Ln: lambda self, e: self.func("LOG", e.this),
            exp.Log: _log_sql,
            exp.Mod: lambda self, e: self.func("MOD", e.this, e.expression),
            exp.Pow: lambda self, e: self.func("POWER", e.this, e.expression),
            exp.Round: lambda self, e: self.func("ROUND", e.this, e.args.get("decimals")),
            exp.Trunc: lambda self, e: self.func("TRUNCATE", e.this, e.args.get("decimals")),
            exp.Rand: lambda self, e: self.func("RAND", e.this),
            exp.Variance: lambda self, e: self.func("VARIANCE", e.this),
            exp.VariancePop: lambda self, e: self.func("VAR_POP", e.this),
            exp.Stddev: lambda self, e: self.func("STDDEV", e.this),
            exp.StddevPop: lambda self, e: self.func("STDDEV_POP", e.this),
            exp.StddevSamp: lambda self, e: self.func("STDDEV_SAMP", e.this),
            ax.AdqlCircle: _circle_sql,
            ax.AdqlBox: _box_sql,
            ax.AdqlPolygon: _polygon_sql,
            ax.AdqlDistance: _distance_sql,
        }

        def limit_sql(self, expression: exp.Limit, top: bool = False) -> str:
            if top:  # TOP n stays on the SELECT line, also when pretty-printing
                return f" TOP {self.sql(expression, 'expression')}"
            return super().limit_sql(expression, top)

    def parse(self, sql: str, **opts: Any) -> list[exp.Expr | None]:
        """Parse and validate one ADQL query (sqlglot's ``parse_one(read="adql")``)."""
        from qcat.czar.adql.parse import parse_adql

        return [parse_adql(sql)]


def to_adql(tree: exp.Expression, pretty: bool = False) -> str:
    """``tree`` as ADQL 2.1 text; parsing the text gives back an equal tree."""
    return Adql().generate(tree, pretty=pretty)
