"""The table's shape, declared once and shared by both sides: PostgreSQL's source and Snowflake's copy."""

import dagster as dg
from pydantic import Field, field_validator

from datavault_analytics.identifiers import quote_postgres, validate_identifier


class RecordsTable(dg.Config):
    """DataVault's records table: where it is on each side, and which columns the pipeline relies on."""

    postgres_schema: str = Field(default="public", description="Schema of the source table in PostgreSQL.")
    postgres_table: str = Field(default="records", description="Source table in PostgreSQL.")
    snowflake_table: str = Field(
        default="RECORDS", description="Target table, in the Snowflake connection's schema."
    )
    partition_column: str = Field(
        default="created_at", description="timestamptz column whose UTC day is the partition."
    )
    primary_key: str = Field(default="id", description="Primary key column, used for reconciliation.")
    payload_column: str = Field(default="ciphertext", description="Encrypted payload column (must exist).")

    @field_validator(
        "postgres_schema",
        "postgres_table",
        "snowflake_table",
        "partition_column",
        "primary_key",
        "payload_column",
    )
    @classmethod
    def _plain_identifier(cls, name: str, info) -> str:
        return validate_identifier(name, f"records_table.{info.field_name}")

    @property
    def source_name(self) -> str:
        """schema.table, for messages and the lock scope."""
        return f"{self.postgres_schema}.{self.postgres_table}"

    @property
    def qualified_postgres(self) -> str:
        return f"{quote_postgres(self.postgres_schema)}.{quote_postgres(self.postgres_table)}"
