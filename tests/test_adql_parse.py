"""ADQL 2.1 front end: parse, validate, print back, and ``qcat adql check``.

Fixtures: every ``tests/adql/valid/*.adql`` parses and survives the round
trip through :func:`to_adql`; every ``tests/adql/invalid/*.adql`` starts with
``-- error: line L, column C: <part of the message>`` and must be rejected
with exactly that position.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from qcat.czar.adql import FUNCTIONS, AdqlSyntaxError, parse_adql, to_adql
from qcat.czar.adql import expressions as ax
from qcat.czar.adql.functions import language_features
from qcat.czar.adql.keywords import RESERVED
from qcat.errors import QcatError
from tests.conftest import RunQcat

FIXTURES = Path(__file__).parent / "adql"
VALID = sorted((FIXTURES / "valid").glob("*.adql"))
INVALID = sorted((FIXTURES / "invalid").glob("*.adql"))
HEADER = re.compile(r"-- error: line (\d+), column (\d+): (.+)")


def shape(node: Any) -> Any:
    """The tree as nested tuples: class, then every non-empty argument, exactly."""
    if isinstance(node, exp.Expr):
        args = (
            (key, shape(value))
            for key, value in node.args.items()
            if value is not None and value is not False and value != []
        )
        return (type(node).__name__, tuple(sorted(args)))
    if isinstance(node, list):
        return tuple(shape(v) for v in node)
    return node


def rejects(query: str) -> AdqlSyntaxError:
    with pytest.raises(AdqlSyntaxError) as info:
        parse_adql(query)
    return info.value


# --- fixtures -------------------------------------------------------------


def test_fixture_sets_are_broad() -> None:
    assert len(VALID) >= 60
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_query_round_trips(path: Path) -> None:
    text = path.read_text()
    tree = parse_adql(text)
    assert isinstance(tree, (exp.Select, exp.SetOperation, exp.Subquery))
    if isinstance(tree, exp.Subquery):  # only for "(query) ORDER BY ..."
        assert tree.args.get("order") or tree.args.get("offset")
    printed = to_adql(tree)
    assert shape(parse_adql(printed)) == shape(tree)
    assert to_adql(parse_adql(printed)) == printed  # printing is a fixed point
    assert shape(parse_adql(to_adql(tree, pretty=True))) == shape(tree)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_query_is_rejected_at_the_offending_token(path: Path) -> None:
    text = path.read_text()
    header = HEADER.fullmatch(text.split("\n", 1)[0])
    assert header, f"{path.name}: first line must be '-- error: line L, column C: message'"
    line, column, message = int(header[1]), int(header[2]), header[3]
    error = rejects(text)
    assert (error.line, error.column) == (line, column), str(error)
    assert message in error.message
    assert str(error) == f"line {line}, column {column}: {error.message}"


# --- the allow-list -------------------------------------------------------

_GEOMETRY_CALLS = {
    "POINT": "POINT('ICRS', ra, dec)",
    "CIRCLE": "CIRCLE(ra, dec, 1)",
    "BOX": "BOX(ra, dec, 1, 2)",
    "POLYGON": "POLYGON(1, 2, 3, 4, 5, 6)",
    "CONTAINS": "CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3))",
    "INTERSECTS": "INTERSECTS(CIRCLE(ra, dec, 1), BOX(1, 2, 3, 4))",
    "DISTANCE": "DISTANCE(POINT(ra, dec), POINT(1, 2))",
    "AREA": "AREA(CIRCLE(1, 2, 3))",
    "CENTROID": "CENTROID(POLYGON(1, 2, 3, 4, 5, 6))",
    "COORD1": "COORD1(POINT(1, 2))",
    "COORD2": "COORD2(pos)",
    "COORDSYS": "COORDSYS(pos)",
}


def _sample_call(name: str) -> str:
    spec = FUNCTIONS[name]
    if name in _GEOMETRY_CALLS:
        return _GEOMETRY_CALLS[name]
    if name == "IN_UNIT":
        return "IN_UNIT(ra, 'deg')"
    count = spec.max_args if spec.max_args is not None else spec.min_args + 2
    return f"{name.lower()}({', '.join(['ra'] * count)})"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_allow_listed_function_parses(name: str) -> None:
    spec = FUNCTIONS[name]
    tree = parse_adql(f"SELECT {_sample_call(name)} AS v FROM s.t")
    call = tree.expressions[0].this
    assert isinstance(call, spec.expression)
    assert spec.kind in ("scalar", "aggregate", "geometry", "extension")
    assert shape(parse_adql(to_adql(tree))) == shape(tree)
    if spec.min_args > 0:  # a call without its arguments is an error that names it
        assert name in rejects(f"SELECT {name}() FROM s.t").message


@pytest.mark.parametrize(
    "name",
    ["read_csv", "read_parquet", "glob", "getenv", "pg_sleep", "current_setting", "system",
     "list_value", "regexp_matches", "now", "version", "query", "sign", "ivo_hasword"],
)  # fmt: skip
def test_functions_outside_the_allow_list_are_rejected(name: str) -> None:
    error = rejects(f"SELECT a FROM s.t WHERE {name}('x') = 1")
    assert error.message == f"unknown function {name}"
    assert (error.line, error.column) == (1, 25)


def test_allow_list_flags_extensions() -> None:
    extensions = {n for n, s in FUNCTIONS.items() if not s.standard}
    assert {"ANGDIST", "FLUX_TO_ABMAG", "ABMAG_TO_FLUX", "IVO_HEALPIX_INDEX"} <= extensions
    assert {"STDDEV", "VAR_POP"} <= extensions
    assert FUNCTIONS["STDDEV"].kind == "aggregate"
    assert FUNCTIONS["ANGDIST"].kind == "extension"
    standard = {n for n, s in FUNCTIONS.items() if s.standard}
    # Every standard function name is an ADQL or SQL reserved word.
    assert standard <= RESERVED
    features = language_features()
    assert "CIRCLE" in features["ivo://ivoa.net/std/tapregext#features-adqlgeo"]
    assert any(
        f.startswith("ANGDIST(") for f in features["ivo://ivoa.net/std/tapregext#features-udf"]
    )


# --- the shapes later stages rely on --------------------------------------


def test_top_and_offset_live_in_limit_and_offset_args() -> None:
    tree = parse_adql("SELECT TOP 10 a FROM t ORDER BY a OFFSET 20")
    assert isinstance(tree.args["limit"], exp.Limit)
    assert tree.args["limit"].expression.name == "10"
    assert tree.args["offset"].expression.name == "20"
    union = parse_adql("SELECT TOP 3 a FROM t UNION SELECT a FROM u ORDER BY 1 OFFSET 2")
    assert isinstance(union, exp.Union)
    assert union.args["offset"].expression.name == "2"
    assert union.args["order"] is not None
    assert union.this.args["limit"].expression.name == "3"


def test_geometry_constructors_are_normalised() -> None:
    tree = parse_adql(
        "SELECT CIRCLE('ICRS', 1, 2, 3), CIRCLE(POINT(1, 2), 3), BOX(p, 1, 2),"
        " POLYGON(1, 2, 3, 4, 5, 6), DISTANCE(1, 2, 3, 4) FROM t"
    )
    circle, circle2, box, polygon, distance = tree.expressions
    assert isinstance(circle, ax.AdqlCircle)
    assert circle.args["coord_sys"].name == "ICRS"
    assert isinstance(circle.args["center"], ax.AdqlPoint)
    assert circle.args["center"].args["coord1"].name == "1"
    assert circle.args["radius"].name == "3"
    assert shape(circle2.args["center"]) == shape(circle.args["center"])
    assert "coord_sys" not in circle2.args
    assert isinstance(box.args["center"], exp.Column)
    assert [v.args["coord2"].name for v in polygon.expressions] == ["2", "4", "6"]
    assert isinstance(distance.this, ax.AdqlPoint) and isinstance(distance.expression, ax.AdqlPoint)
    assert to_adql(tree).startswith("SELECT CIRCLE('ICRS', 1, 2, 3), CIRCLE(1, 2, 3), BOX(p, 1, 2)")


def test_standard_functions_keep_sqlglot_classes() -> None:
    tree = parse_adql(
        "SELECT LOG(a), LOG10(a), CEILING(a), TRUNCATE(a, 2), COUNT(*), COUNT(DISTINCT a),"
        " VAR_SAMP(a) FROM t"
    )
    ln, log10, ceil, trunc, count_all, count_distinct, var = tree.expressions
    assert isinstance(ln, exp.Ln)
    assert isinstance(log10, exp.Log) and log10.this.name == "10"
    assert isinstance(ceil, exp.Ceil)
    assert isinstance(trunc, exp.Trunc) and trunc.args["decimals"].name == "2"
    assert isinstance(count_all.this, exp.Star)
    assert isinstance(count_distinct.this, exp.Distinct)
    assert isinstance(var, exp.Variance)


def test_joins_use_one_convention() -> None:
    tree = parse_adql(
        "SELECT * FROM a JOIN b ON a.x = b.x LEFT OUTER JOIN c USING (x), d CROSS JOIN e"
        " NATURAL JOIN f"
    )
    joins = tree.args["joins"]
    assert [(j.args.get("kind"), j.args.get("side"), j.args.get("method")) for j in joins] == [
        ("INNER", None, None),
        (None, "LEFT", None),
        (None, None, None),  # the comma
        ("CROSS", None, None),
        ("INNER", None, "NATURAL"),
    ]
    assert [i.name for i in joins[1].args["using"]] == ["x"]


def test_negations_wrap_the_positive_predicate() -> None:
    tree = parse_adql(
        "SELECT a FROM t WHERE a NOT IN (1) AND a NOT BETWEEN 1 AND 2 AND a NOT LIKE 'x'"
        " AND a IS NOT NULL"
    )
    predicates = list(tree.args["where"].this.flatten())
    assert [type(p.this).__name__ for p in predicates] == ["In", "Between", "Like", "Is"]
    assert all(isinstance(p, exp.Not) for p in predicates)


def test_identifiers_and_literals() -> None:
    tree = parse_adql("SELECT \"Col Name\", RA, 'it''s', 0x1F, 1.5E-3 FROM \"My Schema\".t AS x")
    quoted, regular, string, hexa, number = tree.expressions
    assert quoted.this.quoted and quoted.name == "Col Name"
    assert not regular.this.quoted and regular.name == "RA"
    assert string.is_string and string.name == "it's"
    assert hexa.name == "31"
    assert number.name == "1.5E-3"
    table = tree.args["from_"].this
    assert table.args["db"].quoted and table.args["db"].name == "My Schema"
    assert table.alias == "x"


def test_ast_matches_sqlglot_for_plain_sql() -> None:
    # For the SQL that ADQL shares with PostgreSQL the tree is what sqlglot builds.
    for query in (
        "SELECT a, b AS c FROM s.t AS x WHERE a > 1 AND b IS NULL GROUP BY a"
        " HAVING COUNT(*) > 2 ORDER BY a DESC, b",
        "SELECT DISTINCT x.a FROM s.t AS x LEFT JOIN s.u AS y ON x.a = y.a, s.v AS z"
        " WHERE x.a IN (1, 2) OR x.b BETWEEN 1 AND 2",
        "WITH q AS (SELECT a FROM t) SELECT a FROM q UNION ALL SELECT a FROM t ORDER BY 1 OFFSET 5",
        "SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END, CAST(a AS DOUBLE PRECISION),"
        " -a + 2 * (b - 1), 'a' || b, COALESCE(a, b), LOWER(c), SUM(DISTINCT a) FROM t",
    ):
        assert shape(parse_adql(query)) == shape(sqlglot.parse_one(query, read="postgres"))


def test_nodes_carry_their_position() -> None:
    tree = parse_adql(
        "SELECT a,\n\t  bee\nFROM t\nWHERE\n  CONTAINS(POINT(a, b), CIRCLE(1, 2, 3)) = 1"
    )
    column = tree.expressions[1]
    assert (column.meta["line"], column.meta["col"]) == (2, 4)
    contains = tree.find(ax.AdqlContains)
    assert contains is not None
    assert (contains.meta["line"], contains.meta["col"]) == (5, 3)


def test_sqlglot_dialect_reads_and_writes_adql() -> None:
    with pytest.raises(AdqlSyntaxError):
        sqlglot.parse_one("SELECT a FROM t LIMIT 5", read="adql")
    tree = sqlglot.parse_one("select top 5 a from t where mod(a, 2) = 0", read="adql")
    assert tree.sql(dialect="adql") == "SELECT TOP 5 a FROM t WHERE MOD(a, 2) = 0"


# --- errors ---------------------------------------------------------------


def test_error_is_a_qcat_error_with_a_caret_excerpt() -> None:
    query = "SELECT *\nFROM t\n\tWHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE(10, 20))"
    error = rejects(query)
    assert isinstance(error, QcatError)
    assert (error.line, error.column) == (3, 50)
    assert error.expected == "a radius"
    assert error.excerpt(query).split("\n") == [
        "\tWHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE(10, 20))",
        "\t" + " " * 48 + "^",
    ]
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.column, copy.message, str(copy)) == (3, 50, error.message, str(error))


def test_windows_line_endings_count_columns_per_line() -> None:
    error = rejects("SELECT a\r\nFROM t\r\nWHERE b")
    assert (error.line, error.column) == (3, 7)
    error = rejects("SELECT a\r\nFROM t\r\nWHERE b > 1 LIMIT 3")
    assert (error.line, error.column) == (3, 13)


def test_the_earliest_of_several_rule_violations_is_reported() -> None:
    error = rejects("SELECT read_csv('x'), a > 1 FROM t WHERE COUNT(*) > 1")
    assert (error.line, error.column) == (1, 8)


def test_nesting_is_bounded() -> None:
    deep = "SELECT " + "(" * 200 + "a" + ")" * 200 + " FROM t"
    assert "nested too deeply" in rejects(deep).message
    parse_adql("SELECT " + "(" * 40 + "a" + ")" * 40 + " FROM t")
    long_sum = "SELECT " + " + ".join(["a"] * 2000) + " FROM t"
    tree = parse_adql(long_sum)  # long operator chains are loops, not recursion
    assert to_adql(tree) == long_sum
    assert parse_adql(to_adql(tree)) == tree


# --- qcat adql check ------------------------------------------------------


def test_cli_check_valid_query(run_qcat: RunQcat) -> None:
    proc = run_qcat("adql", "check", "--show", "select top 3 a from t where mod(a, 2) = 0")
    assert proc.stdout.splitlines()[0] == "valid ADQL"
    assert "SELECT TOP 3" in proc.stdout and "MOD(a, 2) = 0" in proc.stdout


def test_cli_check_invalid_query_shows_a_caret(run_qcat: RunQcat) -> None:
    query = "SELECT objectId\nFROM demo.Object\nWHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE(10, 20))"
    proc = run_qcat("adql", "check", query, check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == "line 3, column 49: expected a radius after the centre of CIRCLE"
    assert lines[1] == "WHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE(10, 20))"
    assert lines[2] == " " * 48 + "^"


def test_cli_check_reads_standard_input(run_qcat: RunQcat) -> None:
    ok = run_qcat("adql", "check", "-", input="SELECT a FROM t\n")
    assert ok.stdout.strip() == "valid ADQL"
    bad = run_qcat("adql", "check", input="SELECT a FROM t LIMIT 5", check=False)
    assert bad.returncode == 1
    assert bad.stdout.startswith("line 1, column 17: LIMIT is not ADQL")


def test_cli_check_help_has_examples(run_qcat: RunQcat) -> None:
    proc = run_qcat("adql", "check", "--help")
    assert "Examples:" in proc.stdout and "qcat adql check" in proc.stdout
