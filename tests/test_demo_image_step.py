"""The image step of ``qcat demo`` (qcat/demo_images.py): rendered once, ingested once,
catalogs side by side, and the instructions it leads to."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits

from qcat.demo import object_batches
from qcat.demo_images import (
    DEMO_COLLECTION,
    ingest_demo_images,
    obs_id_prefix,
    published_obs_ids,
    render_images,
)
from qcat.demo_service import demo_instructions

OBJECTS = 2_000
SIZE = 32  # tiny images: this is about files and identifiers, not pixels


def _catalog(root: Path, seed: int) -> Path:
    """``demo-input/objects-N-seed-S`` with the Object file, as ``qcat demo`` leaves it."""
    inputs = root / "demo-input" / f"objects-{OBJECTS}-seed-{seed}"
    inputs.mkdir(parents=True)
    table = pa.Table.from_batches(list(object_batches(OBJECTS, seed=seed)))
    pq.write_table(table, inputs / "Object-00000.parquet")
    return inputs


def test_rendered_once_ingested_once_and_catalogs_kept_apart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first_inputs = _catalog(tmp_path, seed=1)
    first = render_images(first_inputs, objects=OBJECTS, seed=1, size=SIZE, show_progress=False)
    assert len(first.obs_ids) == 60 and first.collection == DEMO_COLLECTION
    assert sorted(p.name for p in first.directory.glob("*.fits")) == sorted(
        f"{o}.fits" for o in first.obs_ids
    )
    assert all(o.startswith(obs_id_prefix(OBJECTS, 1)) for o in first.obs_ids)
    assert {first.field_of(o) for o in first.obs_ids} == {f.name for f in first.fields}
    with fits.open(first.files[0]) as hdus:
        assert hdus[0].header["OBJECT"] == first.field_of(first.obs_ids[0])
    stamps = {p: p.stat().st_mtime_ns for p in first.files}

    # A rerun reads the marker: same answer, nothing rendered again.
    again = render_images(first_inputs, objects=OBJECTS, seed=1, size=SIZE, show_progress=False)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in again.files} == stamps

    assert ingest_demo_images(data, first, show_progress=False) == 60
    assert published_obs_ids(data, DEMO_COLLECTION) == set(first.obs_ids)
    assert ingest_demo_images(data, first, show_progress=False) == 0  # skipped

    # Another catalog's images (other seed: other stars, other pixels) go beside them.
    other = render_images(
        _catalog(tmp_path, seed=2), objects=OBJECTS, seed=2, size=SIZE, show_progress=False
    )
    assert not set(other.obs_ids) & set(first.obs_ids)
    assert ingest_demo_images(data, other, show_progress=False) == 60
    assert published_obs_ids(data, DEMO_COLLECTION) == set(first.obs_ids) | set(other.obs_ids)
    assert published_obs_ids(data, "elsewhere") == set()


def test_instructions_name_the_image_services(tmp_path: Path) -> None:
    images = render_images(
        _catalog(tmp_path, seed=1), objects=OBJECTS, seed=1, size=SIZE, show_progress=False
    )
    text = demo_instructions("http://127.0.0.1:8123/tap", images)
    assert "pyvo.dal.TAPService" in text
    for path in (
        "/sia/query?POS=CIRCLE+",
        "/datalink/links?ID=ivo%3A%2F%2Fqcat%2Fdemo%3Fn",
        "/soda/sync?ID=",
    ):
        assert f"http://127.0.0.1:8123{path}" in text, path
    assert 'SIA2Service("http://127.0.0.1:8123/sia")' in text
    [position] = re.findall(r"sia\.search\(pos=\(([-\d.]+), ([-\d.]+), ", text)
    star = next((f for f in images.fields if f.anchor_id is not None), images.fields[0])
    assert tuple(float(v) for v in position) == tuple(round(v, 6) for v in star.target)
    assert "/images/demo/" in text
    # Without images (--no-images) the TAP part only.
    plain = demo_instructions("http://127.0.0.1:8123/tap")
    assert "/sia" not in plain and "pyvo.dal.TAPService" in plain
