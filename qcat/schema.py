"""Table descriptions: loaded from Felis YAML or inferred from an input file.

A :class:`TableSpec` is the one description of a table that ingest, the
metadata store and (later) TAP_SCHEMA use. It records the Felis metadata of
every column and the table's partitioning role:

- a *director* table has position columns (found from the UCDs
  ``pos.eq.ra;meta.main`` / ``pos.eq.dec;meta.main``) and a one-column
  primary key, the director key;
- a *child* table has a foreign key to a director table; its rows are
  partitioned by their director row's position;
- a *plain* table has neither and is copied whole to every worker.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from qcat.errors import SchemaError

TableKind = Literal["director", "child", "plain"]

RA_UCD = "pos.eq.ra;meta.main"
DEC_UCD = "pos.eq.dec;meta.main"

#: Felis datatype -> Arrow type of the stored column.
FELIS_TO_ARROW: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "string": pa.string(),
    "unicode": pa.string(),
    "text": pa.string(),
    "binary": pa.binary(),
    "timestamp": pa.timestamp("us"),
}


def felis_type_of(arrow_type: pa.DataType) -> str:
    """Return the Felis datatype that stores ``arrow_type`` without loss."""
    t = arrow_type
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_uint8(t):
        return "byte" if pa.types.is_int8(t) else "short"
    if pa.types.is_int16(t):
        return "short"
    if pa.types.is_uint16(t) or pa.types.is_int32(t):
        return "int"
    if pa.types.is_uint32(t) or pa.types.is_int64(t):
        return "long"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_timestamp(t):
        return "timestamp"
    raise SchemaError(f"no Felis datatype stores Arrow type {t}")


@dataclass(frozen=True)
class ColumnSpec:
    """One column with its Felis metadata."""

    name: str
    datatype: str
    nullable: bool = True
    description: str | None = None
    unit: str | None = None
    ucd: str | None = None
    length: int | None = None
    principal: bool = False
    #: Data-model concept of the column (Felis ``votable:utype``), e.g. an ObsCore utype.
    utype: str | None = None
    #: DALI extended type (Felis ``votable:xtype``), e.g. ``adql:REGION``.
    xtype: str | None = None
    #: Whether a standard defines the column (Felis ``tap:std``; ``None``: not recorded).
    std: bool | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        """Arrow type the column is stored as."""
        return FELIS_TO_ARROW[self.datatype]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON in the metadata store)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TableSpec:
    """A table's columns, keys and partitioning role."""

    schema_name: str
    name: str
    columns: tuple[ColumnSpec, ...]
    description: str | None = None
    primary_key: tuple[str, ...] = ()
    #: Data-model concept of the table (Felis ``votable:utype``).
    utype: str | None = None
    ra_column: str | None = None
    dec_column: str | None = None
    #: Child tables: qualified name of the director table ...
    director_table: str | None = None
    #: ... the column of this table that holds the director key ...
    director_fk_column: str | None = None
    #: ... and the director table's key column it refers to.
    director_ref_column: str | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def qualified_name(self) -> str:
        """TAP-style ``schema.table``."""
        return f"{self.schema_name}.{self.name}"

    @functools.cached_property
    def own_position(self) -> tuple[str, str] | None:
        """The ``(ra, dec)`` columns of each row's own position, if any.

        A director's main position; for other tables the first columns whose
        UCDs start with ``pos.eq.ra`` / ``pos.eq.dec`` (a child's rows sit in
        their director's chunk, but may carry positions of their own).
        """
        if self.ra_column and self.dec_column:
            return self.ra_column, self.dec_column
        ra = next(
            (c.name for c in self.columns if (c.ucd or "").lower().startswith("pos.eq.ra")), None
        )
        dec = next(
            (c.name for c in self.columns if (c.ucd or "").lower().startswith("pos.eq.dec")), None
        )
        return (ra, dec) if ra and dec else None

    @property
    def kind(self) -> TableKind:
        """``director``, ``child`` or ``plain``."""
        if self.director_table:
            return "child"
        if self.ra_column and self.dec_column:
            return "director"
        return "plain"

    @property
    def director_key(self) -> str | None:
        """The director key column (one-column primary key of a director table)."""
        if self.kind == "director" and len(self.primary_key) == 1:
            return self.primary_key[0]
        return None

    def column(self, name: str) -> ColumnSpec:
        """The column called ``name``; :class:`SchemaError` if there is none."""
        for c in self.columns:
            if c.name == name:
                return c
        raise SchemaError(f"table {self.qualified_name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        """Column names in schema order."""
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the stored table (without ``_healpix_29``)."""
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        )

    def with_overrides(
        self,
        *,
        ra: str | None = None,
        dec: str | None = None,
        key: str | None = None,
        director: str | None = None,
        director_fk: str | None = None,
    ) -> TableSpec:
        """Return a copy with partitioning roles set from command-line flags."""
        spec = self
        for col in (ra, dec, key, director_fk):
            if col is not None:
                spec.column(col)
        if ra is not None:
            spec = dataclasses.replace(spec, ra_column=ra)
        if dec is not None:
            spec = dataclasses.replace(spec, dec_column=dec)
        if key is not None:
            spec = dataclasses.replace(spec, primary_key=(key,))
        if director is not None or director_fk is not None:
            if not (director and director_fk):
                raise SchemaError("--director and --director-key must be given together")
            spec = dataclasses.replace(
                spec, director_table=director, director_fk_column=director_fk
            )
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON in the metadata store)."""
        d = dataclasses.asdict(self)
        d["columns"] = [c.to_dict() for c in self.columns]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["columns"] = tuple(ColumnSpec(**c) for c in d["columns"])
        d["primary_key"] = tuple(d.get("primary_key") or ())
        d["notes"] = tuple(d.get("notes") or ())
        return cls(**d)


def load_felis(path: str | Path) -> dict[str, TableSpec]:
    """Read a Felis YAML file; return its tables keyed by ``schema.table``.

    Raises :class:`SchemaError` naming the file when it is missing or invalid.
    """
    from felis.datamodel import ForeignKeyConstraint, Schema
    from pydantic import ValidationError

    p = Path(path)
    if not p.is_file():
        raise SchemaError(f"{p}: schema file not found")
    try:
        with p.open() as f:
            schema = Schema.from_stream(f)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        raise SchemaError(f"{p}: invalid Felis schema at {loc}: {first.get('msg')}") from e
    except Exception as e:  # yaml errors and friends
        raise SchemaError(f"{p}: cannot read Felis schema: {e}") from e

    id_to_column: dict[str, tuple[str, str]] = {}
    for t in schema.tables:
        for c in t.columns:
            id_to_column[c.id] = (t.name, c.name)

    def main_position(columns: tuple[ColumnSpec, ...]) -> tuple[str | None, str | None]:
        ra = next((c.name for c in columns if (c.ucd or "").lower() == RA_UCD), None)
        dec = next((c.name for c in columns if (c.ucd or "").lower() == DEC_UCD), None)
        return ra, dec

    def primary_key_of(t: Any) -> tuple[str, ...]:
        ids = t.primary_key if isinstance(t.primary_key, list) else [t.primary_key]
        return tuple(id_to_column[i][1] for i in ids if i and i in id_to_column)

    columns_of = {t.name: _felis_columns(t) for t in schema.tables}
    # A director has main positions and a one-column key; a foreign key makes
    # a child only when it points at such a table (not at, say, a filter list).
    directors = {
        t.name
        for t in schema.tables
        if all(main_position(columns_of[t.name])) and len(primary_key_of(t)) == 1
    }

    out: dict[str, TableSpec] = {}
    for t in schema.tables:
        columns = columns_of[t.name]
        primary_key = primary_key_of(t)
        ra, dec = main_position(columns)
        director = fk_col = ref_col = None
        for con in t.constraints:
            if not isinstance(con, ForeignKeyConstraint) or len(con.columns) != 1:
                continue
            ref_table, ref_column = id_to_column[con.referenced_columns[0]]
            if ref_table == t.name or ref_table not in directors:
                continue
            director = f"{schema.name}.{ref_table}"
            fk_col = id_to_column[con.columns[0]][1]
            ref_col = ref_column
            break
        spec = TableSpec(
            schema_name=schema.name,
            name=t.name,
            columns=columns,
            description=t.description,
            primary_key=primary_key,
            utype=t.votable_utype,
            ra_column=ra if director is None else None,
            dec_column=dec if director is None else None,
            director_table=director,
            director_fk_column=fk_col,
            director_ref_column=ref_col,
        )
        out[spec.qualified_name] = spec
    return out


def _felis_columns(table: Any) -> tuple[ColumnSpec, ...]:
    """The columns of a Felis table model as :class:`ColumnSpec`."""
    return tuple(
        ColumnSpec(
            name=c.name,
            datatype=str(c.datatype.value if hasattr(c.datatype, "value") else c.datatype),
            nullable=bool(c.nullable),
            description=c.description,
            unit=c.ivoa_unit or c.fits_tunit,
            ucd=c.ivoa_ucd,
            length=c.length,
            principal=bool(c.tap_principal),
            utype=c.votable_utype,
            xtype=c.votable_xtype,
            std=None if c.tap_std is None else bool(c.tap_std),
        )
        for c in table.columns
    )


def spec_from_felis(path: str | Path, qualified_name: str) -> TableSpec:
    """The table ``schema.table`` of a Felis file (case-insensitive match)."""
    tables = load_felis(path)
    for name, spec in tables.items():
        if name.lower() == qualified_name.lower():
            return spec
    raise SchemaError(
        f"{path}: no table {qualified_name!r}; the schema has {', '.join(sorted(tables))}"
    )


_RA_NAMES = ("ra", "ra_deg", "raj2000", "ra_icrs", "coord_ra", "alpha")
_DEC_NAMES = ("dec", "decl", "dec_deg", "dej2000", "decj2000", "dec_icrs", "coord_dec", "delta")


def infer_spec(
    arrow_schema: pa.Schema,
    qualified_name: str,
    *,
    ra: str | None = None,
    dec: str | None = None,
    key: str | None = None,
) -> TableSpec:
    """Infer what is safe from an input file's schema.

    Datatypes come from the Arrow types; position columns from common names
    (``ra``/``dec`` and friends) unless given; the director key only when
    given (uniqueness is checked during ingest). What was inferred is listed
    in ``notes`` so the CLI can say it.
    """
    schema_name, _, name = qualified_name.partition(".")
    if not name:
        raise SchemaError(f"table name {qualified_name!r} must be schema.table")
    notes: list[str] = []
    columns = []
    for f in arrow_schema:
        if f.name == "_healpix_29":
            continue
        columns.append(ColumnSpec(name=f.name, datatype=felis_type_of(f.type), nullable=True))
    names = {c.name.lower(): c.name for c in columns}
    notes.append(
        "datatypes from the input file: " + ", ".join(f"{c.name}={c.datatype}" for c in columns)
    )
    if ra is None:
        ra = next((names[n] for n in _RA_NAMES if n in names), None)
        if ra:
            notes.append(f"right ascension column: {ra} (from its name)")
    if dec is None:
        dec = next((names[n] for n in _DEC_NAMES if n in names), None)
        if dec:
            notes.append(f"declination column: {dec} (from its name)")
    if key is not None and key not in [c.name for c in columns]:
        raise SchemaError(f"--key {key!r} is not a column of the input")
    pk: tuple[str, ...] = (key,) if key else ()
    if not (ra and dec):
        notes.append("no position columns found: the table is copied whole to every worker")
    cols = []
    for c in columns:
        ucd = RA_UCD if c.name == ra else DEC_UCD if c.name == dec else None
        unit = "deg" if ucd else None
        cols.append(dataclasses.replace(c, ucd=ucd, unit=unit))
    return TableSpec(
        schema_name=schema_name,
        name=name,
        columns=tuple(cols),
        primary_key=pk,
        ra_column=ra if (ra and dec) else None,
        dec_column=dec if (ra and dec) else None,
        notes=tuple(notes),
    )
