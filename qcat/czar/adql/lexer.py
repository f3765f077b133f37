"""ADQL 2.1 lexical rules: text -> tokens with exact 1-based line and column.

Only what ADQL allows gets a token: regular identifiers (a Latin letter,
then letters, digits or underscores), delimited identifiers (``"..."`` with
``""`` for a quote), string literals (``'...'`` with ``''`` for a quote),
numbers (``12``, ``1.5``, ``.5``, ``1.5E-3``; ``0x1F`` as a qcat extension)
and the operators of the grammar. Comments run from ``--`` to the end of the
line. Anything else (``/* */`` comments, ``::`` casts, ``[`` ``]``, back
quotes, ``$1``/``?`` parameters, non-ASCII letters outside strings) is an
:class:`AdqlSyntaxError` at the offending character.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

from qcat.czar.adql.errors import AdqlSyntaxError
from qcat.czar.adql.keywords import RESERVED

TokenKind = Literal["name", "quoted", "string", "number", "op", "end"]
NumberForm = Literal["", "integer", "decimal", "float", "hex"]

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_NAME_CHARS = _LETTERS | _DIGITS | {"_"}
_WHITESPACE = frozenset(" \t\n\r\f\v")
_TWO_CHAR_OPS = frozenset({"<>", "!=", "<=", ">=", "||"})
_ONE_CHAR_OPS = frozenset("(),.*+-/=<>|&^~;%")

# Characters that are not ADQL, with a hint for the ones people try.
_HINTS = {
    ":": "':' is not ADQL; to convert a value write CAST(x AS type)",
    "`": "back quotes are not ADQL; write a name with special characters in double quotes",
    "[": "'[' is not ADQL; write a name with special characters in double quotes",
    "]": "']' is not ADQL",
    "$": "parameters ($1) are not ADQL; write the value into the query",
    "?": "parameters (?) are not ADQL; write the value into the query",
    "@": "'@' is not ADQL",
    "!": "'!' is not ADQL on its own; 'not equal' is <> or !=",
    "{": "'{' is not ADQL",
    "}": "'}' is not ADQL",
    "\\": "a backslash is not ADQL outside a string",
    "#": "'#' is not ADQL; comments start with --",
}


@dataclass(frozen=True, slots=True)
class Token:
    """One token. ``start``/``end`` are 0-based character offsets (end exclusive).

    ``value`` is the name as written (``name``), the name between the double
    quotes with ``""`` undone (``quoted``), the string between the quotes
    with ``''`` undone (``string``), the number as written, or in decimal for
    a hexadecimal number (``number``), or the operator (``op``).
    """

    kind: TokenKind
    text: str
    value: str
    start: int
    end: int
    line: int
    col: int
    number_form: NumberForm = ""

    @property
    def upper(self) -> str:
        """The upper-cased text of a regular name (keyword matching)."""
        return self.text.upper() if self.kind == "name" else ""

    @property
    def reserved(self) -> bool:
        """Whether this is a regular name that ADQL reserves."""
        return self.kind == "name" and self.text.upper() in RESERVED

    def is_op(self, *ops: str) -> bool:
        """Whether this is one of the operators ``ops``."""
        return self.kind == "op" and self.value in ops

    def is_word(self, *words: str) -> bool:
        """Whether this is a regular name equal (any case) to one of ``words``."""
        return self.kind == "name" and self.text.upper() in words

    def describe(self) -> str:
        """How to name this token in a message: ``'FROM'``, ``the string 'x'``..."""
        if self.kind == "end":
            return "the end of the query"
        if self.kind == "string":
            return f"the string {_short(self.text)}"
        if self.kind == "number":
            return f"the number {self.text}"
        if self.kind == "quoted":
            return f"the name {_short(self.text)}"
        if self.kind == "name":
            return f"the reserved word {self.upper}" if self.reserved else f"'{self.text}'"
        return f"'{self.text}'"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class _Positions:
    """Maps a character offset to a 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def at(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into ADQL tokens, ending with one ``end`` token."""
    return _Lexer(text).run()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.positions = _Positions(text)
        self.tokens: list[Token] = []

    def error(self, message: str, offset: int, expected: str | None = None) -> AdqlSyntaxError:
        line, col = self.positions.at(offset)
        return AdqlSyntaxError(message, line, col, expected=expected)

    def add(self, kind: TokenKind, start: int, end: int, value: str, form: NumberForm = "") -> None:
        line, col = self.positions.at(start)
        self.tokens.append(Token(kind, self.text[start:end], value, start, end, line, col, form))

    def run(self) -> list[Token]:
        text, n, i = self.text, len(self.text), 0
        while i < n:
            ch = text[i]
            if ch in _WHITESPACE:
                i += 1
            elif text.startswith("--", i):
                newline = text.find("\n", i)
                i = n if newline < 0 else newline + 1
            elif text.startswith("/*", i):
                raise self.error(
                    "'/*' comments are not ADQL; comment out to the end of a line with --", i
                )
            elif ch in _LETTERS:
                i = self.name(i)
            elif ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
                i = self.number(i)
            elif ch == "'":
                i = self.string(i)
            elif ch == '"':
                i = self.quoted(i)
            elif text[i : i + 2] in _TWO_CHAR_OPS:
                self.add("op", i, i + 2, text[i : i + 2])
                i += 2
            elif ch in _ONE_CHAR_OPS:
                self.add("op", i, i + 1, ch)
                i += 1
            elif ch == "_":
                raise self.error(
                    "a name must start with a letter; write other names in double quotes", i
                )
            else:
                raise self.error(_HINTS.get(ch, f"unexpected character {ch!r}"), i)
        line, col = self.positions.at(n)
        self.tokens.append(Token("end", "", "", n, n, line, col))
        return self.tokens

    def name(self, start: int) -> int:
        text, i = self.text, start + 1
        while i < len(text) and text[i] in _NAME_CHARS:
            i += 1
        if i < len(text) and text[i].isalpha():
            raise self.error(
                f"unexpected character {text[i]!r} in a name: regular names use only Latin "
                "letters, digits and '_'; write other names in double quotes",
                i,
            )
        self.add("name", start, i, text[start:i])
        return i

    def number(self, start: int) -> int:
        text, n = self.text, len(self.text)
        if text.startswith(("0x", "0X"), start):
            i = start + 2
            while i < n and text[i] in _HEX_DIGITS:
                i += 1
            if i == start + 2:
                raise self.error("expected hexadecimal digits after 0x", i, "hexadecimal digits")
            self.check_number_end(start, i)
            self.add("number", start, i, str(int(text[start + 2 : i], 16)), "hex")
            return i
        i = start
        while i < n and text[i] in _DIGITS:
            i += 1
        form: NumberForm = "integer"
        if i < n and text[i] == ".":
            form = "decimal"
            i += 1
            while i < n and text[i] in _DIGITS:
                i += 1
        if i < n and text[i] in "eE":
            form = "float"
            j = i + 1
            if j < n and text[j] in "+-":
                j += 1
            if j >= n or text[j] not in _DIGITS:
                raise self.error(
                    f"expected the digits of the exponent after {text[start:j]}",
                    j,
                    "digits",
                )
            i = j
            while i < n and text[i] in _DIGITS:
                i += 1
        self.check_number_end(start, i)
        self.add("number", start, i, text[start:i], form)
        return i

    def check_number_end(self, start: int, end: int) -> None:
        if end < len(self.text) and (self.text[end] in _NAME_CHARS or self.text[end].isalpha()):
            raise self.error(
                "a name cannot start with a digit; write such a name in double quotes "
                f'("{self.text[start:end]}...")',
                start,
            )

    def string(self, start: int) -> int:
        text, i, parts = self.text, start + 1, []
        while True:
            close = text.find("'", i)
            if close < 0:
                raise self.error(
                    "this string is never closed: add the closing quote ' "
                    "(a quote inside a string is written '')",
                    start,
                    "'",
                )
            parts.append(text[i:close])
            if text.startswith("''", close):
                parts.append("'")
                i = close + 2
                continue
            self.add("string", start, close + 1, "".join(parts))
            return close + 1

    def quoted(self, start: int) -> int:
        text, i, parts = self.text, start + 1, []
        while True:
            close = text.find('"', i)
            if close < 0:
                raise self.error(
                    "this name in double quotes is never closed (strings use single quotes: "
                    "'text')",
                    start,
                    '"',
                )
            parts.append(text[i:close])
            if text.startswith('""', close):
                parts.append('"')
                i = close + 2
                continue
            value = "".join(parts)
            if not value:
                raise self.error("\"\" is an empty name (strings use single quotes: 'text')", start)
            self.add("quoted", start, close + 1, value)
            return close + 1
