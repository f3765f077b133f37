"""Recursive-descent parser for ADQL 2.1 that builds a sqlglot syntax tree.

It follows the BNF of the recommendation (appendix A) and accepts nothing
else, so no DuckDB or PostgreSQL syntax can slip through; every error names
what was found and what was expected, at the offending token. The tree it
builds uses sqlglot's own classes (see ``docs/adql.md`` for the shapes) and
the classes of :mod:`expressions` for ADQL's functions. Every node carries
its position in ``node.meta``: ``line`` and ``col`` (1-based, of its first
character) and ``start``/``end`` (0-based offsets of its first and last
character).

Semantic rules (conditions vs values, aggregates, the allow-list of
functions, CONTAINS compared with 0 or 1...) are checked afterwards by
:mod:`validate`.
"""

from __future__ import annotations

from sqlglot import exp

from qcat.czar.adql.cursor import qualifiers
from qcat.czar.adql.errors import AdqlSyntaxError
from qcat.czar.adql.expression_parser import ExpressionParser
from qcat.czar.adql.lexer import Token

_SET_OPERATIONS: dict[str, type[exp.SetOperation]] = {
    "UNION": exp.Union,
    "EXCEPT": exp.Except,
    "INTERSECT": exp.Intersect,
}


def parse_tree(text: str) -> exp.Expression:
    """Parse one ADQL query into a syntax tree (grammar only, not yet validated)."""
    parser = Parser(text)
    try:
        return parser.parse_query()
    except RecursionError:
        raise parser.error("the query is too deeply nested", parser.tok) from None


class Parser(ExpressionParser):
    """One parse of one query: the query structure (SELECT, FROM, set operations)."""

    def parse_query(self) -> exp.Expression:
        """``[WITH ...] select_expression [;]`` and nothing after it."""
        tok = self.tok
        if tok.kind == "end":
            raise self.error("the query is empty: expected SELECT", tok, "SELECT")
        with_ = self.parse_with() if tok.is_word("WITH") else None
        if not (self.tok.is_word("SELECT") or self.tok.is_op("(")):
            raise self.not_a_query(self.tok, after_with=with_ is not None)
        query = self.parse_select_expression()
        while isinstance(query, exp.Subquery) and not (
            query.args.get("order") or query.args.get("offset")
        ):
            query = query.this  # a query written in parentheses as a whole
        if with_ is not None:
            query.set("with_", with_)
        if self.accept_op(";") and self.tok.kind != "end":
            raise self.error(
                f"only one query is allowed, found a second statement after ';' "
                f"(starting with {self.tok.describe()})",
                self.tok,
                "the end of the query",
            )
        if self.tok.kind != "end":
            raise self.junk_after_query(self.tok)
        return query

    def not_a_query(self, tok: Token, after_with: bool) -> AdqlSyntaxError:
        if after_with:
            return self.expected("SELECT", "after the WITH clause")
        if tok.kind == "name" and tok.upper != "SELECT":
            return self.error(
                f"an ADQL query starts with SELECT (or WITH); {tok.upper} statements are "
                "not allowed",
                tok,
                "SELECT",
            )
        return self.expected("SELECT", "at the start of the query")

    def junk_after_query(self, tok: Token) -> AdqlSyntaxError:
        if tok.is_word("LIMIT"):
            return self.error(
                "LIMIT is not ADQL: to limit the number of rows write SELECT TOP n ...", tok, "TOP"
            )
        if tok.is_word("FETCH"):
            return self.error("FETCH is not ADQL: write SELECT TOP n ...", tok, "TOP")
        if tok.is_op(")"):
            return self.error("found ')' without a matching '('", tok)
        if tok.is_word(*_SET_OPERATIONS):
            return self.error(
                f"{tok.upper} cannot follow ORDER BY or OFFSET: they apply to the whole set "
                "operation and go at its end (put a query in parentheses to sort it alone)",
                tok,
            )
        if tok.is_word("ORDER"):
            return self.error("ORDER BY must come before OFFSET", tok)
        if tok.is_word("WHERE", "GROUP", "HAVING", "FROM"):
            return self.error(
                f"{tok.upper} is out of place here (clauses go in the order "
                "FROM, WHERE, GROUP BY, HAVING, ORDER BY, OFFSET)",
                tok,
            )
        return self.expected("the end of the query")

    def parse_with(self) -> exp.With:
        with_tok = self.advance()
        ctes = [self.parse_cte()]
        while self.accept_op(","):
            ctes.append(self.parse_cte())
        return self.at(exp.With(expressions=ctes), with_tok)

    def parse_cte(self) -> exp.CTE:
        start = self.tok
        if start.is_word("RECURSIVE") and self.peek().kind in ("name", "quoted"):
            raise self.error("recursive WITH queries are not ADQL", start)
        name = self.parse_identifier("name for the WITH query")
        if self.tok.is_op("("):
            raise self.error("a column list after a WITH name is not ADQL", self.tok, "AS")
        self.expect_word("AS", "after the name of the WITH query")
        if not self.tok.is_op("("):
            raise self.expected("'(' and a query", "after AS")
        opener = self.advance()
        self.enter(opener)
        query = self.parse_select_expression()
        self.expect_close(opener, " after the WITH query")
        self.leave()
        alias = self.at(exp.TableAlias(this=name), name)
        return self.at(exp.CTE(this=query, alias=alias), start)

    def parse_select_expression(self) -> exp.Expression:
        """A query, set operations included, then ORDER BY and OFFSET."""
        query = self.parse_set_expression()
        if self.tok.is_word("ORDER"):
            query.set("order", self.parse_order_by())
        if self.tok.is_word("OFFSET"):
            offset_tok = self.advance()
            value = self.parse_row_count("OFFSET", "a number of rows to skip")
            query.set("offset", self.at(exp.Offset(expression=value), offset_tok))
        return query

    def parse_set_expression(self) -> exp.Expression:
        first = self.tok
        left = self.parse_set_term()
        while self.tok.is_word("UNION", "EXCEPT"):
            op = self.advance()
            keep_all = self.accept_word("ALL") is not None
            right = self.parse_set_term()
            node = _SET_OPERATIONS[op.upper](this=left, expression=right, distinct=not keep_all)
            left = self.at(node, first)
        return left

    def parse_set_term(self) -> exp.Expression:
        first = self.tok
        left = self.parse_set_primary()
        while self.tok.is_word("INTERSECT"):
            self.advance()
            keep_all = self.accept_word("ALL") is not None
            right = self.parse_set_primary()
            left = self.at(exp.Intersect(this=left, expression=right, distinct=not keep_all), first)
        return left

    def parse_set_primary(self) -> exp.Expression:
        tok = self.tok
        if tok.is_word("SELECT"):
            return self.parse_select_query()
        if tok.is_op("("):
            opener = self.advance()
            self.enter(opener)
            query = self.parse_select_expression()
            self.expect_close(opener, " after the query")
            self.leave()
            return self.at(exp.Subquery(this=query), opener)
        if tok.is_word("WITH"):
            raise self.error("WITH is only allowed at the start of the main query", tok, "SELECT")
        raise self.expected("SELECT")

    def parse_select_query(self) -> exp.Select:
        select_tok = self.advance()
        distinct = None
        if self.tok.is_word("DISTINCT"):
            distinct = self.at(exp.Distinct(), self.advance())
        else:
            self.accept_word("ALL")
        limit = None
        if self.tok.is_word("TOP"):
            top_tok = self.advance()
            value = self.parse_row_count("TOP", "a number of rows")
            limit = self.at(exp.Limit(expression=value), top_tok)
            if self.tok.is_word("DISTINCT", "ALL"):
                raise self.error(
                    f"{self.tok.upper} must come before TOP: SELECT {self.tok.upper} TOP n ...",
                    self.tok,
                )
        items = self.parse_select_list()
        if not self.tok.is_word("FROM"):
            if self.tok.kind == "end":
                raise self.error(
                    "expected FROM and a table after the select list (ADQL queries always "
                    "read a table)",
                    self.tok,
                    "FROM",
                )
            raise self.expected("',' or FROM", "after the select list item")
        from_, joins = self.parse_from()
        select = exp.Select(expressions=items, from_=from_)
        if distinct is not None:
            select.set("distinct", distinct)
        if limit is not None:
            select.set("limit", limit)
        if joins:
            select.set("joins", joins)
        if self.tok.is_word("WHERE"):
            where_tok = self.advance()
            select.set("where", self.at(exp.Where(this=self.parse_expression()), where_tok))
        if self.tok.is_word("GROUP"):
            group_tok = self.advance()
            self.expect_word("BY", "after GROUP")
            terms = [self.parse_expression()]
            while self.accept_op(","):
                terms.append(self.parse_expression())
            select.set("group", self.at(exp.Group(expressions=terms), group_tok))
        if self.tok.is_word("HAVING"):
            having_tok = self.advance()
            select.set("having", self.at(exp.Having(this=self.parse_expression()), having_tok))
        return self.at(select, select_tok)

    def parse_row_count(self, clause: str, what: str) -> exp.Literal:
        """The unsigned integer after TOP or OFFSET."""
        tok = self.tok
        if tok.kind == "number" and tok.number_form == "integer":
            self.advance()
            return self.at(exp.Literal(this=tok.value, is_string=False), tok)
        if tok.is_op("-"):
            raise self.error(f"{clause} needs {what}, 0 or more; found a negative number", tok)
        if tok.kind == "number":
            raise self.error(
                f"{clause} needs a whole number of rows written in digits, found {tok.text}",
                tok,
                "a whole number",
            )
        raise self.expected(f"{what} (a whole number)", f"after {clause}")

    def parse_select_list(self) -> list[exp.Expression]:
        if self.tok.is_op("*"):
            star = self.at(exp.Star(), self.advance())
            if self.tok.is_op(","):
                raise self.error(
                    "'*' must be alone in the select list; to add other columns select "
                    "all columns of one table with t.*",
                    self.tokens[self.i - 1],
                )
            return [star]
        items = [self.parse_select_item()]
        while self.accept_op(","):
            if self.tok.is_op("*"):
                raise self.error(
                    "'*' must be alone in the select list; to add other columns select "
                    "all columns of one table with t.*",
                    self.tok,
                )
            items.append(self.parse_select_item())
        return items

    def parse_select_item(self) -> exp.Expression:
        first = self.tok
        if self.qualified_star_ahead():
            return self.parse_qualified_star()
        if first.kind == "end" or first.is_word("FROM"):
            raise self.expected("a column or expression", "in the select list")
        value = self.parse_expression()
        alias = None
        if self.accept_word("AS"):
            alias = self.parse_identifier("column name")
        elif self.tok.kind == "quoted" or (self.tok.kind == "name" and not self.tok.reserved):
            if self.tok.is_word("OVER") and self.peek().is_op("("):
                raise self.error("window functions (OVER ...) are not ADQL", self.tok)
            alias = self.parse_identifier("column name")
        if alias is None:
            return value
        return self.at(exp.Alias(this=value, alias=alias), first)

    def qualified_star_ahead(self) -> bool:
        k = 0
        while self.peek(k).kind in ("name", "quoted") and self.peek(k + 1).is_op("."):
            if self.peek(k + 2).is_op("*"):
                return True
            k += 2
        return False

    def parse_qualified_star(self) -> exp.Column:
        first = self.tok
        parts = [self.parse_identifier("table name")]
        self.advance()  # the dot
        while not self.tok.is_op("*"):
            parts.append(self.parse_identifier("table name"))
            self.advance()
        star_tok = self.advance()
        if len(parts) > 3:
            raise self.error("a table name has at most three parts: catalog.schema.table", first)
        star = self.at(exp.Star(), star_tok)
        column = exp.Column(this=star, **qualifiers(parts, ("table", "db", "catalog")))
        return self.at(column, first)

    def parse_order_by(self) -> exp.Order:
        order_tok = self.advance()
        self.expect_word("BY", "after ORDER")
        terms = [self.parse_order_term()]
        while self.accept_op(","):
            terms.append(self.parse_order_term())
        return self.at(exp.Order(expressions=terms), order_tok)

    def parse_order_term(self) -> exp.Ordered:
        first = self.tok
        value = self.parse_expression()
        desc: bool | None = None
        if self.accept_word("DESC"):
            desc = True
        elif self.accept_word("ASC"):
            desc = False
        if self.tok.is_word("NULLS"):
            raise self.error("NULLS FIRST/LAST is not ADQL", self.tok)
        # Nulls sort as the largest values (as in PostgreSQL): last ascending, first descending.
        ordered = exp.Ordered(this=value, nulls_first=bool(desc))
        if desc is not None:
            ordered.set("desc", desc)
        return self.at(ordered, first)

    # --- FROM -----------------------------------------------------------

    def parse_from(self) -> tuple[exp.From, list[exp.Join]]:
        from_tok = self.advance()
        first, joins = self.parse_table_reference()
        while self.tok.is_op(","):
            self.advance()
            start = self.tok
            table, more = self.parse_table_reference()
            joins.append(self.at(exp.Join(this=table), start))
            joins.extend(more)
        return self.at(exp.From(this=first), from_tok), joins

    def parse_table_reference(self) -> tuple[exp.Expression, list[exp.Join]]:
        """A table, subquery or parenthesised join, then any JOINs: (first, joins)."""
        first = self.parse_table_primary()
        joins: list[exp.Join] = []
        while True:
            start = self.tok
            natural = self.accept_word("NATURAL") is not None
            kind = side = None
            if self.accept_word("INNER"):
                kind = "INNER"
            elif self.tok.is_word("LEFT", "RIGHT", "FULL"):
                side = self.advance().upper
                self.accept_word("OUTER")
            elif self.tok.is_word("CROSS"):
                if natural:
                    raise self.error("NATURAL and CROSS cannot be combined", self.tok)
                self.advance()
                kind = "CROSS"
            if not self.tok.is_word("JOIN"):
                if natural or kind or side:
                    raise self.expected("JOIN")
                return first, joins
            self.advance()
            table = self.parse_table_primary()
            join = exp.Join(this=table)
            if natural:
                join.set("method", "NATURAL")
            if side:
                join.set("side", side)
            else:
                join.set("kind", kind or "INNER")
            self.parse_join_condition(join, natural or kind == "CROSS")
            joins.append(self.at(join, start))

    def parse_join_condition(self, join: exp.Join, unconditional: bool) -> None:
        if unconditional:
            if self.tok.is_word("ON", "USING"):
                what = "a NATURAL JOIN" if join.args.get("method") else "a CROSS JOIN"
                raise self.error(f"{what} takes no {self.tok.upper} condition", self.tok)
            return
        if self.accept_word("ON"):
            join.set("on", self.parse_expression())
        elif self.tok.is_word("USING"):
            self.advance()
            if not self.tok.is_op("("):
                raise self.expected("'(' and column names", "after USING")
            opener = self.advance()
            names = [self.parse_identifier("column name")]
            while self.accept_op(","):
                names.append(self.parse_identifier("column name"))
            self.expect_close(opener, " after the USING columns")
            join.set("using", names)
        else:
            raise self.expected("ON or USING", "after the joined table")

    def parse_table_primary(self) -> exp.Expression:
        tok = self.tok
        if tok.is_op("("):
            if self.query_ahead():
                return self.either(self.parse_derived_table, self.parse_parenthesised_join)
            return self.parse_parenthesised_join()
        if tok.kind in ("name", "quoted"):
            if tok.is_word("LATERAL", "UNNEST") and self.peek().is_op("("):
                raise self.error(f"{tok.upper} is not ADQL", tok)
            return self.parse_table_name()
        raise self.expected("a table name or a subquery in parentheses")

    def parse_derived_table(self) -> exp.Subquery:
        opener = self.advance()
        self.enter(opener)
        if self.tok.is_word("WITH"):
            raise self.error("WITH is only allowed at the start of the main query", self.tok)
        query = self.parse_select_expression()
        self.expect_close(opener, " after the subquery")
        self.leave()
        alias = self.parse_table_alias(required=True)
        return self.at(exp.Subquery(this=query, alias=alias), opener)

    def parse_parenthesised_join(self) -> exp.Subquery:
        opener = self.advance()
        self.enter(opener)
        first, joins = self.parse_table_reference()
        if not joins:
            if self.tok.is_op(","):
                raise self.error("a comma cannot join tables inside parentheses", self.tok)
            raise self.expected("JOIN", "inside the parentheses (they hold a subquery or a join)")
        self.expect_close(opener, " after the join")
        self.leave()
        first.set("joins", joins)
        return self.at(exp.Subquery(this=first), opener)

    def parse_table_name(self) -> exp.Table:
        first = self.tok
        parts = [self.parse_identifier("table name")]
        while self.accept_op("."):
            parts.append(self.parse_identifier("table name"))
        if len(parts) > 3:
            raise self.error("a table name has at most three parts: catalog.schema.table", first)
        if self.tok.is_op("("):
            raise self.error(
                f"{first.text}(...) is not a table: ADQL reads tables, not table functions",
                first,
            )
        table = exp.Table(**qualifiers(parts, ("this", "db", "catalog")))
        alias = self.parse_table_alias(required=False)
        if alias is not None:
            table.set("alias", alias)
        return self.at(table, first)

    def parse_table_alias(self, required: bool) -> exp.TableAlias | None:
        tok = self.tok
        if self.accept_word("AS"):
            name = self.parse_identifier("name after AS")
        elif tok.kind == "quoted" or (tok.kind == "name" and not tok.reserved):
            if tok.is_word("LIMIT") and self.peek().kind == "number":
                raise self.junk_after_query(tok)
            name = self.parse_identifier("name")
        elif required:
            raise self.error(
                "a subquery in FROM needs a name: write AS name after its closing "
                f"parenthesis (found {tok.describe()})",
                tok,
                "AS name",
            )
        else:
            return None
        if self.tok.is_op("("):
            raise self.error("column names after a table alias are not ADQL", self.tok)
        return self.at(exp.TableAlias(this=name), tok)
