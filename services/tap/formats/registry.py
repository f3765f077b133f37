"""The result formats the service and ``qcat query -o`` can write, and how they are asked for.

A TAP client names the format with RESPONSEFORMAT (TAP 1.1 section 2.7.1):
either a short name (``votable``, ``csv``, ...) or a MIME type, possibly with
parameters (``application/x-votable+xml;serialization=TABLEDATA``). Every
accepted spelling is an alias of one :class:`OutputFormat`; matching is
case-insensitive and ignores blanks. A file is matched by its extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qcat.errors import ConfigError, QcatError

VOTABLE_MIME = "application/x-votable+xml"


@dataclass(frozen=True)
class OutputFormat:
    """One result format: what it is called, sent as and saved as."""

    #: ``votable-binary2``, ``votable-binary``, ``votable-tabledata``, ``csv``, ``tsv``,
    #: ``fits`` or ``parquet``.
    name: str
    #: The full MIME type sent as Content-Type.
    mime_type: str
    #: File name extension, with the dot.
    extension: str
    #: Every (lower-case, blank-free) RESPONSEFORMAT value that selects this format.
    aliases: tuple[str, ...]

    @property
    def is_votable(self) -> bool:
        """Whether this is one of the VOTable serialisations."""
        return self.name.startswith("votable-")


def _votable(serialization: str, short: tuple[str, ...]) -> OutputFormat:
    mime = f"{VOTABLE_MIME};serialization={serialization}"
    return OutputFormat(f"votable-{serialization.lower()}", mime, ".vot", (mime.lower(), *short))


#: Every format; the default (VOTable BINARY2) first.
FORMATS: tuple[OutputFormat, ...] = (
    _votable(
        "BINARY2",
        ("votable", VOTABLE_MIME, "votable/b2", "votable/binary2", "application/votable+xml"),
    ),
    _votable("BINARY", ("votable/b", "votable/binary")),
    _votable("TABLEDATA", ("votable/td", "votable/tabledata", "text/xml")),
    OutputFormat(
        "csv", "text/csv;header=present", ".csv", ("csv", "text/csv", "text/csv;header=present")
    ),
    OutputFormat("tsv", "text/tab-separated-values", ".tsv", ("tsv", "text/tab-separated-values")),
    OutputFormat("fits", "application/fits", ".fits", ("fits", "application/fits", "image/fits")),
    OutputFormat(
        "parquet",
        "application/vnd.apache.parquet",
        ".parquet",
        ("parquet", "application/vnd.apache.parquet", "application/x-parquet"),
    ),
)

DEFAULT_FORMAT = FORMATS[0]

#: Extensions ``qcat query -o`` accepts (a VOTable file is written as BINARY2).
FILE_EXTENSIONS: dict[str, OutputFormat] = {
    ".vot": DEFAULT_FORMAT,
    ".votable": DEFAULT_FORMAT,
    ".xml": DEFAULT_FORMAT,
    ".csv": FORMATS[3],
    ".tsv": FORMATS[4],
    ".fits": FORMATS[5],
    ".fit": FORMATS[5],
    ".parquet": FORMATS[6],
}


class UnknownFormat(QcatError):
    """A RESPONSEFORMAT (or output file extension) no writer serves."""

    def __init__(self, value: str) -> None:
        self.value = value
        accepted = ", ".join(a for f in FORMATS for a in f.aliases)
        super().__init__(f"unknown RESPONSEFORMAT {value!r}; accepted values: {accepted}")


_BY_ALIAS = {alias: f for f in FORMATS for alias in f.aliases}


def _normalise(value: str) -> str:
    """Lower case, no blanks, parameters other than ``serialization`` dropped."""
    parts = [p for p in "".join(value.split()).lower().split(";") if p]
    if not parts:
        return ""
    kept = [p for p in parts[1:] if p.startswith("serialization=")]
    return ";".join([parts[0], *kept[:1]])


def find_format(value: str | None) -> OutputFormat:
    """The format a RESPONSEFORMAT value selects; ``None`` or blank selects the default.

    Case-insensitive; MIME parameters are tolerated (only a VOTable's
    ``serialization`` changes the answer). :class:`UnknownFormat` otherwise.
    """
    if value is None or not value.strip():
        return DEFAULT_FORMAT
    found = _BY_ALIAS.get(_normalise(value))
    if found is None:
        raise UnknownFormat(value)
    return found


def format_for_path(path: Path) -> OutputFormat:
    """The format a file name asks for, by extension; :class:`ConfigError` for an unknown one."""
    found = FILE_EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise ConfigError(
            f"{path}: unknown output format {path.suffix!r}; "
            f"use one of {', '.join(FILE_EXTENSIONS)}"
        )
    return found
