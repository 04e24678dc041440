"""The source table's columns, from PostgreSQL's catalog, and how each travels (type_mapping.py)."""

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import dagster as dg
import pyarrow as pa

from datavault_analytics.errors import SourceSchemaError, UnmappedTypeError
from datavault_analytics.identifiers import quote_postgres
from datavault_analytics.type_mapping import TypeMapping, base_name

if TYPE_CHECKING:
    from datavault_analytics.table.spec import TableSpec

# A column name must read the same unquoted in PostgreSQL (lower case) and be a plain identifier.
_SOURCE_COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class CatalogColumn(NamedTuple):
    name: str
    postgres_type: str
    nullable: bool
    # of a table, whose NOT NULL constraints the catalog knows; a view's columns all read as nullable
    in_table: bool
    comment: str | None = None  # COMMENT ON COLUMN: the column's description in the UI


@dataclass(frozen=True)
class SourceColumn:
    name: str
    postgres_type: str
    nullable: bool
    mapping: TypeMapping
    description: str | None = None

    @property
    def value_sql(self) -> str:
        """The SQL of the column's value as it is read: its type's cast (type_mapping.py), if any."""
        return self.mapping.select_template.format(column=quote_postgres(self.name))

    @property
    def select_sql(self) -> str:
        return f"{self.value_sql} AS {quote_postgres(self.name)}"


class SourceCatalog:
    """PostgresResource's reads of the catalog (a mixin: `self` is the resource)."""

    def source_columns(self) -> list[SourceColumn]:
        """The table's columns and types from PostgreSQL's catalog, so new columns flow through on their own."""
        rows = self.catalog_rows()
        if not rows:
            raise SourceSchemaError(
                f"Source table {self.table.source_name} does not exist or has no columns visible to this "
                f"role (PostgreSQL at {self.location}). Check the table's `table` "
                "in its defs.yaml and the role's GRANTs."
            )
        problems = source_problems(self.table, rows)
        if problems:
            raise SourceSchemaError(
                f"{self.table.source_name} (PostgreSQL at {self.location}) cannot be loaded as configured: "
                + " ".join(problems)
            )
        excluded = {c.lower() for c in self.table.exclude_columns}
        return [
            SourceColumn(
                c.name, c.postgres_type, c.nullable, self.table.mapping_of(c.name, c.postgres_type), c.comment
            )
            for c in rows
            if c.name not in excluded
        ]

    def column_schema(self) -> dg.TableSchema:
        """The columns as the catalog shows them, PostgreSQL's types and comments included."""
        excluded = {c.lower() for c in self.table.exclude_columns}
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    c.name,
                    c.postgres_type,
                    description=c.comment,
                    constraints=dg.TableColumnConstraints(nullable=c.nullable),
                )
                for c in self.catalog_rows()
                if c.name not in excluded
            ]
        )

    def catalog_rows(self) -> list[CatalogColumn]:
        """Each column, in order; empty if the table is not visible."""
        _ = self.table  # bound to a table, or UnboundTableError before connecting
        with self.connect() as conn:
            rows = conn.execute(
                """
                SELECT a.attname,
                    -- a domain is its base type, with the domain's own modifier; an enum says it is one
                    CASE WHEN b.typtype = 'e' THEN pg_catalog.format_type(b.oid, NULL) || ' (enum)'
                    ELSE pg_catalog.format_type(b.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod
                        ELSE a.atttypmod END) END,
                    NOT a.attnotnull AND NOT t.typnotnull,
                    c.relkind IN ('r', 'p'),
                    pg_catalog.col_description(a.attrelid, a.attnum)
                FROM pg_catalog.pg_attribute a
                JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum
                """,
                (self.table.postgres_schema.lower(), self.table.postgres_table.lower()),
            ).fetchall()
        return [CatalogColumn(*row) for row in rows]

    def has_unique_key(self) -> bool:
        """Whether a unique index (the primary key's included) covers exactly the configured key's columns."""
        with self.connect() as conn:
            row = conn.execute(
                """
                SELECT 1 FROM pg_catalog.pg_index x
                JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND x.indisunique AND x.indpred IS NULL
                AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum = ANY(x.indkey)) = %s::text[]
                """,
                (
                    self.table.postgres_schema.lower(),
                    self.table.postgres_table.lower(),
                    sorted(c.lower() for c in self.table.primary_key),
                ),
            ).fetchone()
        return row is not None

    def partition_index(self) -> str | None:
        """The name of an index whose first column is the partition column, or None: without one, each day's
        read scans the whole table."""
        with self.connect() as conn:
            row = conn.execute(
                """
                SELECT i.relname FROM pg_catalog.pg_index x
                JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
                JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
                WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND x.indisvalid
                ORDER BY i.relname LIMIT 1
                """,
                (
                    self.table.postgres_schema.lower(),
                    self.table.postgres_table.lower(),
                    self.table.partition_column.lower(),
                ),
            ).fetchone()
        return row[0] if row else None

    def arrow_schema(self, columns: list[SourceColumn]) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.mapping.arrow_type, nullable=c.nullable) for c in columns])


PARTITION_TYPES = ("timestamp with time zone", "timestamp without time zone")


def source_problems(table: "TableSpec", rows: list[CatalogColumn]) -> list[str]:
    """Everything wrong with the table's configuration against its catalog rows, each a sentence saying what
    to do: all at once, so that adding a table takes one try."""
    problems = []
    found = {c.name: (c.postgres_type, c.nullable and c.in_table) for c in rows}
    excluded = {c.lower() for c in table.exclude_columns}
    for name in found:
        if name not in excluded and not _SOURCE_COLUMN.fullmatch(name):
            problems.append(
                f"Column {name!r} of {table.source_name} is not a plain lower-case identifier, so it cannot "
                "be carried safely: rename it, or leave it out with `exclude_columns`."
            )
    for setting, column in table.required_columns():
        if column.lower() not in found:
            problems.append(
                f"{setting}={column!r} is not a column of {table.source_name}; its columns are "
                f"{', '.join(sorted(found))}. Fix the table's defs.yaml."
            )
    for column in [*table.exclude_columns, *table.column_types]:
        if column.lower() not in found:
            problems.append(
                f"{column!r} (in exclude_columns or column_types) is not a column of {table.source_name}."
            )
    partition = found.get(table.partition_column.lower())
    if partition and base_name(partition[0]) not in PARTITION_TYPES:
        problems.append(
            f"partition_column={table.partition_column!r} of {table.source_name} is {partition[0]}; it must be "
            "a timestamptz or timestamp column (its UTC day is the partition). Fix the table's defs.yaml."
        )
    if partition and partition[1]:
        problems.append(
            f"partition_column={table.partition_column!r} is nullable, and a row whose partition column is NULL "
            "is in no day, so it would never be loaded. Make the column NOT NULL in PostgreSQL (after giving "
            "such rows a time), or partition by a NOT NULL column."
        )
    for name, (pg_type, _) in found.items():
        if name in excluded:
            continue
        try:
            table.mapping_of(name, pg_type)
        except UnmappedTypeError as error:
            problems.append(str(error))
    return problems
