"""The target table and the stage object in Snowflake: created when missing, compared with the staged
columns before every load."""

import re
from dataclasses import dataclass, field

from datavault_analytics.errors import SchemaDriftError, SnowflakeConfigError
from datavault_analytics.identifiers import quote_snowflake
from datavault_analytics.snowflake.session import _sql_string
from datavault_analytics.stage.manifest import StagedColumn
from datavault_analytics.type_mapping import snowflake_type_signature

_S3_STAGE_URL = re.compile(r"s3://[a-z0-9][a-z0-9.\-]{1,62}(/[A-Za-z0-9._\-/=]*)?")


def _same_type(existing: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """Whether a column's type as read back equals the wanted one. A TEXT length that reads back as None
    is unknown, not different: fakesnow forgets VARCHAR lengths when it restarts (Snowflake never does)."""
    if existing[:1] == ("TEXT",) and existing[1:] == ("None",):
        return wanted[:1] == ("TEXT",)
    return existing == wanted


def _info_schema_signature(data_type: str, char_length, precision, scale) -> tuple[str, ...]:
    if data_type == "TEXT":
        return (data_type, str(char_length))
    if data_type == "NUMBER":
        return (data_type, str(precision), str(scale))
    return (data_type,)


@dataclass
class SchemaChanges:
    """How the staged columns differ from the Snowflake table's, and what is done about each."""

    added: list[StagedColumn] = field(default_factory=list)
    widened: list[tuple[str, str, str]] = field(default_factory=list)  # (column, from, to)
    dropped: list[str] = field(default_factory=list)  # in Snowflake, no longer in PostgreSQL
    refused: list[str] = field(default_factory=list)  # "NAME (was in Snowflake, now from PostgreSQL)"

    def described(self, dropped_columns: str) -> list[str]:
        lines = [f"added column {c.name.upper()} {c.snowflake_type}" for c in self.added]
        lines += [f"widened column {name} from {old} to {new}" for name, old, new in self.widened]
        kept = (
            "dropped it in Snowflake"
            if dropped_columns == "drop"
            else "kept it in Snowflake, NULL in rows loaded from now on"
        )
        lines += [f"column {name} is no longer in PostgreSQL: {kept}" for name in self.dropped]
        if len(self.dropped) == 1 and len(self.added) == 1:
            lines.append(
                f"(if {self.added[0].name.upper()} is {self.dropped[0]} renamed, the rename is this drop and add: "
                f"copy {self.dropped[0]} into {self.added[0].name.upper()} in Snowflake to keep old days' values)"
            )
        return lines


def _signature_text(signature: tuple[str, ...]) -> str:
    return signature[0] + (f"({','.join(signature[1:])})" if len(signature) > 1 else "")


def plan_changes(
    existing: dict[str, tuple[str, ...]], columns: list[StagedColumn], staged_may_be_narrower: bool
) -> SchemaChanges:
    """Compare the table (name -> INFORMATION_SCHEMA signature) with the staged columns. Snowflake changes a
    column in place only to a NUMBER of more precision and the same scale, or a longer VARCHAR
    (https://docs.snowflake.com/en/sql-reference/sql/alter-table-column): those are widenings; any other
    difference is refused. A staged column narrower than the table is refused from the source (a narrowing),
    but fits a load of a manifest staged before a widening (`staged_may_be_narrower`)."""
    changes = SchemaChanges()
    staged = {c.name.upper(): c for c in columns}
    changes.dropped = [name for name in existing if name not in staged]
    for name, column in staged.items():
        if name not in existing:
            changes.added.append(column)
            continue
        have, want = existing[name], snowflake_type_signature(column.snowflake_type)
        if _same_type(have, want):
            continue
        growable = have[0] == want[0] and (
            (have[0] == "NUMBER" and have[2:] == want[2:]) or (have[0] == "TEXT" and have[1] != "None")
        )
        if growable and int(want[1]) > int(have[1]):
            changes.widened.append((name, _signature_text(have), column.snowflake_type))
        elif growable and staged_may_be_narrower:
            continue
        else:
            changes.refused.append(
                f"{name} ({'/'.join(have)} in Snowflake, {column.snowflake_type} from PostgreSQL type "
                f"{column.postgres_type})"
            )
    return changes


class TargetTable:
    """SnowflakeLoader's DDL and schema checks (a mixin: `self` is the loader)."""

    def ensure_stage(self, cursor) -> bool:
        """Check the stage object points at the stage URI, or create it; True if it was created."""
        url = self.stage.stage_uri.rstrip("/") + "/"
        if not _S3_STAGE_URL.fullmatch(url):
            raise SnowflakeConfigError(
                f"Snowflake can only load from an s3:// stage, not {self.stage.stage_uri!r}. Set "
                "DATAVAULT_STAGE_URI to s3://bucket/prefix."
            )
        cursor.execute(f"SHOW STAGES LIKE {_sql_string(self.stage_name.upper())}")
        columns = [d[0].lower() for d in cursor.description]
        existing = [dict(zip(columns, row, strict=False)) for row in cursor.fetchall()]
        if existing:
            if existing[0].get("url", url).rstrip("/") != url.rstrip("/"):
                raise SnowflakeConfigError(
                    f"Snowflake stage {self.stage_name} points at {existing[0].get('url')}, not at {url}. "
                    "Point DATAVAULT_STAGE_URI at the same place, or set a different stage name."
                )
            return False
        integration = (
            f" STORAGE_INTEGRATION = {quote_snowflake(self.storage_integration)}"
            if self.storage_integration
            else ""
        )
        cursor.execute(
            f"CREATE STAGE IF NOT EXISTS {quote_snowflake(self.stage_name)} "
            f"URL={_sql_string(url)}{integration}"
        )
        return True

    def table_columns(self, cursor) -> dict[str, tuple[str, ...]]:
        """The target table's columns (upper-case name -> type signature); empty if it does not exist."""
        cursor.execute(
            "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale FROM "
            "information_schema.columns WHERE table_schema = CURRENT_SCHEMA() AND table_name = %s "
            "ORDER BY ordinal_position",
            (self.table_name.upper(),),
        )
        return {name.upper(): _info_schema_signature(*rest) for name, *rest in cursor.fetchall()}

    def check_compatible(self, columns: list[StagedColumn]) -> None:
        """Before staging: raise SchemaDriftError if the table exists and cannot take these columns.

        Read-only (one INFORMATION_SCHEMA query); raises SnowflakeLoadError if Snowflake is unreachable.
        """
        try:
            with self.connection() as conn:
                existing = self.table_columns(conn.cursor())
        except ValueError as error:
            raise self._settings_error(error) from None
        except Exception as error:
            raise self._fail(
                f"Cannot read the columns of Snowflake table {self.table_name} ({self.where})", error
            ) from None
        if existing:
            self._raise_on_drift(existing, columns)

    def _raise_on_drift(self, existing: dict[str, tuple[str, ...]], columns: list[StagedColumn]) -> None:
        """Before staging, with the source's current columns: refuse what Snowflake cannot do in place."""
        changes = plan_changes(existing, columns, staged_may_be_narrower=False)
        if changes.refused:
            raise SchemaDriftError(
                f"Column type(s) changed for {'; '.join(changes.refused)}. Snowflake cannot change a column "
                "this way in place (only a NUMBER's precision at the same scale and a VARCHAR's length can "
                "grow: https://docs.snowflake.com/en/sql-reference/sql/alter-table-column). Nothing was loaded. "
                f"Either add a new column in PostgreSQL and backfill it, or migrate {self.table_name}'s column "
                "in Snowflake by hand (a new column, UPDATE, swap), then re-run the partition."
            )

    def sync_table(self, cursor, columns: list[StagedColumn]) -> list[str]:
        """Create the table, or apply the schema changes the table's policy allows (plan_changes); returns
        each applied change, described. A change Snowflake cannot make stops the load before any row moves."""
        existing = self.table_columns(cursor)
        table = quote_snowflake(self.table_name)
        if not existing:
            definition = ", ".join(f"{quote_snowflake(c.name)} {c.snowflake_type}" for c in columns)
            kind = "TRANSIENT TABLE" if self.transient_table else "TABLE"
            cursor.execute(
                f"CREATE {kind} IF NOT EXISTS {table} ({definition}) "
                f"DATA_RETENTION_TIME_IN_DAYS = {int(self.time_travel_days)}"
            )
            self.sync_view(cursor, columns)
            return []
        # A manifest staged before a widening (a backfill's earlier day) is narrower than the table: it fits.
        changes = plan_changes(existing, columns, staged_may_be_narrower=True)
        if changes.refused:
            self._raise_on_drift(existing, columns)
        for column in changes.added:
            cursor.execute(
                f"ALTER TABLE {table} ADD COLUMN {quote_snowflake(column.name)} {column.snowflake_type}"
            )
        for name, _, wider in changes.widened:
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN {quote_snowflake(name)} SET DATA TYPE {wider}")
        if self.table.dropped_columns == "drop":
            for name in changes.dropped:
                cursor.execute(f"ALTER TABLE {table} DROP COLUMN {quote_snowflake(name)}")
        if changes.added or changes.dropped:
            self.sync_view(cursor, columns)
        return changes.described(self.table.dropped_columns)

    @property
    def view_name(self) -> str:
        """The view beside the table where JSON is a VARIANT and an array an ARRAY (type_mapping.py)."""
        return f"{self.table_name.upper()}_TYPED"

    def sync_view(self, cursor, columns: list[StagedColumn]) -> None:
        """(Re)create the typed view when a column is read through one: the table keeps PostgreSQL's exact
        text, which the fingerprints compare; the view parses it once per query, no load step added."""
        mappings = [(c, self.table.mapping_of(c.name, c.postgres_type)) for c in columns]
        if all(m.view_template == "{column}" for _, m in mappings):
            return
        select = ", ".join(
            f"{m.view_template.format(column=quote_snowflake(c.name))} AS {quote_snowflake(c.name)}"
            for c, m in mappings
        )
        cursor.execute(
            f"CREATE OR REPLACE VIEW {quote_snowflake(self.view_name)} AS SELECT {select} "  # noqa: S608
            f"FROM {quote_snowflake(self.table_name)}"
        )
