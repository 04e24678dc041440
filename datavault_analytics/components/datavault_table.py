"""The `DataVaultTable` component: one `defs.yaml` per DataVault table gives it the whole pipeline.

Assets (PostgreSQL source, S3 stage, Snowflake table), the per-day checks, the daily job and schedule, and
the drift sensor, all named after the table (names.py). Connections are not here: every table shares the
environment's resources (defs/resources.py). Building the definitions reads the shared settings and never
connects anywhere; a table or column that PostgreSQL lacks fails the first run, before anything is written.
"""

import functools
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator, model_validator

from datavault_analytics.components.scaffolder import DataVaultTableScaffolder
from datavault_analytics.drift.scan import build_drift_scan_job
from datavault_analytics.drift.sensor import build_drift_sensor
from datavault_analytics.errors import ConfigurationError
from datavault_analytics.identifiers import validate_identifier
from datavault_analytics.names import DOMAIN
from datavault_analytics.pipeline.assets import build_table_assets
from datavault_analytics.pipeline.checks import build_table_checks
from datavault_analytics.pipeline.job import build_table_job
from datavault_analytics.pipeline.schedule import build_table_schedule
from datavault_analytics.settings import Settings
from datavault_analytics.table.config import DriftConfig, FreshnessConfig, ScheduleConfig, first_day
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.table.spec import TableSpec
from datavault_analytics.type_mapping import check_override

DEFS_FOLDER = Path(__file__).parent.parent / "defs"


@dg.scaffold_with(DataVaultTableScaffolder)
class DataVaultTable(dg.Component, dg.Model, dg.Resolvable):
    """One DataVault table, extracted daily from PostgreSQL, staged as Parquet in S3 and loaded into Snowflake."""

    table: str = Field(description="Schema-qualified source table in PostgreSQL, e.g. public.records.")
    partition_column: str = Field(
        description="timestamptz or timestamp column whose UTC day is the partition."
    )
    primary_key: list[str] = Field(description="The primary key's columns, one or more.")
    updated_at_column: str | None = Field(
        default=None,
        description="Column bumped when a row changes; the drift scan's cheap tier compares its latest value.",
    )
    snowflake_table: str | None = Field(
        default=None, description="Target table in Snowflake; default: the source table's name, upper case."
    )
    asset_name: str | None = Field(
        default=None,
        description="The last part of the table's asset keys, job and stage folder; default: the source "
        "table's name. Give one when two schemas hold tables of the same name.",
    )
    exclude_columns: list[str] = Field(
        default_factory=list, description="Columns left in PostgreSQL (e.g. PII): never read or loaded."
    )
    column_types: dict[str, str] = Field(
        default_factory=dict,
        description="A column's Snowflake type instead of its mapped one: NUMBER(p,s) for a numeric (e.g. an "
        "unconstrained one), or VARCHAR (its text) for any column. docs/data-path.md has the mapping.",
    )
    dropped_columns: Literal["keep", "drop"] = Field(
        default="keep",
        description="A column dropped in PostgreSQL: `keep` it in Snowflake (NULL in rows loaded from then "
        "on; old days keep their values), or `drop` it there too.",
    )
    start_date: str = Field(default="2024-01-01", description="The first day (YYYY-MM-DD) of the partitions.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    freshness: FreshnessConfig = Field(default_factory=FreshnessConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    description: str | None = Field(default=None, description="What the table holds, shown in the UI.")
    group: str = Field(default=DOMAIN, description="The assets' group in the UI.")
    owners: list[str] = Field(default_factory=lambda: ["team:data-platform"])

    @field_validator("table")
    @classmethod
    def _schema_qualified(cls, value: str) -> str:
        if value.count(".") != 1:
            raise ValueError(f"table must be schema-qualified, e.g. public.records, not {value!r}")
        return value

    @field_validator("primary_key")
    @classmethod
    def _key_columns(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"primary_key must name one or more distinct columns, not {value!r}")
        return value

    @field_validator("exclude_columns")
    @classmethod
    def _excluded(cls, value: list[str]) -> list[str]:
        return [validate_identifier(c, "exclude_columns") for c in value]

    @field_validator("column_types")
    @classmethod
    def _column_types(cls, value: dict[str, str]) -> dict[str, str]:
        return {validate_identifier(c, "column_types"): check_override(c, t) for c, t in value.items()}

    @field_validator("asset_name")
    @classmethod
    def _asset_name(cls, value: str | None) -> str | None:
        return None if value is None else validate_identifier(value, "asset_name").lower()

    @model_validator(mode="after")
    def _relied_on_columns_kept(self) -> "DataVaultTable":
        excluded = {c.lower() for c in self.exclude_columns}
        for setting, column in (
            ("partition_column", self.partition_column),
            *(("primary_key", c) for c in self.primary_key),
            ("updated_at_column", self.updated_at_column),
        ):
            if column and column.lower() in excluded:
                raise ValueError(f"{setting} {column!r} is in exclude_columns, but the pipeline reads it")
        return self

    @field_validator("start_date", mode="before")
    @classmethod
    def _a_day(cls, value):
        return cls.model_fields["start_date"].default if value is None else first_day(value)

    def spec(self) -> TableSpec:
        schema, name = self.table.split(".")
        return TableSpec(
            postgres_schema=schema,
            postgres_table=name,
            snowflake_table=self.snowflake_table or name.upper(),
            partition_column=self.partition_column,
            primary_key=list(self.primary_key),
            updated_at_column=self.updated_at_column,
            exclude_columns=list(self.exclude_columns),
            column_types=dict(self.column_types),
            asset_name=self.asset_name,
            dropped_columns=self.dropped_columns,
        )

    def pipeline(self, settings: Settings) -> TablePipeline:
        return TablePipeline(
            spec=self.spec(),
            start_date=self.start_date,
            schedule=self.schedule,
            freshness=self.freshness,
            drift=self.drift,
            description=self.description,
            group=self.group,
            owners=tuple(self.owners),
            settings=settings,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        refuse_shared_targets(self, context.path / "defs.yaml")
        return build_table_definitions(self.pipeline(Settings.from_environment()))


def build_table_definitions(pipeline: TablePipeline) -> dg.Definitions:
    """Everything one table gets."""
    job, scan_job = build_table_job(pipeline), build_drift_scan_job(pipeline)
    return dg.Definitions(
        assets=build_table_assets(pipeline),
        asset_checks=[build_table_checks(pipeline)],
        jobs=[job, scan_job],
        schedules=[build_table_schedule(pipeline, job)],
        sensors=[build_drift_sensor(pipeline, job, scan_job)],
    )


def refuse_shared_targets(table: DataVaultTable, path: Path) -> None:
    """Refuse, naming both files, a table whose Snowflake target or asset name another defs.yaml beside it
    also has: each table's loads would delete the other's rows, or the code location would not load at all."""
    mine = table.spec()
    for other_path in sorted(path.parent.parent.glob("*/defs.yaml")):
        if other_path.resolve() == path.resolve():
            continue
        theirs = _spec_in(other_path.resolve(), other_path.stat().st_mtime_ns)
        if theirs is None:
            continue
        if theirs.snowflake_table.upper() == mine.snowflake_table.upper():
            raise ConfigurationError(
                f"{path} and {other_path} both load Snowflake table {mine.snowflake_table.upper()}: each "
                "table's loads would delete the other's rows. Give one of them another `snowflake_table`."
            )
        if theirs.name == mine.name:
            raise ConfigurationError(
                f"{path} ({mine.source_name}) and {other_path} ({theirs.source_name}) would both be named "
                f"{mine.name!r} (asset keys, job, stage folder). Give one of them an `asset_name`."
            )


@functools.lru_cache(maxsize=4096)
def _spec_in(path: Path, mtime_ns: int) -> TableSpec | None:
    """The spec of the DataVaultTable a defs.yaml configures, or None if it is another component or does not
    resolve (its own load reports that). Read once per file version: each table compares itself with every
    other, and resolving them all again for each took 50 tables' build from 0.7 s (10 tables) to 14 s."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text()) or {}
        if not str(document.get("type", "")).endswith("DataVaultTable"):
            return None
        return DataVaultTable.resolve_from_dict(document.get("attributes") or {}).spec()
    except Exception:  # noqa: BLE001 - its own component's load names the problem
        return None


def configured_table(
    name: str, settings: Settings | None = None, defs_folder: Path = DEFS_FOLDER
) -> TablePipeline:
    """The pipeline of the table configured in `<defs_folder>/<name>/defs.yaml` (for the CLI and tests), with
    `settings` (default: the environment's)."""
    import yaml

    path = defs_folder / name / "defs.yaml"
    if not path.exists():
        known = configured_tables(defs_folder)
        raise ValueError(
            f"No table {name!r} is configured: no {path}. Configured tables: {', '.join(known)}."
        )
    document = yaml.safe_load(path.read_text())
    table = DataVaultTable.resolve_from_dict(document.get("attributes") or {})
    return table.pipeline(settings or Settings.from_environment())


def configured_tables(defs_folder: Path = DEFS_FOLDER) -> list[str]:
    return sorted(p.parent.name for p in defs_folder.glob("*/defs.yaml"))
