"""One table's pipeline, as its component resolved it: names, keys, partitions and per-table settings.

Every factory (assets, checks, job, schedule, drift sensor) takes a `TablePipeline`, so two tables never
share a name, and `records` keeps the names an existing deployment has.
"""

from dataclasses import dataclass, field
from functools import cached_property

import dagster as dg

from datavault_analytics.partitions import daily_partitions
from datavault_analytics.resources.table_spec import TableSpec

DOMAIN = "datavault"


@dataclass(frozen=True)
class DriftSettings:
    """The drift sensor's cadence and bounds (docs/drift.md)."""

    # The promise these defaults keep (README, "What analytics costs DataVault's database"): an erasure reaches
    # Snowflake within 7 hours, and a year of history is content-verified every 7 days, for about 5 CPU
    # minutes a day on the database at 1 year x 1M rows a day.
    scan_seconds: int = 6 * 3600
    hash_days_per_scan: int = 14
    max_repairs: int = 3
    runs_per_scan: int = 4
    merge_gap_days: int = 7


@dataclass(frozen=True)
class TablePipeline:
    spec: TableSpec
    start_date: str = "2024-01-01"
    schedule_cron: str = "15 0 * * *"
    late_row_days: int = 2
    freshness_deadline_cron: str = "0 6 * * *"
    freshness_window_hours: float = 6
    drift: DriftSettings = field(default_factory=DriftSettings)
    description: str | None = None
    group: str = DOMAIN
    owners: tuple[str, ...] = ("team:data-platform",)

    @property
    def name(self) -> str:
        return self.spec.name

    def asset_key(self, system: str) -> dg.AssetKey:
        """["postgres" | "s3" | "snowflake", "datavault", <source table name>]"""
        return dg.AssetKey([system, DOMAIN, self.name])

    @property
    def source_key(self) -> dg.AssetKey:
        return self.asset_key("postgres")

    @property
    def stage_key(self) -> dg.AssetKey:
        return self.asset_key("s3")

    @property
    def snowflake_key(self) -> dg.AssetKey:
        return self.asset_key("snowflake")

    @cached_property
    def partitions(self) -> dg.DailyPartitionsDefinition:
        return daily_partitions(self.start_date)

    @property
    def job_name(self) -> str:
        return f"datavault_{self.name}_daily"

    @property
    def schedule_name(self) -> str:
        return f"datavault_{self.name}_daily_schedule"

    @property
    def drift_sensor_name(self) -> str:
        return f"datavault_{self.name}_drift_sensor"

    @property
    def drift_scan_job_name(self) -> str:
        return f"datavault_{self.name}_drift_scan"

    @property
    def checks_name(self) -> str:
        return f"snowflake_{self.name}_checks"
