"""The /examples document: well-formed XHTML whose every query runs on the loaded data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from qcat.czar.adql import parse_adql
from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.metadata.store import MetadataStore
from qcat.worker.pool import LocalWorkers
from services.tap.examples import catalog_examples, examples_document
from tests.conftest import ingest_demo_table, make_demo
from tests.formats import write_as

XHTML = "{http://www.w3.org/1999/xhtml}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, QueryEngine]]:
    demo = make_demo(3000, seed=5)
    root = tmp_path_factory.mktemp("examples")
    data = root / "data"
    objects = write_as(demo.objects, root / "objects.parquet", "parquet")
    sources = write_as(demo.sources, root / "sources.parquet", "parquet")
    for table, path in (("demo.Object", objects), ("demo.Source", sources)):
        ingest_demo_table(data, demo, table, path, 400)
    with LocalWorkers(data, 2, memory_limit="512MB", setup_sql_module=WORKER_SETUP_MODULE) as w:
        engine = QueryEngine(data, w.locations, timeout_s=120)
        try:
            yield data, engine
        finally:
            engine.close()


def test_every_example_is_valid_adql_and_returns_rows(served: tuple[Path, QueryEngine]) -> None:
    data, engine = served
    with MetadataStore.for_data_dir(data) as store:
        examples = catalog_examples(store, data)
    assert {e.id for e in examples} >= {
        "object-cone",
        "object-by-key",
        "source-of-one-object",
        "source-per-object-in-cone",
        "source-summary-per-object",
        "object-pairs",
        "object-histogram",
    }
    for example in examples:
        parse_adql(example.query)
        result = engine.execute(example.query)
        rows = result.read_all().num_rows
        if example.id != "object-pairs":  # a small catalog may have no close pairs there
            assert rows > 0, example
        if example.id == "source-summary-per-object":  # what its description says
            assert result.plan.shape == "chunk-local", result.plan.notes


def test_the_document_is_xhtml_with_dali_rdfa(served: tuple[Path, QueryEngine]) -> None:
    data, _ = served
    with MetadataStore.for_data_dir(data) as store:
        examples = catalog_examples(store, data)
    root = ET.fromstring(examples_document(examples))
    body = root.find(f"{XHTML}body")
    assert body is not None and body.get("vocab") == "ivo://ivoa.net/std/DALI#examples"
    found = body.findall(f"{XHTML}div[@typeof='example']")
    assert [d.get("id") for d in found] == [e.id for e in examples]
    for div, example in zip(found, examples, strict=True):
        assert div.get("resource") == f"#{example.id}"
        query = div.find(f"{XHTML}pre[@property='query']")
        assert query is not None and query.text == example.query  # escaping round-trips
        name = div.find(f"{XHTML}h2[@property='name']")
        assert name is not None and name.text == example.name
