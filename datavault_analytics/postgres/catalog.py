"""The source table's columns, from PostgreSQL's catalog, and how each travels (type_mapping.py)."""

import re
from dataclasses import dataclass

import pyarrow as pa

from datavault_analytics.errors import SourceSchemaError
from datavault_analytics.identifiers import quote_postgres
from datavault_analytics.type_mapping import TypeMapping, mapping_for

# A column name must read the same unquoted in PostgreSQL (lower case) and be a plain identifier.
_SOURCE_COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class SourceColumn:
    name: str
    postgres_type: str
    nullable: bool
    mapping: TypeMapping

    @property
    def select_sql(self) -> str:
        return (
            self.mapping.select_template.format(column=quote_postgres(self.name))
            + " AS "
            + quote_postgres(self.name)
        )


class SourceCatalog:
    """PostgresResource's reads of the catalog (a mixin: `self` is the resource)."""

    def source_columns(self) -> list[SourceColumn]:
        """The table's columns and types from PostgreSQL's catalog, so new columns flow through on their own."""
        _ = self.table  # bound to a table, or UnboundTableError before connecting
        with self.connect() as conn:
            rows = conn.execute(
                """
                SELECT a.attname, pg_catalog.format_type(a.atttypid, NULL), NOT a.attnotnull
                FROM pg_catalog.pg_attribute a
                JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum
                """,
                (self.table.postgres_schema.lower(), self.table.postgres_table.lower()),
            ).fetchall()
        if not rows:
            raise SourceSchemaError(
                f"Source table {self.table.source_name} does not exist or has no columns visible to this "
                f"role (PostgreSQL at {self.location}). Check the table's `table` "
                "in its defs.yaml and the role's GRANTs."
            )
        for name, _, _ in rows:
            if not _SOURCE_COLUMN.fullmatch(name):
                raise SourceSchemaError(
                    f"Column {name!r} of {self.table.source_name} is not a plain lower-case identifier, so "
                    "it cannot be carried safely. Rename it, or point the pipeline at a view that renames "
                    "it."
                )
        columns = [
            SourceColumn(name, pg_type, nullable, mapping_for(name, pg_type))
            for name, pg_type, nullable in rows
        ]
        names = {c.name for c in columns}
        for setting, column in self.table.required_columns():
            if column.lower() not in names:
                raise SourceSchemaError(
                    f"{setting}={column!r} is not a column of {self.table.source_name} (PostgreSQL at "
                    f"{self.location}); its columns are {', '.join(sorted(names))}. Fix the table's defs.yaml."
                )
        partition = next(c for c in columns if c.name == self.table.partition_column.lower())
        if partition.postgres_type not in ("timestamp with time zone", "timestamp without time zone"):
            raise SourceSchemaError(
                f"partition_column={self.table.partition_column!r} of {self.table.source_name} is "
                f"{partition.postgres_type}; it must be a timestamptz or timestamp column (its UTC day is the "
                "partition). Fix the table's defs.yaml."
            )
        return columns

    def arrow_schema(self, columns: list[SourceColumn]) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.mapping.arrow_type, nullable=c.nullable) for c in columns])
