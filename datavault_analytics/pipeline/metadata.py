"""The metadata both assets record. Each day's materialization carries that day's own figures (Dagster's
standard keys among them), also when one run covers several days, so a day's page and the row-count plot are
right for the schedule's multi-day runs; what a run records once holds for each of its days (the columns)."""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import dagster as dg

from datavault_analytics.stage.manifest import StagedColumn, StagedPartition

if TYPE_CHECKING:  # the stage's IO manager imports this module, and the stage does not depend on Snowflake
    from datavault_analytics.snowflake.loader import LoadResult


def run_metadata(manifests: Sequence[StagedPartition], column_type: Callable[[StagedColumn], str]) -> dict:
    """What every day of the run shares: the columns, with PostgreSQL's comments as descriptions."""
    return {"dagster/column_schema": manifests[-1].column_schema(column_type)} if manifests else {}


def _day(manifest: StagedPartition, rows: int) -> dict:
    return {
        "dagster/row_count": rows,
        "dagster/partition_row_count": rows,
        "dagster/uri": dg.MetadataValue.path(manifest.uri),
        "partition_window": f"[{manifest.window_start}, {manifest.window_end})",
        "staged_bytes": manifest.bytes,
    }


def staged_day_metadata(manifest: StagedPartition) -> dict:
    return {
        **_day(manifest, manifest.rows),
        "staged_files": len(manifest.files),
        "staged_uris": dg.MetadataValue.json([f.uri for f in manifest.files][:1000]),
        "stage_seconds": round(manifest.seconds, 3),
        "rows_per_second": round(manifest.rows / manifest.seconds) if manifest.seconds > 0 else 0,
    }


def loaded_day_metadata(manifest: StagedPartition, result: "LoadResult") -> dict:
    return {
        **_day(manifest, result.rows_loaded),
        "rows_replaced": result.rows_deleted,
        "files_loaded": result.files_loaded,
        "load_seconds": round(result.seconds, 3),
    }
