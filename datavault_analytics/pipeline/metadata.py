"""The metadata both assets record: Dagster's standard keys, the day's window, and a per-day table."""

from collections.abc import Callable, Sequence

import dagster as dg

from datavault_analytics.stage.manifest import StagedColumn, StagedPartition


def materialization_metadata(
    manifests: Sequence[StagedPartition],
    *,
    rows: int,
    seconds: float,
    seconds_key: str,
    column_type: Callable[[StagedColumn], str],
    range_uri: str,
    day_columns: dict[str, Callable[[int], object]],
    extra: dict | None = None,
) -> dict:
    """Metadata for a run over `manifests`' days.

    A range run records one materialization per day, all with this metadata, so only a one-day run states
    `dagster/row_count`; a range states its total as `rows_in_run`, with a per-day table of `day_columns`
    (header -> value of the day at that index).
    """
    metadata: dict = {
        "dagster/row_count" if len(manifests) == 1 else "rows_in_run": rows,
        "dagster/uri": dg.MetadataValue.path(manifests[0].uri if len(manifests) == 1 else range_uri),
        "staged_bytes": sum(m.bytes for m in manifests),
        "partition_window": (
            f"[{manifests[0].window_start}, {manifests[-1].window_end})" if manifests else "empty range"
        ),
        seconds_key: round(seconds, 3),
        **(extra or {}),
    }
    if manifests:
        metadata["dagster/column_schema"] = manifests[-1].column_schema(column_type)
    if len(manifests) > 1:
        header = ["day", *day_columns]
        lines = [
            "| "
            + " | ".join(str(v) for v in [m.partition_key, *(value(i) for value in day_columns.values())])
            + " |"
            for i, m in enumerate(manifests)
        ]
        metadata["days"] = dg.MetadataValue.md(
            "| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|\n" + "\n".join(lines)
        )
    return metadata
