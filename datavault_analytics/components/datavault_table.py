"""The `DataVaultTable` component: one `defs.yaml` per DataVault table gives it the whole pipeline.

Assets (PostgreSQL source, S3 stage, Snowflake table), the per-day checks, the daily job and schedule, and
the drift sensor, all named after the table (table_pipeline.py). Connections are not here: every table
shares the environment's resources (defs/resources.py). Building the definitions never connects anywhere;
a table or column that PostgreSQL lacks fails the first run, before anything is written.
"""

from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator

from datavault_analytics.assets import build_table_assets
from datavault_analytics.checks import build_table_checks
from datavault_analytics.jobs import build_table_job
from datavault_analytics.resources.table_spec import TableSpec
from datavault_analytics.schedules import build_table_schedule
from datavault_analytics.sensors import build_drift_scan_job, build_drift_sensor
from datavault_analytics.table_pipeline import DriftSettings, TablePipeline

DEFS_FOLDER = Path(__file__).parent.parent / "defs"


class ScheduleSettings(dg.Model, dg.Resolvable):
    cron: str = Field(default="15 0 * * *", description="When the daily run starts (UTC).")
    late_row_days: int = Field(
        default=2, description="Each daily run also reloads this many days before yesterday, for late rows."
    )

    @field_validator("late_row_days")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"late_row_days must be at least 0, not {value}")
        return value


class FreshnessSettings(dg.Model, dg.Resolvable):
    deadline_cron: str = Field(default="0 6 * * *", description="By when (UTC) yesterday must be loaded.")
    window_hours: float = Field(default=6, description="The freshness policy's lower bound, in hours.")


class DriftScanSettings(dg.Model, dg.Resolvable):
    scan_seconds: int = Field(
        default=DriftSettings.scan_seconds, description="Seconds between two drift scans of the table."
    )
    hash_days_per_scan: int = Field(
        default=DriftSettings.hash_days_per_scan,
        description="Days content-fingerprinted per scan, in a round over history.",
    )
    max_repairs: int = Field(default=3, description="Reloads in a row before a differing day is left alone.")
    runs_per_scan: int = Field(default=4, description="Repair runs one scan may launch.")
    merge_gap_days: int = Field(
        default=7, description="Differing days this close are repaired in one range run."
    )

    @field_validator("scan_seconds", "max_repairs", "runs_per_scan")
    @classmethod
    def _positive(cls, value: int, info) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be at least 1, not {value}")
        return value

    @field_validator("hash_days_per_scan", "merge_gap_days")
    @classmethod
    def _not_negative(cls, value: int, info) -> int:
        if value < 0:
            raise ValueError(f"{info.field_name} must be at least 0, not {value}")
        return value


class DataVaultTableScaffolder(dg.Scaffolder):
    """`dg scaffold defs datavault_analytics.components.DataVaultTable <name>`: a defs.yaml to fill in."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        name = Path(request.target_path).name
        dg.scaffold_component(
            request,
            {
                "table": f"public.{name}",
                "partition_column": "created_at",
                "primary_key": ["id"],
                "start_date": date.today().replace(day=1).isoformat(),
            },
        )


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
    start_date: str = Field(default="2024-01-01", description="The first day (YYYY-MM-DD) of the partitions.")
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    drift: DriftScanSettings = Field(default_factory=DriftScanSettings)
    description: str | None = Field(default=None, description="What the table holds, shown in the UI.")
    group: str = Field(default="datavault", description="The assets' group in the UI.")
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

    @field_validator("start_date")
    @classmethod
    def _a_day(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"start_date must be a day in YYYY-MM-DD form, not {value!r}") from None
        return value

    def spec(self) -> TableSpec:
        schema, name = self.table.split(".")
        return TableSpec(
            postgres_schema=schema,
            postgres_table=name,
            snowflake_table=self.snowflake_table or name.upper(),
            partition_column=self.partition_column,
            primary_key=list(self.primary_key),
            updated_at_column=self.updated_at_column,
        )

    def pipeline(self) -> TablePipeline:
        return TablePipeline(
            spec=self.spec(),
            start_date=self.start_date,
            schedule_cron=self.schedule.cron,
            late_row_days=self.schedule.late_row_days,
            freshness_deadline_cron=self.freshness.deadline_cron,
            freshness_window_hours=self.freshness.window_hours,
            drift=DriftSettings(**self.drift.model_dump()),
            description=self.description,
            group=self.group,
            owners=tuple(self.owners),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_table_definitions(self.pipeline())


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


def configured_table(name: str, defs_folder: Path = DEFS_FOLDER) -> TablePipeline:
    """The pipeline of the table configured in `<defs_folder>/<name>/defs.yaml` (for the CLI and tests)."""
    import yaml

    path = defs_folder / name / "defs.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in defs_folder.glob("*/defs.yaml"))
        raise ValueError(
            f"No table {name!r} is configured: no {path}. Configured tables: {', '.join(known)}."
        )
    document = yaml.safe_load(path.read_text())
    return DataVaultTable.resolve_from_dict(document.get("attributes") or {}).pipeline()


def configured_tables(defs_folder: Path = DEFS_FOLDER) -> list[str]:
    return sorted(p.parent.name for p in defs_folder.glob("*/defs.yaml"))
