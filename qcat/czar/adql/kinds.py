"""What a parsed expression is, as far as the text alone tells.

ADQL has no boolean type: a *condition* (comparison, BETWEEN, IN, LIKE,
IS NULL, EXISTS, AND/OR/NOT) may only stand where the grammar wants a
search condition, and a *value* everywhere else. Among values, numbers,
strings and geometries can often be told apart before names are resolved
(a literal, arithmetic, POINT(...)); columns and user functions stay
``unknown`` until the resolve stage knows their types.
"""

from __future__ import annotations

from typing import Literal

from sqlglot import exp

from qcat.czar.adql import expressions as ax

Kind = Literal["condition", "number", "string", "geometry", "unknown"]

#: Expression classes that are conditions (search conditions or predicates).
CONDITIONS: tuple[type[exp.Expression], ...] = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Between,
    exp.In,
    exp.Like,
    exp.ILike,
    exp.Escape,
    exp.Is,
    exp.Exists,
    exp.And,
    exp.Or,
    exp.Not,
)

#: Comparison operators.
COMPARISONS: tuple[type[exp.Expression], ...] = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
)

_NUMERIC: tuple[type[exp.Expression], ...] = (
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Pow,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.BitwiseNot,
    exp.Abs,
    exp.Ceil,
    exp.Degrees,
    exp.Exp,
    exp.Floor,
    exp.Ln,
    exp.Log,
    exp.Pi,
    exp.Radians,
    exp.Rand,
    exp.Round,
    exp.Sqrt,
    exp.Trunc,
    exp.Acos,
    exp.Asin,
    exp.Atan,
    exp.Atan2,
    exp.Cos,
    exp.Cot,
    exp.Sin,
    exp.Tan,
    exp.Count,
    exp.Sum,
    exp.Avg,
    exp.Stddev,
    exp.StddevPop,
    exp.StddevSamp,
    exp.Variance,
    exp.VariancePop,
    ax.AdqlArea,
    ax.AdqlCoord1,
    ax.AdqlCoord2,
    ax.AdqlDistance,
    ax.AdqlContains,
    ax.AdqlIntersects,
    ax.AdqlInUnit,
    ax.QcatAngDist,
    ax.QcatFluxToAbmag,
    ax.QcatAbmagToFlux,
    ax.IvoHealpixIndex,
)

_STRING: tuple[type[exp.Expression], ...] = (exp.DPipe, exp.Lower, exp.Upper, ax.AdqlCoordSys)


def kind_of(node: exp.Expr) -> Kind:
    """The kind of ``node``: a condition, or a value of a known or unknown type."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, CONDITIONS):
        return "condition"
    if isinstance(node, exp.Literal):
        return "string" if node.is_string else "number"
    if isinstance(node, _NUMERIC):
        return "number"
    if isinstance(node, _STRING):
        return "string"
    if isinstance(node, ax.GEOMETRY_VALUED):
        return "geometry"
    return "unknown"


def is_condition(node: exp.Expr) -> bool:
    """Whether ``node`` is a condition (possibly in parentheses)."""
    return kind_of(node) == "condition"


def unparen(node: exp.Expr) -> exp.Expr:
    """``node`` without any parentheses around it."""
    while isinstance(node, exp.Paren):
        node = node.this
    return node
