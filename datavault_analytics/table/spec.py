"""A table's shape, declared once and shared by both sides: PostgreSQL's source and Snowflake's copy.

Each table's `defs.yaml` (components/datavault_table.py) makes one, and nothing else: it has no defaults. The
shared resources are bound to it with their `for_table`; unbound (`BoundToTable`), they refuse to touch any.
"""

from collections.abc import Mapping

import dagster as dg
from pydantic import Field, field_validator, model_validator

from datavault_analytics.errors import UnboundTableError
from datavault_analytics.identifiers import quote_postgres, validate_identifier
from datavault_analytics.names import TABLE_METADATA_KEY
from datavault_analytics.type_mapping import TypeMapping, check_override, mapping_for

DROPPED_COLUMN_POLICIES = ("keep", "drop")


class TableSpec(dg.Config):
    """Where a table is on each side, and which of its columns the pipeline relies on."""

    postgres_schema: str = Field(description="Schema of the source table in PostgreSQL.")
    postgres_table: str = Field(description="Source table in PostgreSQL.")
    snowflake_table: str = Field(description="Target table, in the Snowflake connection's schema.")
    partition_column: str = Field(
        description="timestamptz or timestamp column whose UTC day is the partition."
    )
    primary_key: list[str] = Field(
        min_length=1,
        description="The primary key's columns: no two rows of a day share them.",
    )
    updated_at_column: str | None = Field(
        default=None,
        description="Column bumped when a row changes; the drift scan's cheap tier compares its latest "
        "value per day. None: the cheap tier compares row counts only.",
    )

    exclude_columns: list[str] = Field(
        default_factory=list,
        description="Columns left in PostgreSQL (e.g. PII): never read, staged or loaded.",
    )
    column_types: dict[str, str] = Field(
        default_factory=dict,
        description="Snowflake types that replace a column's mapped one (type_mapping.py): NUMBER(p,s) for a "
        "numeric, or VARCHAR (its text) for any column.",
    )
    dropped_columns: str = Field(
        default="keep",
        description="A column dropped in PostgreSQL: `keep` it in Snowflake (NULL in rows loaded from then on), "
        "or `drop` it there too.",
    )
    asset_name: str | None = Field(
        default=None,
        description="The last part of the table's asset keys and its stage folder; None: the source table's "
        "name. Needed when two schemas hold tables of the same name.",
    )

    @field_validator("dropped_columns")
    @classmethod
    def _dropped_policy(cls, value: str) -> str:
        if value not in DROPPED_COLUMN_POLICIES:
            raise ValueError(f"dropped_columns={value!r} is not one of {', '.join(DROPPED_COLUMN_POLICIES)}")
        return value

    @field_validator("exclude_columns", mode="before")
    @classmethod
    def _excluded(cls, value) -> list[str]:
        columns = [value] if isinstance(value, str) else list(value or [])
        return [validate_identifier(c, "exclude_columns") for c in columns]

    @field_validator("column_types", mode="before")
    @classmethod
    def _overrides(cls, value) -> dict[str, str]:
        if not isinstance(value, dict | None):
            raise ValueError(f"column_types={value!r} is not a mapping of column names to Snowflake types")
        return {
            validate_identifier(c, "column_types"): check_override(c, t) for c, t in (value or {}).items()
        }

    @model_validator(mode="after")
    def _required_kept(self) -> "TableSpec":
        excluded = {c.lower() for c in self.exclude_columns}
        for setting, column in self.required_columns():
            if column.lower() in excluded:
                raise ValueError(
                    f"{setting}={column!r} cannot be in exclude_columns: the pipeline relies on it"
                )
        return self

    @field_validator(
        "asset_name",
        "postgres_schema",
        "postgres_table",
        "snowflake_table",
        "partition_column",
        "updated_at_column",
    )
    @classmethod
    def _plain_identifier(cls, name: str | None, info) -> str | None:
        return None if name is None else validate_identifier(name, info.field_name)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _key_columns(cls, value) -> list[str]:
        columns = [value] if isinstance(value, str) else list(value)
        return [validate_identifier(c, "primary_key") for c in columns]

    @property
    def name(self) -> str:
        """The source table's name: the last part of its asset keys, and its folder in the stage."""
        return (self.asset_name or self.postgres_table).lower()

    @property
    def source_name(self) -> str:
        """schema.table, for messages and the lock scope."""
        return f"{self.postgres_schema}.{self.postgres_table}"

    @property
    def qualified_postgres(self) -> str:
        return f"{quote_postgres(self.postgres_schema)}.{quote_postgres(self.postgres_table)}"

    def mapping_of(self, column: str, postgres_type: str) -> TypeMapping:
        """How `column` travels: its type's mapping, or its `column_types` override."""
        overrides = {c.lower(): t for c, t in self.column_types.items()}
        return mapping_for(column, postgres_type, overrides.get(column.lower()))

    def required_columns(self) -> list[tuple[str, str]]:
        """(setting, column) for every column this spec names."""
        named = [
            ("partition_column", self.partition_column),
            *(("primary_key", column) for column in self.primary_key),
            ("updated_at_column", self.updated_at_column),
        ]
        return [(setting, column) for setting, column in named if column is not None]


class BoundToTable:
    """A shared resource's binding to one table (its `table_spec` field, set by `for_table`). Unbound, it
    refuses to read or write any table, instead of guessing one.

    Bind a resource once Dagster has resolved it (inside an asset, or on what `dg.build_resources` yields):
    resolving rebuilds a resource from the config it was constructed with, so a binding made before comes
    out unbound, and is refused."""

    @property
    def table(self) -> TableSpec:
        spec = self.table_spec
        if spec is None:
            raise UnboundTableError(
                f"{type(self).__name__} is shared by every table and was not bound to one: call "
                "`.for_table(pipeline.spec)` before it reads or writes a table."
            )
        return spec


# Each asset carries its table in its definition metadata, so the shared IO managers know which table an
# input or output is without a registry of tables.


def table_metadata(table: TableSpec) -> dict:
    return {TABLE_METADATA_KEY: dg.MetadataValue.json(table.model_dump())}


def table_of(metadata: Mapping, asset_key: dg.AssetKey | None = None) -> TableSpec:
    """The table recorded in an asset's definition metadata."""
    entry = metadata.get(TABLE_METADATA_KEY)
    if entry is None:
        raise ValueError(
            f"Asset {asset_key.to_user_string() if asset_key else '?'} has no {TABLE_METADATA_KEY!r} metadata: "
            "only a DataVaultTable component's assets can use DataVault's IO managers."
        )
    return TableSpec(**(entry.value if isinstance(entry, dg.JsonMetadataValue) else entry))
