"""Token cursor shared by the ADQL parsers: position, errors, nesting, names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlglot import exp

from qcat.czar.adql import functions as fn
from qcat.czar.adql.errors import AdqlSyntaxError
from qcat.czar.adql.lexer import Token, tokenize

E = TypeVar("E", bound=exp.Expression)
T = TypeVar("T")

#: Deepest nesting of parentheses, subqueries and calls the parser accepts.
MAX_DEPTH = 50


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Reserved words the grammar itself uses (as opposed to reserved names).
GRAMMAR_WORDS = _words(
    """
    SELECT ALL DISTINCT TOP AS FROM WHERE GROUP BY HAVING ORDER ASC DESC OFFSET
    UNION INTERSECT EXCEPT WITH JOIN INNER LEFT RIGHT FULL OUTER NATURAL CROSS ON
    USING AND OR NOT BETWEEN LIKE ILIKE ESCAPE IN IS NULL EXISTS CASE WHEN THEN ELSE END
    CAST
    """
)

#: Reserved words after which "write it in double quotes" would be a poor hint.
_NO_NAME_HINT = GRAMMAR_WORDS | _words(
    "TRUE FALSE UNKNOWN ESCAPE INTO VALUES COLLATE FOR FETCH FIRST NEXT ONLY ROWS"
)


class Cursor:
    """Walks the tokens of one query and builds positioned errors and nodes."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def accept_word(self, *words: str) -> Token | None:
        return self.advance() if self.tok.is_word(*words) else None

    def accept_op(self, *ops: str) -> Token | None:
        return self.advance() if self.tok.is_op(*ops) else None

    def error(
        self, message: str, where: Token | exp.Expression, expected: str | None = None
    ) -> AdqlSyntaxError:
        if isinstance(where, Token):
            return AdqlSyntaxError(message, where.line, where.col, expected=expected)
        meta = where.meta
        return AdqlSyntaxError(message, meta.get("line", 1), meta.get("col", 1), expected=expected)

    def expected(self, what: str, context: str = "") -> AdqlSyntaxError:
        """``expected WHAT [context], found TOKEN`` at the current token."""
        tok = self.tok
        if tok.is_op(")") and self.depth == 0:
            return self.error("found ')' without a matching '('", tok, what)
        found = tok.describe()
        hint = self.reserved_hint(tok)
        ctx = f" {context}" if context else ""
        return self.error(f"expected {what}{ctx}, found {found}{hint}", tok, what)

    def expect_word(self, word: str, context: str = "") -> Token:
        if not self.tok.is_word(word):
            raise self.expected(word, context)
        return self.advance()

    def expect_close(self, opener: Token, context: str) -> Token:
        """Consume the ``)`` matching ``opener`` or say which ``(`` is left open."""
        if self.tok.is_op(")"):
            return self.advance()
        where = f"line {opener.line}, column {opener.col}"
        if self.tok.kind == "end":
            raise self.error(
                f"this '(' is never closed: the query ends where ')'{context} was expected",
                opener,
                "')'",
            )
        raise self.error(
            f"expected ')'{context} to close the '(' at {where}, found {self.tok.describe()}"
            f"{self.reserved_hint(self.tok)}",
            self.tok,
            "')'",
        )

    def reserved_hint(self, tok: Token) -> str:
        if tok.reserved and tok.upper not in _NO_NAME_HINT and fn.lookup(tok.text) is None:
            return f' (a reserved word: write "{tok.text}" to use it as a name)'
        return ""

    def at(self, node: E, first: Token | exp.Expression) -> E:
        """Record in ``node.meta`` where it starts (``first``) and ends (last token read)."""
        if isinstance(first, Token):
            line, col, start = first.line, first.col, first.start
        else:
            line, col, start = (first.meta.get(k, 0) for k in ("line", "col", "start"))
        last = self.tokens[self.i - 1] if self.i > 0 else self.tok
        node.meta.update(line=line, col=col, start=start, end=max(start, last.end - 1))
        return node

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the query is nested too deeply (more than {MAX_DEPTH} levels)", tok)

    def leave(self) -> None:
        self.depth -= 1

    def either(self, first: Callable[[], T], second: Callable[[], T]) -> T:
        """``first()``, else ``second()`` from the same place; else the error that got furthest."""
        result, error = self.speculate(first)
        if result is not None:
            return result
        result, error2 = self.speculate(second)
        if result is not None:
            return result
        raise furthest(error, error2)

    def speculate(self, parse: Callable[[], T]) -> tuple[T | None, AdqlSyntaxError | None]:
        """Try ``parse``; on failure rewind and return the error instead."""
        saved = self.i, self.depth
        try:
            return parse(), None
        except AdqlSyntaxError as e:
            self.i, self.depth = saved
            return None, e

    def query_ahead(self) -> bool:
        """Whether the ``(`` at the current token opens a query (after more ``(``)."""
        k = 0
        while self.peek(k).is_op("("):
            k += 1
        return k > 0 and self.peek(k).is_word("SELECT", "WITH")

    def parse_identifier(self, what: str) -> exp.Identifier:
        tok = self.tok
        if tok.kind == "quoted":
            self.advance()
            return self.at(exp.Identifier(this=tok.value, quoted=True), tok)
        if tok.kind == "name":
            if tok.reserved:
                raise self.reserved_word(tok, what)
            self.advance()
            return self.at(exp.Identifier(this=tok.text, quoted=False), tok)
        raise self.expected(f"a {what}")

    def reserved_word(self, tok: Token, what: str = "name") -> AdqlSyntaxError:
        if tok.upper in GRAMMAR_WORDS:
            return self.expected(f"a {what}")
        return self.error(
            f"{tok.upper} is a reserved word: to use it as a {what}, write it in double quotes, "
            f'"{tok.text}"',
            tok,
            f"a {what}",
        )


def qualifiers(parts: list[exp.Identifier], keys: tuple[str, ...]) -> dict[str, exp.Identifier]:
    """Map name parts, last first, onto ``keys`` (e.g. this, table, db, catalog)."""
    return dict(zip(keys, reversed(parts), strict=False))


def furthest(*errors: AdqlSyntaxError | None) -> AdqlSyntaxError:
    """Of several failed attempts, the error that got furthest into the text."""
    found = [e for e in errors if e is not None]
    return max(found, key=lambda e: (e.line, e.column))
