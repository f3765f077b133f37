"""Validate XML documents against the IVOA schemas with STILTS ``xsdvalidate``.

STILTS carries local copies of the schemas the TAP standards use (UWS, VOSI,
VODataService, TAPRegExt, VOResource, VOTable); ``uselocals=true`` makes it
use them, so validation needs no network.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def schema_errors(document: bytes) -> list[str]:
    """The validation errors STILTS reports for ``document`` (empty when it is valid)."""
    with tempfile.TemporaryDirectory(prefix="qcat-xsd-") as tmp:
        path = Path(tmp) / "document.xml"
        path.write_bytes(document)
        done = subprocess.run(
            ["stilts", "xsdvalidate", "uselocals=true", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if line.startswith(("ERROR", "FATAL", "Error"))]
    if done.returncode != 0 and not errors:
        errors = [f"stilts exited with {done.returncode}: {' '.join(lines[-3:])}"]
    return errors


def assert_schema_valid(document: bytes) -> None:
    """Fail with STILTS's messages unless ``document`` validates against its schema."""
    errors = schema_errors(document)
    assert not errors, "\n".join(errors) + "\n" + document[:2000].decode(errors="replace")
