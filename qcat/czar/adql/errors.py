"""The one error the ADQL front end raises, with its position in the query."""

from __future__ import annotations

from qcat.errors import QcatError


class AdqlSyntaxError(QcatError):
    """The query is not valid ADQL (or uses a feature qcat does not accept).

    ``line`` and ``column`` are 1-based and point at the first character of
    the offending token; ``column`` counts characters (a tab is one column).
    ``message`` says what was found and what was expected, in plain words;
    ``expected`` names just the expected thing when there is one (for
    example ``"a radius"`` or ``"')'"``), else it is ``None``.
    ``str(err)`` is ``"line L, column C: message"``.
    """

    def __init__(
        self, message: str, line: int, column: int, *, expected: str | None = None
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.expected = expected
        super().__init__(f"line {line}, column {column}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the error picklable (it crosses process boundaries in the czar).
        return (_rebuild, (self.message, self.line, self.column, self.expected))

    def excerpt(self, query: str) -> str:
        """The offending line of ``query`` with a caret under ``column``.

        Tabs before the column are copied so the caret lines up in a terminal.
        """
        lines = query.split("\n")
        text = lines[self.line - 1].rstrip("\r") if 0 < self.line <= len(lines) else ""
        pad = "".join("\t" if ch == "\t" else " " for ch in text[: self.column - 1])
        pad += " " * max(0, self.column - 1 - len(text))
        return f"{text}\n{pad}^"


def _rebuild(message: str, line: int, column: int, expected: str | None) -> AdqlSyntaxError:
    return AdqlSyntaxError(message, line, column, expected=expected)
