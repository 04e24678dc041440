"""One partition as a time window: the half-open UTC day [start, end) on the partition column."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from datavault_analytics.errors import InvalidPartitionKeyError


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
            raise InvalidPartitionKeyError(
                f"Partition key {partition_key!r} is not a day in YYYY-MM-DD form."
            )
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(partition_key, start, start + timedelta(days=1))

    @property
    def start_ntz(self) -> str:
        """The window start as UTC wall-clock text, for TIMESTAMP_NTZ comparisons in Snowflake."""
        return self.start.strftime("%Y-%m-%d %H:%M:%S")

    @property
    def end_ntz(self) -> str:
        return self.end.strftime("%Y-%m-%d %H:%M:%S")


def as_utc(moment: datetime | None) -> datetime | None:
    """A partition column's value as an aware UTC datetime: a naive `timestamp` is UTC wall-clock time."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def day_windows(partition_keys: list[str] | tuple[str, ...]) -> list[DayWindow]:
    return [DayWindow.for_key(key) for key in partition_keys]
