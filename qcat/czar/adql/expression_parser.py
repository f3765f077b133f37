"""Parser of ADQL value expressions and search conditions (no queries).

Conditions and values share one precedence ladder, lowest first: OR, AND,
NOT, predicates (comparison, BETWEEN, IN, LIKE/ILIKE [ESCAPE], IS NULL, EXISTS),
``||``, ``|``, ``^``, ``&``, ``+ -``, ``* /``, unary ``- + ~``, primaries.
Which of the two is allowed where is checked afterwards by :mod:`validate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from sqlglot import exp

from qcat.czar.adql import expressions as ax
from qcat.czar.adql import functions as fn
from qcat.czar.adql.cursor import GRAMMAR_WORDS, Cursor, qualifiers
from qcat.czar.adql.geometry_args import build_geometry
from qcat.czar.adql.kinds import unparen
from qcat.czar.adql.lexer import Token

_COMPARISONS: dict[str, type[exp.Expression]] = {
    "=": exp.EQ,
    "<>": exp.NEQ,
    "!=": exp.NEQ,
    "<": exp.LT,
    ">": exp.GT,
    "<=": exp.LTE,
    ">=": exp.GTE,
}
#: Binary value operators: precedence (higher binds tighter) and class.
_BINARY: dict[str, tuple[int, type[exp.Expression]]] = {
    "||": (1, exp.DPipe),
    "|": (2, exp.BitwiseOr),
    "^": (3, exp.BitwiseXor),
    "&": (4, exp.BitwiseAnd),
    "+": (5, exp.Add),
    "-": (5, exp.Sub),
    "*": (6, exp.Mul),
    "/": (6, exp.Div),
}
_SIMPLE_CAST_TYPES = {
    "SMALLINT": exp.DType.SMALLINT,
    "INTEGER": exp.DType.INT,
    "BIGINT": exp.DType.BIGINT,
    "REAL": exp.DType.FLOAT,
    "TIMESTAMP": exp.DType.TIMESTAMP,
}
_CAST_TYPE_LIST = (
    "SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, CHAR(n), VARCHAR(n), "
    "TIMESTAMP, POINT, CIRCLE or POLYGON"
)


class ExpressionParser(Cursor, ABC):
    """Values, conditions and function calls; subqueries come from the subclass."""

    @abstractmethod
    def parse_select_expression(self) -> exp.Expression:
        """A whole query (``parser.Parser``): values contain subqueries and vice versa."""

    def parse_column(self) -> exp.Column:
        first = self.tok
        parts = [self.parse_identifier("column name")]
        while self.tok.is_op("."):
            self.advance()
            if self.tok.is_op("*"):
                raise self.error(
                    "t.* is only allowed as an item of the select list", self.tok, "a column name"
                )
            parts.append(self.parse_identifier("column name"))
        if len(parts) > 4:
            raise self.error(
                "a column reference has at most four parts: catalog.schema.table.column", first
            )
        if self.tok.is_op("(") and len(parts) > 1:
            raise self.error("function names cannot be qualified", first)
        column = exp.Column(**qualifiers(parts, ("this", "table", "db", "catalog")))
        return self.at(column, first)

    def parse_expression(self) -> exp.Expression:
        """A search condition or a value; :mod:`validate` checks which is allowed where."""
        first = self.tok
        left = self.parse_and()
        while self.accept_word("OR"):
            left = self.at(exp.Or(this=left, expression=self.parse_and()), first)
        return left

    def parse_and(self) -> exp.Expression:
        first = self.tok
        left = self.parse_not()
        while self.accept_word("AND"):
            left = self.at(exp.And(this=left, expression=self.parse_not()), first)
        return left

    def parse_not(self) -> exp.Expression:
        if self.tok.is_word("NOT"):
            not_tok = self.advance()
            self.enter(not_tok)
            node = self.at(exp.Not(this=self.parse_not()), not_tok)
            self.leave()
            return node
        return self.parse_predicate()

    def parse_predicate(self) -> exp.Expression:
        first = self.tok
        if first.is_word("EXISTS"):
            self.advance()
            if not self.tok.is_op("("):
                raise self.expected("'(' and a subquery", "after EXISTS")
            opener = self.advance()
            self.enter(opener)
            query = self.parse_select_expression()
            self.expect_close(opener, " after the subquery")
            self.leave()
            return self.at(exp.Exists(this=query), first)
        left = self.parse_concat()
        tok = self.tok
        if tok.kind == "op" and tok.value in _COMPARISONS:
            self.advance()
            node: exp.Expression = _COMPARISONS[tok.value](
                this=left, expression=self.parse_concat()
            )
            if self.tok.kind == "op" and self.tok.value in _COMPARISONS:
                raise self.error(
                    "comparisons cannot be chained: combine them with AND", self.tok, "AND"
                )
            return self.at(node, first)
        negate = False
        if tok.is_word("NOT"):
            if not self.peek().is_word("BETWEEN", "IN", "LIKE", "ILIKE"):
                self.advance()
                raise self.expected("BETWEEN, IN, LIKE or ILIKE", "after NOT")
            self.advance()
            negate = True
        tok = self.tok
        if tok.is_word("BETWEEN"):
            self.advance()
            low = self.parse_concat()
            self.expect_word("AND", "between the two bounds of BETWEEN")
            node = exp.Between(this=left, low=low, high=self.parse_concat())
        elif tok.is_word("IN"):
            node = self.parse_in(left)
        elif tok.is_word("LIKE", "ILIKE"):
            self.advance()
            pattern = self.parse_concat()
            self.check_pattern(pattern)
            cls = exp.Like if tok.upper == "LIKE" else exp.ILike
            node = cls(this=left, expression=pattern)
            if self.tok.is_word("ESCAPE"):
                node = self.parse_escape(self.at(node, first))
        elif tok.is_word("IS"):
            self.advance()
            is_not = self.accept_word("NOT") is not None
            if not self.tok.is_word("NULL"):
                raise self.expected("NULL", "after IS (ADQL has IS NULL and IS NOT NULL)")
            null = self.at(exp.Null(), self.advance())
            node = self.at(exp.Is(this=left, expression=null), first)
            return self.at(exp.Not(this=node), first) if is_not else node
        else:
            return left
        node = self.at(node, first)
        return self.at(exp.Not(this=node), first) if negate else node

    def parse_in(self, left: exp.Expression) -> exp.Expression:
        self.advance()
        if not self.tok.is_op("("):
            raise self.expected("'(' and a list of values or a subquery", "after IN")
        opener = self.tok
        if self.query_ahead():
            self.advance()
            self.enter(opener)
            query = self.parse_select_expression()
            self.expect_close(opener, " after the subquery")
            self.leave()
            return exp.In(this=left, query=self.at(exp.Subquery(this=query), opener))
        self.advance()
        self.enter(opener)
        if self.tok.is_op(")"):
            raise self.expected("a value", "in the IN list")
        values = [self.parse_expression()]
        while self.accept_op(","):
            values.append(self.parse_expression())
        self.expect_close(opener, " after the IN list")
        self.leave()
        return exp.In(this=left, expressions=values)

    def parse_escape(self, like: exp.Expression) -> exp.Escape:
        """``ESCAPE 'c'`` after a LIKE pattern (SQL-92; a qcat extension to ADQL 2.1)."""
        self.advance()
        char = self.tok
        if char.kind != "string" or len(char.value) != 1:
            raise self.expected("one character in single quotes", "after ESCAPE")
        self.advance()
        return exp.Escape(this=like, expression=self.at(exp.Literal.string(char.value), char))

    def check_pattern(self, pattern: exp.Expression) -> None:
        """A LIKE pattern in double quotes is a name, almost surely meant as a string."""
        if (
            isinstance(pattern, exp.Column)
            and isinstance(pattern.this, exp.Identifier)
            and pattern.this.quoted
            and "%" in pattern.name
        ):
            raise self.error(
                f"a LIKE pattern is a string: write it in single quotes, '{pattern.name}' "
                "(double quotes make a column name)",
                pattern,
                "a string in single quotes",
            )

    def parse_concat(self) -> exp.Expression:
        """A value: operands joined by the binary operators of :data:`_BINARY`."""
        return self.parse_operators(1)

    def parse_operators(self, min_precedence: int) -> exp.Expression:
        # Precedence climbing: one frame per precedence level, not per operator kind.
        first = self.tok
        left = self.parse_unary()
        while True:
            tok = self.tok
            if tok.is_op("%"):
                raise self.error("ADQL has no % operator: write MOD(x, y)", tok, "MOD")
            entry = _BINARY.get(tok.value) if tok.kind == "op" else None
            if entry is None or entry[0] < min_precedence:
                return left
            self.advance()
            right = self.parse_operators(entry[0] + 1)
            node = entry[1](this=left, expression=right)
            if isinstance(node, exp.DPipe):
                node.set("safe", True)  # as sqlglot builds it: operands are cast to strings
            left = self.at(node, first)

    def parse_unary(self) -> exp.Expression:
        tok = self.tok
        if not tok.is_op("-", "+", "~"):
            return self.parse_primary()
        self.advance()
        self.enter(tok)
        operand = self.parse_unary()
        self.leave()
        if tok.value == "+":
            return operand
        cls = exp.Neg if tok.value == "-" else exp.BitwiseNot
        return self.at(cls(this=operand), tok)

    def parse_primary(self) -> exp.Expression:
        tok = self.tok
        if tok.kind == "number":
            self.advance()
            return self.at(exp.Literal.number(tok.value), tok)
        if tok.kind == "string":
            self.advance()
            return self.at(exp.Literal.string(tok.value), tok)
        if tok.kind == "quoted":
            return self.parse_column()
        if tok.kind == "name":
            return self.parse_word()
        if tok.is_op("("):
            return self.parse_parenthesised()
        if tok.is_op("*"):
            raise self.error(
                "'*' is only allowed alone in the select list or in COUNT(*)", tok, "a value"
            )
        if tok.kind == "end":
            raise self.error("the query ends too early: expected a value", tok, "a value")
        raise self.expected("a value")

    def parse_word(self) -> exp.Expression:
        tok = self.tok
        up = tok.upper
        if up == "NULL":
            return self.at(exp.Null(), self.advance())
        if up in ("TRUE", "FALSE"):
            raise self.error(
                f"ADQL has no boolean values: instead of {up} compare with 1 or 0", tok, "a value"
            )
        if up == "CASE":
            return self.parse_case()
        if up == "CAST":
            return self.parse_cast()
        if self.peek().is_op("("):
            return self.parse_call()
        if tok.reserved:
            if fn.lookup(up) is not None:
                raise self.error(
                    f"{up} is a function (write {up}(...)); to use it as a name, write it "
                    f'in double quotes, "{tok.text}"',
                    tok,
                    "'('",
                )
            if up in ("SELECT", "WITH"):
                raise self.error("a subquery must be written in parentheses", tok, "'('")
            raise self.reserved_word(tok, "value" if up in GRAMMAR_WORDS else "name")
        return self.parse_column()

    def parse_parenthesised(self) -> exp.Expression:
        if self.query_ahead():
            return self.either(self.parse_scalar_subquery, self.parse_paren)
        return self.parse_paren()

    def parse_scalar_subquery(self) -> exp.Subquery:
        opener = self.advance()
        self.enter(opener)
        if self.tok.is_word("WITH"):
            raise self.error("WITH is only allowed at the start of the main query", self.tok)
        query = self.parse_select_expression()
        self.expect_close(opener, " after the subquery")
        self.leave()
        return self.at(exp.Subquery(this=query), opener)

    def parse_paren(self) -> exp.Paren:
        opener = self.advance()
        self.enter(opener)
        if self.tok.is_op(")"):
            raise self.expected("a value", "inside the parentheses")
        inner = self.parse_expression()
        self.expect_close(opener, "")
        self.leave()
        return self.at(exp.Paren(this=inner), opener)

    def parse_case(self) -> exp.Case:
        case_tok = self.advance()
        operand = None if self.tok.is_word("WHEN") else self.parse_concat()
        ifs = []
        while self.tok.is_word("WHEN"):
            when_tok = self.advance()
            condition = self.parse_expression()
            self.expect_word("THEN", "after the WHEN condition")
            ifs.append(self.at(exp.If(this=condition, true=self.parse_expression()), when_tok))
        if not ifs:
            raise self.expected("WHEN", "after CASE")
        default = self.parse_expression() if self.accept_word("ELSE") else None
        if not self.tok.is_word("END"):
            raise self.expected(
                "END", f"to close the CASE at line {case_tok.line}, column {case_tok.col}"
            )
        self.advance()
        case = exp.Case(ifs=ifs)
        if operand is not None:
            case.set("this", operand)
        if default is not None:
            case.set("default", default)
        return self.at(case, case_tok)

    def parse_cast(self) -> exp.Cast:
        cast_tok = self.advance()
        if not self.tok.is_op("("):
            raise self.expected("'('", "after CAST")
        opener = self.advance()
        self.enter(opener)
        value = self.parse_expression()
        self.expect_word("AS", "and a type in CAST")
        to = self.parse_cast_type()
        self.expect_close(opener, " after the type in CAST")
        self.leave()
        return self.at(exp.Cast(this=value, to=to), cast_tok)

    def parse_cast_type(self) -> exp.DataType:
        tok = self.tok
        up = tok.upper
        if up in _SIMPLE_CAST_TYPES:
            self.advance()
            return self.at(exp.DataType(this=_SIMPLE_CAST_TYPES[up], nested=False), tok)
        if up == "DOUBLE":
            self.advance()
            self.expect_word("PRECISION", "after DOUBLE")
            return self.at(exp.DataType(this=exp.DType.DOUBLE, nested=False), tok)
        if up in ("CHAR", "VARCHAR"):
            self.advance()
            data_type = exp.DataType(
                this=exp.DType.CHAR if up == "CHAR" else exp.DType.VARCHAR, nested=False
            )
            if self.tok.is_op("("):
                opener = self.advance()
                length = self.tok
                if length.kind != "number" or length.number_form != "integer":
                    raise self.expected(f"the length of {up} (a whole number)")
                self.advance()
                param = self.at(exp.Literal.number(length.value), length)
                data_type.set("expressions", [exp.DataTypeParam(this=param)])
                self.expect_close(opener, f" after the length of {up}")
            return self.at(data_type, tok)
        if up in ("POINT", "CIRCLE", "POLYGON"):
            self.advance()
            return self.at(exp.DataType(this=exp.DType.USERDEFINED, kind=up, nested=False), tok)
        if tok.kind in ("name", "quoted"):
            raise self.error(
                f"{tok.text} is not a type CAST accepts: use {_CAST_TYPE_LIST}", tok, "a type"
            )
        raise self.expected("a type", "after AS in CAST")

    def parse_call(self) -> exp.Expression:
        name_tok = self.advance()
        up = name_tok.upper
        if up in fn.UNSUPPORTED:
            raise self.error(fn.UNSUPPORTED[up], name_tok)
        spec = fn.lookup(up)
        if spec is None and name_tok.reserved:
            raise self.error(f"{up} is a reserved word, not an ADQL function", name_tok)
        if spec is not None and spec.kind == "aggregate":
            return self.parse_aggregate(spec, name_tok)
        args, close = self.parse_arguments(up)
        call: exp.Expression
        if spec is None:
            call = exp.Anonymous(this=name_tok.text, expressions=args)
        elif spec.kind == "geometry":
            call = build_geometry(up, args, close, self.error)
        else:
            self.check_arity(spec, args, close)
            call = self.build_call(spec, args)
        return self.at(call, name_tok)

    def parse_arguments(self, name: str) -> tuple[list[exp.Expression], Token]:
        opener = self.advance()
        self.enter(opener)
        args: list[exp.Expression] = []
        if not self.tok.is_op(")"):
            while True:
                if self.tok.is_op("*"):
                    raise self.error("'*' is only allowed in COUNT(*)", self.tok, "a value")
                args.append(self.parse_expression())
                if not self.accept_op(","):
                    break
        if not self.tok.is_op(")") and self.tok.kind != "end":
            raise self.expected("',' or ')'", f"in the arguments of {name}")
        close = self.expect_close(opener, f" after the arguments of {name}")
        self.leave()
        return args, close

    def check_arity(self, spec: fn.FunctionSpec, args: list[exp.Expression], close: Token) -> None:
        n = len(args)
        if spec.max_args is not None and n > spec.max_args:
            raise self.error(
                f"too many arguments: {spec.name} takes {spec.arity_text()}, found {n}",
                args[spec.max_args],
                "')'",
            )
        if n < spec.min_args:
            raise self.error(
                f"{spec.name} takes {spec.arity_text()}, found {n}", close, "an argument"
            )

    def build_call(self, spec: fn.FunctionSpec, args: list[exp.Expression]) -> exp.Expression:
        if spec.name == "IN_UNIT":
            unit = unparen(args[1])
            if not (isinstance(unit, exp.Literal) and unit.is_string):
                quoted = isinstance(unit, exp.Column) and unit.this.args.get("quoted")
                hint = " (double quotes make a column name)" if quoted else ""
                raise self.error(
                    f"the unit of IN_UNIT must be a string in single quotes, such as 'deg'{hint}",
                    args[1],
                    "a string",
                )
            return ax.AdqlInUnit(this=args[0], unit=unit)
        assert spec.build is not None
        return spec.build(args)

    def parse_aggregate(self, spec: fn.FunctionSpec, name_tok: Token) -> exp.Expression:
        opener = self.advance()
        self.enter(opener)
        arg: exp.Expression
        if self.tok.is_op("*"):
            if spec.name != "COUNT":
                raise self.error(
                    f"only COUNT accepts *: {spec.name} needs a value", self.tok, "a value"
                )
            arg = self.at(exp.Star(), self.advance())
        else:
            quantifier = self.tok if self.tok.is_word("DISTINCT") else None
            if quantifier is not None and spec.name not in fn.SET_FUNCTIONS:
                raise self.error(
                    "DISTINCT is only allowed in COUNT, SUM, AVG, MIN and MAX", quantifier
                )
            if quantifier is not None or self.tok.is_word("ALL"):
                self.advance()
            if self.tok.is_op("*"):
                raise self.error(
                    f"{spec.name}({self.tokens[self.i - 1].upper} *) is not valid: name a column",
                    self.tok,
                    "a value",
                )
            if self.tok.is_op(")"):
                raise self.expected(
                    "a value" + (" or *" if spec.name == "COUNT" else ""), f"in {spec.name}()"
                )
            value = self.parse_expression()
            arg = self.at(exp.Distinct(expressions=[value]), quantifier) if quantifier else value
        if self.tok.is_op(","):
            raise self.error(f"{spec.name} takes one value", self.tok, "')'")
        self.expect_close(opener, f" after the argument of {spec.name}")
        self.leave()
        call = spec.expression(this=arg)
        if isinstance(call, exp.Count):
            call.set("big_int", True)  # as sqlglot builds it: COUNT is a BIGINT
        return self.at(call, name_tok)
