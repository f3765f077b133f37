"""Director-key lookups: the index's ``_healpix_29`` narrows a chunk to its row groups.

The partition files here have row groups of 40 rows, so a lookup whose
``_healpix_29`` condition were wrong would skip the row group holding the
answer. Every answer is compared with DuckDB over the unpartitioned input.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from partition.director_index import DirectorIndex, write_director_index
from qcat.czar.adql import parse_adql
from qcat.czar.catalog import CatalogSnapshot
from qcat.czar.engine import QueryEngine
from qcat.czar.plan import plan
from qcat.czar.resolve import resolve
from tests.engine_support import Catalog, open_catalog, raw, run


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    root = tmp_path_factory.mktemp("keys")
    with open_catalog(
        root, n_objects=3000, seed=23, threshold=1500, row_group_rows=40, source_key_index=True
    ) as opened:
        yield opened


#: Rubin's objectIds lie near 2**60: far past 2**53, where a float names another key.
BIG_ID_OFFSET = 2**60 + 1


@pytest.fixture(scope="module")
def big_ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    root = tmp_path_factory.mktemp("big-keys")
    with open_catalog(
        root, n_objects=1500, seed=29, threshold=500, object_id_offset=BIG_ID_OFFSET
    ) as opened:
        yield opened


def _keys(catalog: Catalog, *rows: int) -> list[int]:
    column = catalog.demo.objects["objectId"]
    return [column[i].as_py() for i in rows]


def _chunk_sql(engine: QueryEngine, adql: str) -> str:
    return engine.explain(adql).chunk_queries[0].sql


def test_id_lookups_find_their_row(catalog: Catalog) -> None:
    for key in _keys(catalog, 0, 17, 1499, 2222, 2999):
        adql = f"SELECT objectId, coord_ra, g_psfMag FROM demo.Object WHERE objectId = {key}"
        assert "_healpix_29 BETWEEN" in _chunk_sql(catalog.engine, adql)
        sql = f"SELECT objectId, coord_ra, g_psfMag FROM object WHERE objectId = {key}"
        want = raw(catalog, sql)
        assert len(want) == 1 and run(catalog, adql) == want


def test_a_key_written_as_a_string_is_read_as_sql_casts_it(catalog: Catalog) -> None:
    (key,) = _keys(catalog, 42)
    want = raw(catalog, f"SELECT objectId, g_psfMag FROM object WHERE objectId = {key}")
    adql = f"SELECT objectId, g_psfMag FROM demo.Object WHERE objectId = '{key}'"
    assert len(want) == 1 and run(catalog, adql) == want
    assert "director index maps 1 key(s) to 1 chunk(s)" in " ".join(
        catalog.engine.explain(adql).notes
    )


def test_in_list_with_absent_keys(catalog: Catalog) -> None:
    keys = [*_keys(catalog, *range(3, 3000, 61)), 1, -7, 10**15]
    listed = ", ".join(map(str, keys))
    adql = f"SELECT objectId, r_psfMag FROM demo.Object WHERE objectId IN ({listed}) ORDER BY 1"
    sql = f"SELECT objectId, r_psfMag FROM object WHERE objectId IN ({listed}) ORDER BY 1"
    want = raw(catalog, sql)
    assert len(want) == len(keys) - 3 and run(catalog, adql) == want


def test_survey_sized_keys_are_looked_up_exactly(big_ids: Catalog) -> None:
    keys = _keys(big_ids, 0, 700, 1499)
    assert min(keys) > 2**60
    for key in keys:
        adql = f"SELECT objectId, coord_ra FROM demo.Object WHERE objectId = {key}"
        want = raw(big_ids, f"SELECT objectId, coord_ra FROM object WHERE objectId = {key}")
        assert len(want) == 1 and run(big_ids, adql) == want
        curve = f"SELECT sourceId, psFlux FROM {{}} WHERE objectId = {key} ORDER BY sourceId"
        want = raw(big_ids, curve.format("source"))
        assert want and run(big_ids, curve.format("demo.Source")) == want
    # a neighbour of a key (one more) is another key, absent here
    listed = ", ".join(str(k) for k in [*keys, keys[0] + 1])
    adql = f"SELECT objectId FROM demo.Object WHERE objectId IN ({listed}) ORDER BY 1"
    assert run(big_ids, adql) == [(k,) for k in sorted(keys)]


def test_light_curve_by_the_child_key(catalog: Catalog) -> None:
    for key in _keys(catalog, 5, 1800):
        adql = (
            f"SELECT sourceId, midPointTai, psFlux FROM demo.Source WHERE objectId = {key} "
            "ORDER BY midPointTai, sourceId"
        )
        assert "_healpix_29 BETWEEN" in _chunk_sql(catalog.engine, adql)
        want = raw(
            catalog,
            f"SELECT sourceId, midPointTai, psFlux FROM source WHERE objectId = {key} "
            "ORDER BY midPointTai, sourceId",
        )
        assert want and run(catalog, adql) == want


def _source_ids(catalog: Catalog, *rows: int) -> list[int]:
    column = catalog.demo.sources["sourceId"]
    return [column[i].as_py() for i in rows]


def _notes(catalog: Catalog, adql: str) -> str:
    return " / ".join(catalog.engine.explain(adql).notes)


def test_a_source_is_found_by_its_own_key(catalog: Catalog) -> None:
    """A child's own key is spread over every chunk; its own index places each key in one
    chunk and row group (groups of 40 rows here: a wrong ``_healpix_29`` misses it)."""
    n = len(catalog.demo.sources)
    for key in _source_ids(catalog, 0, n // 3, n - 1):
        adql = f"SELECT * FROM demo.Source WHERE sourceId = {key}"
        assert "index of sourceId maps 1 key(s) to 1 chunk(s)" in _notes(catalog, adql)
        assert "_healpix_29 BETWEEN" in _chunk_sql(catalog.engine, adql)
        want = raw(catalog, f"SELECT * FROM source WHERE sourceId = {key}")
        assert len(want) == 1 and run(catalog, adql) == want
    keys = [*_source_ids(catalog, *range(7, n, n // 25)), -3, 10**15]
    listed = ", ".join(map(str, keys))
    adql = f"SELECT sourceId, psFlux FROM demo.Source WHERE sourceId IN ({listed}) ORDER BY 1"
    assert f"index of sourceId maps {len(keys)} key(s)" in _notes(catalog, adql)
    want = raw(catalog, adql.replace("demo.Source", "source"))
    assert len(want) == len(keys) - 2 and run(catalog, adql) == want


def test_own_keys_and_foreign_keys_together(catalog: Catalog) -> None:
    """Both indexes prune: a source and another object's key select nothing."""
    (key,) = _source_ids(catalog, 321)
    (owner,) = raw(catalog, f"SELECT objectId FROM source WHERE sourceId = {key}")[0:1]
    (other,) = _keys(catalog, 0)
    for object_id, rows in ((owner[0], 1), (other, 0)):
        adql = (
            "SELECT sourceId, objectId FROM demo.Source "
            f"WHERE sourceId = {key} AND objectId = {object_id}"
        )
        notes = _notes(catalog, adql)
        assert "director index maps" in notes and "index of sourceId maps" in notes
        want = raw(catalog, adql.replace("demo.Source", "source"))
        assert len(want) == rows and run(catalog, adql) == want


def test_director_child_join_by_the_child_key(catalog: Catalog) -> None:
    n = len(catalog.demo.sources)
    listed = ", ".join(map(str, _source_ids(catalog, 11, n // 2, n - 5)))
    adql = (
        "SELECT s.sourceId, o.objectId, o.g_psfMag FROM demo.Object AS o "
        f"JOIN demo.Source AS s ON s.objectId = o.objectId WHERE s.sourceId IN ({listed}) "
        "ORDER BY 1"
    )
    notes = _notes(catalog, adql)
    assert "shape: chunk-local (director-child)" in notes
    assert "index of sourceId maps 3 key(s)" in notes
    sql = adql.replace("demo.Object AS", "object").replace("demo.Source AS", "source")
    want = raw(catalog, sql)
    assert len(want) == 3 and run(catalog, adql) == want


def test_without_its_own_index_a_source_is_found_by_a_scan(big_ids: Catalog) -> None:
    """The index is asked for at ingest (``--key-index``): without it, every chunk."""
    assert big_ids.engine.catalog().table("demo.Source").own_key_index_path is None
    (key,) = _source_ids(big_ids, 77)
    adql = f"SELECT sourceId, objectId FROM demo.Source WHERE sourceId = {key}"
    assert "index of sourceId" not in _notes(big_ids, adql)
    want = raw(big_ids, adql.replace("demo.Source", "source"))
    assert len(want) == 1 and run(big_ids, adql) == want


def test_the_child_index_holds_every_key(catalog: Catalog) -> None:
    source = catalog.engine.catalog().table("demo.Source")
    assert source.own_key_index_path is not None
    index = DirectorIndex(catalog.data / source.own_key_index_path)
    assert index.key_column == "sourceId" and index.has_healpix
    assert index.num_rows == len(catalog.demo.sources)
    # the foreign key is still placed by the director's index
    assert source.key_index_path == catalog.engine.catalog().table("demo.Object").key_index_path


def test_outer_join_keeps_directors_without_children(catalog: Catalog) -> None:
    # The key is the director's: only the director's rows may be narrowed, never the
    # outer side's, or objects without matching sources would lose their row.
    listed = ", ".join(map(str, _keys(catalog, *range(0, 3000, 97))))
    adql = (
        "SELECT o.objectId, s.sourceId FROM demo.Object AS o LEFT JOIN demo.Source AS s "
        "ON s.objectId = o.objectId AND s.psFlux > 40000 "
        f"WHERE o.objectId IN ({listed}) ORDER BY 1, 2"
    )
    want = raw(
        catalog,
        "SELECT o.objectId, s.sourceId FROM object o LEFT JOIN source s "
        "ON s.objectId = o.objectId AND s.psFlux > 40000 "
        f"WHERE o.objectId IN ({listed}) ORDER BY 1, 2 NULLS FIRST",
    )
    assert any(r[1] is None for r in want) and any(r[1] is not None for r in want)
    assert run(catalog, adql) == want


@pytest.mark.parametrize("side", ["LEFT", "RIGHT", "FULL"])
def test_outer_director_child_joins_run_chunk_by_chunk(catalog: Catalog, side: str) -> None:
    """Rows that can match share a chunk, so each chunk's outer join is its share of the
    whole; unmatched rows appear once. Checked across every chunk and with a key."""
    listed = ", ".join(map(str, _keys(catalog, *range(0, 3000, 97))))
    on = "ON s.objectId = o.objectId AND s.psFlux > 40000"
    for where in ("", f" WHERE o.objectId IN ({listed})"):
        adql = (
            f"SELECT COUNT(*), COUNT(o.objectId), COUNT(s.sourceId), SUM(s.sourceId) "
            f"FROM demo.Object AS o {side} JOIN demo.Source AS s {on}{where}"
        )
        sql = adql.replace("demo.Object AS", "object").replace("demo.Source AS", "source")
        assert run(catalog, adql) == raw(catalog, sql), where
        notes = catalog.engine.explain(adql).notes
        assert "shape: chunk-local (director-child)" in notes, notes
    with_key = (
        f"SELECT o.objectId, s.sourceId FROM demo.Object AS o {side} JOIN demo.Source AS s "
        f"{on} WHERE o.objectId IN ({listed})"
    )
    assert any("director index maps" in n for n in catalog.engine.explain(with_key).notes)


def test_an_outer_join_is_gathered_when_a_preserved_chunk_has_no_partner(
    catalog: Catalog,
) -> None:
    """Tasks run on the director's chunks: a child lacking one of them cannot give the
    director's unmatched rows there, so a LEFT join is then gathered (an inner one,
    which has no such rows, is not)."""
    snapshot = catalog.engine.catalog()
    source = snapshot.table("demo.Source")
    fewer = replace(source, chunks=source.chunks[1:])
    tables = {t.name.lower(): (fewer if t is source else t) for t in snapshot.tables()}
    shrunk = CatalogSnapshot(tables)
    query = (
        "SELECT o.objectId, s.sourceId FROM demo.Object AS o {} JOIN demo.Source AS s "
        "ON s.objectId = o.objectId"
    )
    shapes = {
        side: plan(resolve(parse_adql(query.format(side)), shrunk), catalog.data).notes[0]
        for side in ("LEFT", "RIGHT", "INNER")
    }
    assert shapes == {
        "LEFT": "shape: gather (the czar evaluates the query on fetched rows)",
        "RIGHT": "shape: chunk-local (director-child)",  # every Source chunk has its Object one
        "INNER": "shape: chunk-local (director-child)",
    }


def test_an_index_without_healpix_still_answers(catalog: Catalog, tmp_path: Path) -> None:
    """Indexes written before they stored ``_healpix_29`` give lookups without the narrowing."""
    (index_path,) = catalog.data.glob("tables/demo.object/*/index/director_index.parquet")
    saved = tmp_path / "saved.parquet"
    shutil.copy2(index_path, saved)
    old = pq.read_table(saved).drop_columns(["_healpix_29"])
    try:
        write_director_index(old.to_batches(), index_path, key_column="objectId")
        assert not DirectorIndex(index_path).has_healpix
        (key,) = _keys(catalog, 1234)
        adql = f"SELECT objectId, i_psfMag FROM demo.Object WHERE objectId = {key}"
        assert "_healpix_29" not in _chunk_sql(catalog.engine, adql)
        assert run(catalog, adql) == raw(
            catalog, f"SELECT objectId, i_psfMag FROM object WHERE objectId = {key}"
        )
    finally:
        shutil.copy2(saved, index_path)
