"""Rules of ADQL 2.1 that the grammar alone does not enforce.

:func:`validate` walks a parsed tree and raises :class:`AdqlSyntaxError` at
the offending node for:

- any node that is not part of ADQL as qcat parses it (a safety net for
  trees built or rewritten elsewhere), and calls of functions that are not
  on the allow-list (``unknown function X``);
- a value where a condition is required (``WHERE ra``, ``WHERE CONTAINS(...)``)
  and a condition where a value is required (ADQL has no boolean type);
- CONTAINS / INTERSECTS compared with anything but the literals 0 or 1, or
  with an operator other than ``=`` and ``<>``;
- aggregate functions in WHERE, in JOIN conditions, in GROUP BY, or nested;
- ORDER BY positions beyond the select list, set operations over queries
  with different numbers of columns, and two WITH queries with one name.
"""

from __future__ import annotations

from sqlglot import exp

from qcat.czar.adql import expressions as ax
from qcat.czar.adql import functions as fn
from qcat.czar.adql.errors import AdqlSyntaxError
from qcat.czar.adql.kinds import COMPARISONS, CONDITIONS, is_condition, kind_of, unparen

#: Every expression class a valid tree may contain.
STRUCTURE: frozenset[type[exp.Expression]] = frozenset(
    {
        exp.Select,
        exp.Union,
        exp.Intersect,
        exp.Except,
        exp.Subquery,
        exp.With,
        exp.CTE,
        exp.TableAlias,
        exp.From,
        exp.Join,
        exp.Table,
        exp.Where,
        exp.Group,
        exp.Having,
        exp.Order,
        exp.Ordered,
        exp.Limit,
        exp.Offset,
        exp.Distinct,
        exp.Alias,
        exp.Column,
        exp.Identifier,
        exp.Star,
        exp.Literal,
        exp.Null,
        exp.Paren,
        exp.Neg,
        exp.BitwiseNot,
        exp.Add,
        exp.Sub,
        exp.Mul,
        exp.Div,
        exp.BitwiseAnd,
        exp.BitwiseOr,
        exp.BitwiseXor,
        exp.DPipe,
        *CONDITIONS,
        exp.Case,
        exp.If,
        exp.Cast,
        exp.DataType,
        exp.DataTypeParam,
        exp.Anonymous,
        *fn.ALLOWED_CLASSES,
    }
)


def validate(tree: exp.Expression) -> exp.Expression:
    """Check ``tree`` against the rules above; return it unchanged when it passes.

    When several rules are broken, the error reported is the first in the text.
    """
    ctes: dict[str, exp.Expression] = {}
    errors: list[AdqlSyntaxError] = []
    for node in tree.walk():
        try:
            _check_node(node)
            if isinstance(node, exp.CTE):
                _check_cte_name(node, ctes)
            elif isinstance(node, exp.SetOperation):
                _check_set_operation(node)
            elif isinstance(node, exp.Order):
                _check_order_positions(node)
        except AdqlSyntaxError as e:
            errors.append(e)
    if errors:
        raise min(errors, key=lambda e: (e.line, e.column))
    return tree


def _fail(message: str, node: exp.Expr, expected: str | None = None) -> AdqlSyntaxError:
    meta = node.meta
    return AdqlSyntaxError(message, meta.get("line", 1), meta.get("col", 1), expected=expected)


def _check_node(node: exp.Expr) -> None:
    if type(node) not in STRUCTURE:
        raise _fail(f"{type(node).__name__} is not part of ADQL", node)
    if isinstance(node, exp.Anonymous):
        raise _fail(f"unknown function {node.name}", node)
    role = expected_role(node)
    if role == "condition" and not is_condition(node):
        raise _fail(_not_a_condition(node), node, "a condition")
    if role == "value" and is_condition(node):
        raise _fail(
            "a condition cannot be used as a value here (ADQL has no boolean values)",
            node,
            "a value",
        )
    if isinstance(node, ax.GEOMETRY_PREDICATES):
        _check_predicate_comparison(node)
    if isinstance(node, exp.AggFunc):
        _check_aggregate_place(node)


def expected_role(node: exp.Expr) -> str | None:
    """``"condition"`` or ``"value"``: what the grammar wants where ``node`` stands.

    ``None`` for parts of the query structure (names, clauses).
    """
    parent, key = node.parent, node.arg_key
    if parent is None:
        return None
    if isinstance(parent, exp.Paren):
        return expected_role(parent)
    if isinstance(parent, (exp.Where, exp.Having, exp.And, exp.Or, exp.Not)):
        return "condition"
    if isinstance(parent, exp.Join):
        return "condition" if key == "on" else None
    if isinstance(parent, exp.If):
        case = parent.parent
        simple = isinstance(case, exp.Case) and case.args.get("this") is not None
        return "value" if key == "true" or simple else "condition"
    if isinstance(parent, exp.In) and key == "query":
        return None
    if isinstance(parent, exp.Escape):  # LIKE ... ESCAPE 'c'
        return "condition" if key == "this" else "value"
    if isinstance(parent, (exp.Select, exp.Group)) and key in ("expressions",):
        return "value"
    if isinstance(parent, (exp.Alias, exp.Ordered, exp.Cast, exp.Distinct)):
        return "value" if key in ("this", "expressions") else None
    if isinstance(parent, exp.Case):
        return "value"
    if isinstance(parent, (exp.Binary, exp.Neg, exp.BitwiseNot, exp.Func, exp.Between, exp.In)):
        return "value"
    return None


def _not_a_condition(node: exp.Expr) -> str:
    inner = unparen(node)
    if isinstance(inner, ax.GEOMETRY_PREDICATES):
        name = _function_name(inner)
        return (
            f"{name}(...) gives 1 or 0 and must be compared with one of them, "
            f"for example 1 = {name}(...)"
        )
    what = {"number": "a number", "string": "a string", "geometry": "a geometry"}.get(
        kind_of(node), "a value"
    )
    return f"expected a condition (such as x > 0), found {what}"


def _check_predicate_comparison(node: exp.Expr) -> None:
    name = _function_name(node)
    child = node
    parent = node.parent
    while isinstance(parent, exp.Paren):
        child, parent = parent, parent.parent
    if not isinstance(parent, COMPARISONS):
        return  # used as a value (select list, arithmetic): it is a number
    if not isinstance(parent, (exp.EQ, exp.NEQ)):
        raise _fail(f"{name}(...) must be compared with = 1 or = 0 (or <>)", parent, "=")
    other = parent.expression if parent.this is child else parent.this
    literal = unparen(other)
    if not (
        isinstance(literal, exp.Literal) and not literal.is_string and literal.name in ("0", "1")
    ):
        raise _fail(
            f"{name}(...) gives 1 or 0: compare it with 1 or 0, not with {other.sql()}",
            other,
            "1 or 0",
        )


def _check_aggregate_place(node: exp.Expr) -> None:
    name = _function_name(node)
    ancestor = node.parent
    while ancestor is not None and not isinstance(ancestor, exp.Select):
        if isinstance(ancestor, exp.AggFunc):
            raise _fail(
                f"aggregate functions cannot be nested: {name} inside {_function_name(ancestor)}",
                node,
            )
        if isinstance(ancestor, exp.Where):
            raise _fail(
                f"aggregate function {name} is not allowed in WHERE; to filter groups use HAVING",
                node,
            )
        if isinstance(ancestor, exp.Join):
            raise _fail(f"aggregate function {name} is not allowed in a JOIN condition", node)
        if isinstance(ancestor, exp.Group):
            raise _fail(f"aggregate function {name} is not allowed in GROUP BY", node)
        ancestor = ancestor.parent


def _function_name(node: exp.Expr) -> str:
    return node.sql_name() if isinstance(node, exp.Func) else type(node).__name__


def _check_cte_name(node: exp.CTE, seen: dict[str, exp.Expression]) -> None:
    ident = node.args["alias"].this
    key = ident.name if ident.quoted else ident.name.lower()
    if key in seen:
        raise _fail(f"two WITH queries are named {ident.name}", ident)
    seen[key] = node


def _select_width(query: exp.Expression) -> int | None:
    """Number of columns a query returns, when known without the schema."""
    while isinstance(query, exp.Subquery):
        query = query.this
    if isinstance(query, exp.SetOperation):
        return _select_width(query.this)
    if not isinstance(query, exp.Select):
        return None
    items = query.expressions
    if any(isinstance(e, exp.Star) or isinstance(e.this, exp.Star) for e in items):
        return None
    return len(items)


def _check_set_operation(node: exp.SetOperation) -> None:
    left, right = _select_width(node.this), _select_width(node.expression)
    if left is not None and right is not None and left != right:
        op = type(node).__name__.upper()
        raise _fail(
            f"{op} needs queries with the same number of columns, found {left} and {right}",
            node.expression,
        )


def _check_order_positions(order: exp.Order) -> None:
    parent = order.parent
    width = _select_width(parent) if isinstance(parent, exp.Expression) else None
    for term in order.expressions:
        value = term.this
        if isinstance(value, exp.Literal) and value.is_int:
            position = int(value.name)
            if position < 1 or (width is not None and position > width):
                raise _fail(
                    f"ORDER BY {position} refers to a column that is not in the select list "
                    f"({width} column{'s' if width != 1 else ''})"
                    if width is not None
                    else f"ORDER BY {position}: column positions start at 1",
                    value,
                )
