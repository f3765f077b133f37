"""Result formats of the TAP service and ``qcat query -o``: VOTable (BINARY2, BINARY,
TABLEDATA), CSV, TSV, FITS and Parquet, all streamed; DALI error documents.

See docs/formats.md for the encodings and the choices behind them.
"""

from services.tap.formats.columns import ResultColumn, result_columns
from services.tap.formats.registry import (
    DEFAULT_FORMAT,
    FORMATS,
    OutputFormat,
    UnknownFormat,
    find_format,
    format_for_path,
)
from services.tap.formats.vodoc import ResultInfo, error_document
from services.tap.formats.write import write_result, write_result_file

__all__ = [
    "DEFAULT_FORMAT",
    "FORMATS",
    "OutputFormat",
    "ResultColumn",
    "ResultInfo",
    "UnknownFormat",
    "error_document",
    "find_format",
    "format_for_path",
    "result_columns",
    "write_result",
    "write_result_file",
]
