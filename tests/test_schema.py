"""Partitioning roles inferred from a Felis schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcat.demo.generator import schema_path
from qcat.errors import SchemaError
from qcat.schema import load_felis, spec_from_felis

FELIS = """
name: sky
"@id": "#sky"
tables:
- name: Filter
  "@id": "#Filter"
  primaryKey: "#Filter.band"
  columns:
  - {name: band, "@id": "#Filter.band", datatype: char, length: 1, nullable: false}
  - {name: wavelength, "@id": "#Filter.wavelength", datatype: double, ivoa:unit: nm}
- name: Star
  "@id": "#Star"
  primaryKey: "#Star.id"
  columns:
  - {name: id, "@id": "#Star.id", datatype: long, nullable: false}
  - {name: ra, "@id": "#Star.ra", datatype: double, ivoa:ucd: pos.eq.ra;meta.main}
  - {name: dec, "@id": "#Star.dec", datatype: double, ivoa:ucd: pos.eq.dec;meta.main}
- name: Detection
  "@id": "#Detection"
  primaryKey: "#Detection.id"
  columns:
  - {name: id, "@id": "#Detection.id", datatype: long, nullable: false}
  - {name: band, "@id": "#Detection.band", datatype: char, length: 1}
  - {name: star, "@id": "#Detection.star", datatype: long}
  - {name: flux, "@id": "#Detection.flux", datatype: double, ivoa:unit: nJy}
  constraints:
  - name: detection_band
    "@id": "#detection_band"
    "@type": ForeignKey
    columns: ["#Detection.band"]
    referencedColumns: ["#Filter.band"]
  - name: detection_star
    "@id": "#detection_star"
    "@type": ForeignKey
    columns: ["#Detection.star"]
    referencedColumns: ["#Star.id"]
- name: Note
  "@id": "#Note"
  columns:
  - {name: band, "@id": "#Note.band", datatype: char, length: 1}
  - {name: text, "@id": "#Note.text", datatype: string, length: 200}
  constraints:
  - name: note_band
    "@id": "#note_band"
    "@type": ForeignKey
    columns: ["#Note.band"]
    referencedColumns: ["#Filter.band"]
"""


@pytest.fixture
def sky(tmp_path: Path) -> Path:
    path = tmp_path / "sky.yaml"
    path.write_text(FELIS)
    return path


def test_child_follows_the_foreign_key_to_a_table_with_positions(sky: Path) -> None:
    specs = load_felis(sky)
    star, det = specs["sky.Star"], specs["sky.Detection"]
    assert (star.kind, star.director_key, star.ra_column, star.dec_column) == (
        "director",
        "id",
        "ra",
        "dec",
    )
    # The key to the position-less Filter table comes first and is passed over.
    assert (det.kind, det.director_table, det.director_fk_column, det.director_ref_column) == (
        "child",
        "sky.Star",
        "star",
        "id",
    )


def test_foreign_key_to_a_table_without_positions_is_plain(sky: Path) -> None:
    specs = load_felis(sky)
    assert specs["sky.Filter"].kind == "plain"
    assert specs["sky.Note"].kind == "plain"
    assert specs["sky.Note"].director_table is None


def test_demo_schema_roles() -> None:
    specs = load_felis(schema_path())
    assert specs["demo.Object"].kind == "director"
    assert specs["demo.Object"].director_key == "objectId"
    assert specs["demo.Source"].director_table == "demo.Object"
    assert specs["demo.Source"].director_fk_column == "objectId"


def test_unknown_table_names_the_ones_there(sky: Path) -> None:
    with pytest.raises(SchemaError, match=r"sky\.Detection"):
        spec_from_felis(sky, "sky.Nothing")
    assert spec_from_felis(sky, "SKY.star").name == "Star"


def test_invalid_schema_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntables: [{name: T}]\n")
    with pytest.raises(SchemaError, match=r"bad\.yaml"):
        load_felis(bad)
