"""Daily partitions: one per UTC day of `created_at`, from a configurable first day."""

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from datavault_analytics.errors import PermanentError

DEFAULT_START_DATE = "2024-01-01"
START_DATE = os.getenv("DATAVAULT_START_DATE", DEFAULT_START_DATE)

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")


class InvalidPartitionKeyError(PermanentError, ValueError):
    """A partition key that is not a day of this pipeline's partitions."""


@dataclass(frozen=True)
class DayWindow:
    """One partition: the half-open UTC window [start, end) on the partition column."""

    partition_key: str
    start: datetime
    end: datetime

    @classmethod
    def for_key(cls, partition_key: str) -> "DayWindow":
        try:
            day = date.fromisoformat(partition_key)
        except (TypeError, ValueError):
            raise InvalidPartitionKeyError(
                f"Partition key {partition_key!r} is not a day in YYYY-MM-DD form."
            ) from None
        if day.isoformat() != partition_key:
            raise InvalidPartitionKeyError(f"Partition key {partition_key!r} is not a day in YYYY-MM-DD form.")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(partition_key, start, start + timedelta(days=1))

    @property
    def start_ntz(self) -> str:
        """The window start as UTC wall-clock text, for TIMESTAMP_NTZ comparisons in Snowflake."""
        return self.start.strftime("%Y-%m-%d %H:%M:%S")

    @property
    def end_ntz(self) -> str:
        return self.end.strftime("%Y-%m-%d %H:%M:%S")


def day_windows(partition_keys: list[str] | tuple[str, ...]) -> list[DayWindow]:
    return [DayWindow.for_key(key) for key in partition_keys]


def check_in_partitions(partition_keys: list[str] | tuple[str, ...]) -> None:
    """Raise InvalidPartitionKeyError unless every key is a day of the partitions: none before the first,
    none that has not ended yet. Dagster refuses such a key on its own, but not in a range, where it
    would hand the assets no days at all and record the future day as done."""
    first, last = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    for key in partition_keys:
        DayWindow.for_key(key)
        if first is None or last is None or not first <= key <= last:
            raise InvalidPartitionKeyError(
                f"Partition key {key!r} is outside this pipeline's partitions ({first} .. {last}): a day is "
                "extracted once it has ended, and none before DATAVAULT_START_DATE."
            )
