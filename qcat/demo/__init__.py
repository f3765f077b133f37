"""The demo survey: a deterministic, LSST-like Object/Source catalog and its Felis schema."""

from qcat.demo.generator import (
    DemoFiles,
    object_batches,
    schema_path,
    source_batches,
    write_demo_files,
)

__all__ = [
    "DemoFiles",
    "object_batches",
    "schema_path",
    "source_batches",
    "write_demo_files",
]
