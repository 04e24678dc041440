"""Daily partitions: one per UTC day of a table's partition column, from the table's first day."""

import dagster as dg

from datavault_analytics.table.day_window import DayWindow, InvalidPartitionKeyError


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


def check_in_partitions(
    partitions: dg.DailyPartitionsDefinition, partition_keys: list[str] | tuple[str, ...]
) -> None:
    """Raise InvalidPartitionKeyError unless every key is a day of the partitions: none before the first,
    none that has not ended yet. Dagster refuses such a key on its own, but not in a range, where it
    would hand the assets no days at all and record the future day as done."""
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    for key in partition_keys:
        DayWindow.for_key(key)
        if first is None or last is None or not first <= key <= last:
            raise InvalidPartitionKeyError(
                f"Partition key {key!r} is outside this pipeline's partitions ({first} .. {last}): a day is "
                "extracted once it has ended, and none before the table's start_date."
            )
