"""VOSI 1.1 table metadata: the ``/tap/tables`` and ``/tap/tables/{name}`` documents.

Pure functions from a :class:`CatalogSnapshot` to XML bytes: a
``vosi:tableset`` of every schema and table, and a ``vosi:table`` of one
table with its columns and foreign keys (VODataService 1.2 types, which keep
the ``VODataService/v1.1`` namespace). The content comes from
:func:`qcat.tap_schema.describe`, the same description TAP_SCHEMA is built
from, so the two always agree.

Built with :mod:`xml.etree.ElementTree`: vo-models 0.5 escapes text twice
(``<`` in a description becomes ``&amp;lt;``) and writes an ``xtype``
element VODataService does not have (1.2 puts it in ``extendedType``).
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from qcat.czar.catalog import CatalogSnapshot
from qcat.czar.errors import ResolveError
from qcat.errors import QcatError
from qcat.schema import TableSpec
from qcat.tap_schema import ColumnInfo, ForeignKeyInfo, TableInfo, describe, describe_table

VOSI_TABLES_NS = "http://www.ivoa.net/xml/VOSITables/v1.0"
VODATASERVICE_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

#: Without a ``detail`` parameter, /tables lists columns only while the catalog
#: has at most this many of them; a larger catalog answers as for ``detail=min``
#: and clients read each table's columns from /tables/{name} (VOSI 1.1, 3.4).
FULL_TABLESET_MAX_COLUMNS = 5000

#: The values of the ``detail`` parameter (VOSI 1.1).
DETAILS = ("min", "max")


class UnknownTable(ResolveError):
    """``/tables/{name}`` names no published table; the message suggests close names."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"no table {name!r} in this service{hint}")


class InvalidDetail(QcatError):
    """A ``detail`` parameter other than ``min`` or ``max``."""


def tableset_xml(catalog: CatalogSnapshot, detail: str | None = None) -> bytes:
    """The ``vosi:tableset`` of every schema and table of ``catalog``.

    ``detail="max"`` lists every table's columns and foreign keys,
    ``detail="min"`` only names and describes the tables. Without it, the
    columns are listed unless the catalog has more than
    :data:`FULL_TABLESET_MAX_COLUMNS` of them. Raises :class:`InvalidDetail`
    for any other value.
    """
    tables = catalog.tables()
    full = _full_detail(detail, sum(len(t.spec.columns) for t in tables))
    nrows = {t.name.lower(): t.version.num_rows for t in tables}
    root = _root("tableset")
    for schema in describe([t.spec for t in tables], nrows):
        element = ET.SubElement(root, "schema")
        _text(element, "name", schema.name)
        _text(element, "description", schema.description)
        for table in schema.tables:
            _table(ET.SubElement(element, "table"), table, full=full)
    return _serialize(root)


def table_xml(catalog: CatalogSnapshot, name: str) -> bytes:
    """The ``vosi:table`` of table ``name`` (``schema.table``, any case).

    Raises :class:`UnknownTable`, a :class:`ResolveError`, naming close
    table names when there is no such table.
    """
    specs = {t.name.lower(): t.spec for t in catalog.tables()}
    spec = _find(specs, name)
    table = catalog.table(spec.qualified_name)
    root = _root("table")
    _table(root, describe_table(spec, specs, nrows=table.version.num_rows), full=True)
    return _serialize(root)


def _full_detail(detail: str | None, columns: int) -> bool:
    if detail is None:
        return columns <= FULL_TABLESET_MAX_COLUMNS
    if detail.lower() not in DETAILS:
        raise InvalidDetail(f"detail must be min or max, not {detail!r}")
    return detail.lower() == "max"


def _find(specs: Mapping[str, TableSpec], name: str) -> TableSpec:
    wanted = name.replace('"', "").lower()
    if wanted in specs:
        return specs[wanted]
    bare = wanted.rpartition(".")[2]
    close = [s.qualified_name for k, s in specs.items() if k.rpartition(".")[2] == bare]
    close += [
        specs[k].qualified_name
        for k in difflib.get_close_matches(wanted, list(specs), n=3, cutoff=0.6)
        if specs[k].qualified_name not in close
    ]
    raise UnknownTable(name, close)


# -- elements -----------------------------------------------------------------------


def _root(tag: str) -> ET.Element:
    # Prefixes are declared by hand so xsi:type can name the vs: type.
    return ET.Element(
        f"vosi:{tag}",
        {"xmlns:vosi": VOSI_TABLES_NS, "xmlns:vs": VODATASERVICE_NS, "xmlns:xsi": XSI_NS},
    )


def _text(parent: ET.Element, tag: str, value: str | int | None) -> None:
    if value is not None and value != "":
        ET.SubElement(parent, tag).text = str(value)


def _table(element: ET.Element, table: TableInfo, *, full: bool) -> None:
    element.set("type", table.table_type)
    _text(element, "name", table.name)
    _text(element, "description", table.description)
    _text(element, "utype", table.utype)
    _text(element, "nrows", table.nrows)
    if not full:
        return
    for column in table.columns:
        _column(ET.SubElement(element, "column"), column)
    for key in table.foreign_keys:
        _foreign_key(ET.SubElement(element, "foreignKey"), key)


def _column(element: ET.Element, column: ColumnInfo) -> None:
    if column.std:
        element.set("std", "true")
    _text(element, "name", column.name)
    _text(element, "description", column.description)
    _text(element, "unit", column.unit)
    _text(element, "ucd", column.ucd)
    _text(element, "utype", column.utype)
    datatype = ET.SubElement(element, "dataType", {"xsi:type": "vs:VOTableType"})
    if column.type.arraysize:
        datatype.set("arraysize", column.type.arraysize)
    if column.type.xtype:
        datatype.set("extendedType", column.type.xtype)
    datatype.text = column.type.datatype
    for flag, on in (
        ("indexed", column.indexed),
        ("primary", column.primary),
        ("nullable", column.nullable),
    ):
        if on:
            _text(element, "flag", flag)


def _foreign_key(element: ET.Element, key: ForeignKeyInfo) -> None:
    _text(element, "targetTable", key.target_table)
    for source, target in key.columns:
        pair = ET.SubElement(element, "fkColumn")
        _text(pair, "fromColumn", source)
        _text(pair, "targetColumn", target)
    _text(element, "description", key.description)


def _serialize(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)
