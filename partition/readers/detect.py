"""Which input format a file holds, decided by its name."""

from __future__ import annotations

from pathlib import Path

from qcat.errors import InputError

FORMATS = ("parquet", "csv", "fits", "votable")

#: Suffix (lower case) -> format. ``.gz`` may follow any of these but Parquet's.
_SUFFIX_FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".fz": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
}
_COMPRESSED = ".gz"


def _suffixes(path: Path) -> tuple[str, bool]:
    """The format suffix of ``path`` (lower case) and whether ``.gz`` follows it."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == _COMPRESSED:
        return (suffixes[-2] if len(suffixes) > 1 else ""), True
    return (suffixes[-1] if suffixes else ""), False


def supported_suffixes() -> str:
    """Human-readable list of the suffixes :func:`detect_format` accepts."""
    plain = ", ".join(_SUFFIX_FORMATS)
    return f"{plain} (all but .parquet/.pq may end in .gz)"


def detect_format(path: Path) -> str:
    """Return the format of ``path`` (one of :data:`FORMATS`) from its suffix.

    ``.parquet``/``.pq`` are Parquet; ``.csv``/``.tsv`` CSV (tab-separated for
    ``.tsv``); ``.fits``/``.fit``/``.fts``/``.fz`` FITS; ``.vot``/``.votable``/
    ``.xml`` VOTable. Text and FITS files may be gzip-compressed (``.gz``).
    Raises :class:`InputError` naming the file otherwise.
    """
    suffix, compressed = _suffixes(Path(path))
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt is None or (compressed and fmt == "parquet"):
        raise InputError(
            f"cannot tell the file format from the name; supported suffixes: "
            f"{supported_suffixes()}",
            path=str(path),
        )
    return fmt


def is_tab_separated(path: Path) -> bool:
    """Whether a CSV-format file is tab-separated (``.tsv`` or ``.tsv.gz``)."""
    return _suffixes(Path(path))[0] == ".tsv"
