"""Chunks left out by their column statistics, checked against DuckDB on the input.

Only columns that cannot hold NaN are used (integers and the partitioning
position): float columns may hold NaN, which Parquet statistics leave out
and DuckDB lets through comparisons.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine_support import Catalog, open_catalog, raw, run

NOTE = "column statistics leave"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    with open_catalog(tmp_path_factory.mktemp("stats")) as opened:
        yield opened


@pytest.mark.parametrize(
    ("where", "pruned"),
    [
        ("coord_dec > 60", True),  # the partitioning position holds no NaN
        ("60 < coord_dec", True),
        ("coord_dec BETWEEN -10 AND 10 AND coord_ra < 40", True),
        ("coord_ra >= 359.5 OR coord_dec > 60", False),  # OR: no bound on one column
        ("flags = 1000", True),  # an integer column
        ("objectId >= 0", False),
        ("g_psfMag > 24", False),  # a float column, which may hold NaN
        ("g_psfMag BETWEEN 30 AND 40", False),
    ],
)
def test_statistics_leave_out_only_chunks_without_answers(
    catalog: Catalog, where: str, pruned: bool
) -> None:
    adql = f"SELECT COUNT(*), SUM(objectId) FROM demo.Object WHERE {where}"
    assert run(catalog, adql) == raw(catalog, adql.replace("demo.Object", "object"))
    notes = catalog.engine.explain(adql).notes
    assert any(NOTE in n for n in notes) == pruned, notes


def test_gathered_references_are_left_out_by_statistics_too(catalog: Catalog) -> None:
    """A gathered query fetches each table with the terms that concern it alone; the
    chunks those terms rule out are not asked."""
    adql = (
        "SELECT COUNT(*) FROM demo.Object o WHERE o.coord_dec > 60 AND o.objectId NOT IN "
        "(SELECT s.objectId FROM demo.Source s WHERE s.band = 'u')"
    )
    sql = adql.replace("demo.Object", "object").replace("demo.Source", "source")
    assert run(catalog, adql) == raw(catalog, sql)
    notes = catalog.engine.explain(adql).notes
    assert notes[0].startswith("shape: gather") and any(NOTE in n for n in notes), notes
