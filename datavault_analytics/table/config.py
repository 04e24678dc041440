"""A table's own settings, as its defs.yaml gives them: the one place their defaults are written.

A value left out, or templated from an environment variable that is unset (`{{ env.DATAVAULT_… }}`), takes
the default here.
"""

from datetime import date
from typing import ClassVar

import dagster as dg
from pydantic import Field, field_validator


class TableConfig(dg.Model, dg.Resolvable):
    # Lower bounds, checked once the YAML's templates are resolved (a pydantic `ge=` would be applied to the
    # template text itself).
    least: ClassVar[dict[str, float]] = {}

    @field_validator("*", mode="after")
    @classmethod
    def _within_bounds(cls, value, info):
        least = cls.least.get(info.field_name)
        if least is not None and value < least:
            raise ValueError(f"{info.field_name} must be at least {least:g}, not {value}")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _unset_is_default(cls, value, info):
        """`{{ env.X }}` of an unset variable resolves to None: that is the default, not a value."""
        if value is not None:
            return value
        field = cls.model_fields[info.field_name]
        return field.default_factory() if field.default_factory else field.default


class ScheduleConfig(TableConfig):
    least: ClassVar[dict[str, float]] = {"late_row_days": 0}
    cron: str = Field(default="15 0 * * *", description="When the daily run starts (UTC).")
    late_row_days: int = Field(
        default=2,
        description="Each daily run also reloads this many days before yesterday, for late rows.",
    )


class FreshnessConfig(TableConfig):
    least: ClassVar[dict[str, float]] = {"window_hours": 0}
    deadline_cron: str = Field(default="0 6 * * *", description="By when (UTC) yesterday must be loaded.")
    window_hours: float = Field(default=6, description="The freshness policy's lower bound, in hours.")


class DriftConfig(TableConfig):
    """The drift sensor's cadence and bounds (docs/drift.md). The promise these defaults keep (README, "What
    analytics costs DataVault's database"): an erasure reaches Snowflake within 7 hours, and a year of history
    is content-verified every 7 days, for about 5 CPU minutes a day on the database at 1 year x 1M rows a day."""

    least: ClassVar[dict[str, float]] = {
        "scan_seconds": 1,
        "hash_days_per_scan": 0,
        "max_repairs": 1,
        "runs_per_scan": 1,
        "merge_gap_days": 0,
        "max_emptied_days": 0,
    }

    scan_seconds: int = Field(default=6 * 3600, description="Seconds between two drift scans of the table.")
    hash_days_per_scan: int = Field(
        default=14, description="Days content-fingerprinted per scan, in a round over history."
    )
    max_repairs: int = Field(default=3, description="Reloads in a row before a differing day is left alone.")
    runs_per_scan: int = Field(default=4, description="Repair runs one scan may launch.")
    merge_gap_days: int = Field(
        default=7, description="Differing days this close are repaired in one range run."
    )
    max_emptied_days: int = Field(
        default=3,
        description="Days PostgreSQL no longer has any row of, but Snowflake does, that one scan may reload. "
        "More at once look like a source that lost its history (a restore from an old backup, a TRUNCATE, a "
        "DSN pointed at an empty replica): none of them is reloaded, and a failed check says so, until an "
        "engineer reloads them with `make backfill`.",
    )


def first_day(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"start_date must be a day in YYYY-MM-DD form, not {value!r}") from None
    return value
