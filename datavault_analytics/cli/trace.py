"""Where one record is present right now: PostgreSQL, the staged Parquet files, the Snowflake table.

`datavault-analytics trace RECORD_ID` prints it, so an operator can prove an erasure (docs/erasure.md, "Where an
erased record still lives"). The days whose staged files are scanned come from PostgreSQL and Snowflake,
from --day, or, when neither knows the record, from every day the stage still holds.
"""

import uuid
from dataclasses import dataclass, field

import polars as pl

from datavault_analytics.errors import StageUnavailableError
from datavault_analytics.identifiers import quote_postgres, quote_snowflake
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.manifest import MANIFEST_NAME, day_directory
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.stage.retention import staged_days
from datavault_analytics.table.day_window import DayWindow


class InvalidRecordIdError(ValueError):
    """The record id is not a UUID."""


@dataclass
class Trace:
    record_id: str
    postgres_day: str | None = None
    snowflake_days: dict[str, int] = field(default_factory=dict)  # day -> rows with the id
    scanned_days: list[str] = field(default_factory=list)
    staged_files: list[str] = field(default_factory=list)  # URIs of staged files holding the id
    time_travel_days: int | None = None
    transient: bool | None = None

    @property
    def places(self) -> int:
        return bool(self.postgres_day) + len(self.snowflake_days) + len(self.staged_files)

    def lines(self, table: str) -> list[str]:
        out = [f"record {self.record_id}"]
        out.append(
            f"  PostgreSQL   present, day {self.postgres_day}"
            if self.postgres_day
            else "  PostgreSQL   absent"
        )
        scanned = ", ".join(self.scanned_days) if self.scanned_days else "no staged day"
        if self.staged_files:
            out += [f"  S3 stage     present in {uri}" for uri in self.staged_files]
        else:
            out.append(f"  S3 stage     absent (scanned the staged files of {scanned})")
        if self.snowflake_days:
            out += [
                f"  Snowflake    present in {table}, day {day}" + (f" ({n} rows)" if n > 1 else "")
                for day, n in sorted(self.snowflake_days.items())
            ]
        else:
            out.append(f"  Snowflake    absent from {table}")
        if self.time_travel_days is not None:
            failsafe = "no Fail-safe (a TRANSIENT table)" if self.transient else "then 7 days of Fail-safe"
            out.append(
                f"  Time Travel  {table} keeps a deleted row {self.time_travel_days} day(s) after the delete, "
                f"{failsafe}"
            )
        out.append(
            f"present in {self.places} place(s)"
            if self.places
            else "absent from PostgreSQL, the scanned staged files and Snowflake"
        )
        return out


def _record_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRecordIdError(f"{value!r} is not a record id (a UUID, e.g. 0b9e...-...).") from None


def trace_record(
    record_id: str,
    postgres: PostgresResource,
    snowflake_loader: SnowflakeLoader,
    stage: S3Stage,
    days: list[str] = (),
) -> Trace:
    trace = Trace(_record_id(record_id))
    table = postgres.table
    with postgres.connect("trace") as conn:
        row = conn.execute(
            f"SELECT to_char({quote_postgres(table.partition_column)} AT TIME ZONE 'UTC', 'YYYY-MM-DD') "  # noqa: S608
            f"FROM {postgres.qualified_table} WHERE {quote_postgres(_key_column(table))} = %s",
            (trace.record_id,),
        ).fetchone()
    trace.postgres_day = row[0] if row else None

    try:
        _snowflake_sightings(trace, snowflake_loader)
    except Exception as error:
        raise snowflake_loader._fail(f"Looking {trace.record_id} up in Snowflake failed", error) from None

    storage = stage.storage()
    with stage.s3_errors("listing the staged files"):
        known = {d for d in [trace.postgres_day, *trace.snowflake_days, *days] if d}
        if not known:
            known = set(staged_days(list(storage.sizes(f"{stage.table_folder}/")), stage.table_folder))
        trace.scanned_days = sorted(DayWindow.for_key(d).partition_key for d in known)
        for day in trace.scanned_days:
            names = storage.sizes(f"{day_directory(stage.table_folder, day)}/")
            for name in sorted(n for n in names if not n.endswith(MANIFEST_NAME)):
                uri = storage.location.uri_of(name)
                if _file_holds(stage, uri, _key_column(table), trace.record_id):
                    trace.staged_files.append(uri)
    return trace


def _key_column(table) -> str:
    """A record is found by its id: the table's one primary key column."""
    if len(table.primary_key) != 1:
        raise ValueError(
            f"trace finds a record by its id; {table.source_name} has a composite primary key "
            f"({', '.join(table.primary_key)})"
        )
    return table.primary_key[0]


def _snowflake_sightings(trace: Trace, snowflake_loader: SnowflakeLoader) -> None:
    table = snowflake_loader.table
    with snowflake_loader.connection("datavault-analytics trace") as conn:
        cursor = conn.cursor()
        if not snowflake_loader.table_columns(cursor):
            return
        column = quote_snowflake(table.partition_column)
        cursor.execute(
            f"SELECT TO_VARCHAR(TO_DATE({column}), 'YYYY-MM-DD'), COUNT(*) FROM "  # noqa: S608
            f"{quote_snowflake(snowflake_loader.table_name)} WHERE {quote_snowflake(_key_column(table))} = %s "
            "GROUP BY 1",
            (trace.record_id,),
        )
        trace.snowflake_days = {day: int(n) for day, n in cursor.fetchall()}
        cursor.execute(
            "SELECT is_transient, retention_time FROM information_schema.tables WHERE table_schema = "
            "CURRENT_SCHEMA() AND table_name = %s",
            (snowflake_loader.table_name.upper(),),
        )
        if info := cursor.fetchone():
            trace.transient, trace.time_travel_days = str(info[0]).upper() == "YES", int(info[1])


def _file_holds(stage: S3Stage, uri: str, column: str, record_id: str) -> bool:
    """Reads only the id column, filtered where it lies (Parquet statistics skip most row groups)."""
    if uri.startswith("file://"):
        scan = pl.scan_parquet(uri.removeprefix("file://"))
    else:
        scan = pl.scan_parquet(uri, storage_options=stage.polars_storage_options())
    try:
        return scan.filter(pl.col(column).cast(pl.String) == record_id).select(pl.len()).collect().item() > 0
    except (OSError, pl.exceptions.PolarsError) as error:
        raise StageUnavailableError(f"Reading the staged file {uri} failed: {error}") from None
