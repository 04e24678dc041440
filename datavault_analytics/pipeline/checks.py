"""Asset checks on a table's Snowflake asset, one result per daily partition, evaluated together after every load.

Row count and content fingerprint (PostgreSQL against Snowflake, both in SQL), no duplicate ids, and the
staged manifest against the load. Each evaluation names its day and how late after the day it was loaded.
In a run that loaded the day, PostgreSQL's side was read by the load, while Snowflake loaded (assets.py).
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import dagster as dg

from datavault_analytics.errors import StageError, asset_errors
from datavault_analytics.names import (
    CONTENT_HASH,
    MANIFEST_MATCHES_LOAD,
    NO_DUPLICATE_IDS,
    POSTGRES_POOL,
    ROW_COUNT,
    SOURCE_FINGERPRINTS,
)
from datavault_analytics.pipeline.check_history import aimed_at_load, latest_load_record
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.manifest import StagedPartition
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.stage.retention import StageRetention
from datavault_analytics.table.day_window import DayWindow, day_windows
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.verification.reconciliation import DayReconciliation, SourceFingerprints, reconcile

MANIFEST_READERS = 8


def check_specs(pipeline: TablePipeline) -> list[dg.AssetCheckSpec]:
    """The four per-day checks of the table's Snowflake asset."""
    key, partitions = pipeline.snowflake_key, pipeline.partitions
    pk = ", ".join(pipeline.spec.primary_key)
    return [
        dg.AssetCheckSpec(
            ROW_COUNT,
            asset=key,
            partitions_def=partitions,
            description="The day's row count in Snowflake equals PostgreSQL's (count(*) on each side).",
        ),
        dg.AssetCheckSpec(
            CONTENT_HASH,
            asset=key,
            partitions_def=partitions,
            description="The day's content fingerprint over every column (the sum of each row's MD5, "
            "fingerprint.py) is the same in Snowflake and PostgreSQL, computed in SQL on each side: after each "
            "load, and again by the drift sensor in its round over history (metadata verified_by).",
        ),
        dg.AssetCheckSpec(
            NO_DUPLICATE_IDS,
            asset=key,
            partitions_def=partitions,
            description=f"No primary key ({pk}) appears more than once in Snowflake for the day.",
        ),
        dg.AssetCheckSpec(
            MANIFEST_MATCHES_LOAD,
            asset=key,
            partitions_def=partitions,
            description="The day's stage manifest lists files that are all present at their sizes, "
            "its rows equal the rows Snowflake holds, and it predates the last load.",
        ),
    ]


def _manifest_or_error(stage: S3Stage, storage, key: str) -> StagedPartition | StageError:
    try:
        return stage.read_manifest(storage, key)
    except StageError as error:
        return error


def _evaluation(
    asset_key: dg.AssetKey, name: str, day: str, passed: bool, description: str, metadata: dict
) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=name,
        passed=passed,
        partition=day,
        description=description,
        metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR,
    )


def read_by_this_run(loads: dict[str, dg.EventLogRecord | None], run_id: str) -> SourceFingerprints | None:
    """PostgreSQL's fingerprints that this run's load read, for the days it loaded. A checks-only run, or a
    later one, reads PostgreSQL itself: it checks against the source as it is now."""
    found: SourceFingerprints | None = None
    for day, record in loads.items():
        if record is None or record.run_id != run_id:
            continue
        entry = record.asset_materialization.metadata.get(SOURCE_FINGERPRINTS)
        read = SourceFingerprints.from_json(entry.value) if entry is not None else None
        if read is None or day not in read.days:
            continue
        if found is None:
            found = SourceFingerprints(read.columns)
        if read.columns == found.columns:
            found.days[day] = read.days[day]
    return found


def evaluate_day(
    asset_key: dg.AssetKey,
    day: DayReconciliation,
    duplicates: tuple[int, int],
    manifest: StagedPartition | StageError,
    loaded_at: float | None,
    retention_hours: float | None = None,
) -> list[dg.AssetCheckEvaluation]:
    """The four evaluations for one day, each saying which day and, when it fails, what differs.

    `retention_hours`: the stage's retention; a day loaded longer ago than that has had its staged files
    purged, which is expected, so its manifest check passes and says so.
    """
    window = DayWindow.for_key(day.day)
    lateness: dict = {"day": day.day}
    if loaded_at is not None:
        lateness["last_loaded_at"] = dg.MetadataValue.timestamp(loaded_at)
        lateness["hours_after_day_end"] = round((loaded_at - window.end.timestamp()) / 3600, 2)
    read_by = "by the load, while Snowflake loaded" if day.postgres_read_by_load else "by the check"
    read = {"postgres_read": read_by}
    counts = {**lateness, **read, "postgres_rows": day.postgres_rows, "snowflake_rows": day.snowflake_rows}
    hashes = {
        **lateness,
        **read,
        "postgres_fingerprint": str(day.postgres),
        "snowflake_fingerprint": str(day.snowflake),
    }

    same_count = day.postgres_rows == day.snowflake_rows
    same_hash = day.matches
    evaluations = [
        _evaluation(
            asset_key,
            ROW_COUNT,
            day.day,
            same_count,
            f"{day.day}: {day.postgres_rows:,} rows in PostgreSQL and in Snowflake"
            if same_count
            else f"{day.day}: PostgreSQL has {day.postgres_rows:,} rows, Snowflake {day.snowflake_rows:,} "
            f"({day.snowflake_rows - day.postgres_rows:+,})",
            counts,
        ),
        _evaluation(
            asset_key,
            CONTENT_HASH,
            day.day,
            same_hash,
            f"{day.day}: content fingerprint over every column matches"
            if same_hash
            else f"{day.day}: content fingerprint differs (PostgreSQL {day.postgres}, Snowflake "
            f"{day.snowflake}): "
            + ("same row count, so some rows' values differ" if same_count else day.difference()),
            hashes,
        ),
    ]

    ids, surplus = duplicates
    evaluations.append(
        _evaluation(
            asset_key,
            NO_DUPLICATE_IDS,
            day.day,
            ids == 0,
            f"{day.day}: every id appears once"
            if ids == 0
            else f"{day.day}: {ids:,} id(s) appear more than once in Snowflake ({surplus:,} surplus rows); list them "
            f"in Snowflake with GROUP BY id HAVING COUNT(*) > 1 (record ids stay out of Dagster's event log)",
            {**lateness, "duplicated_ids": ids, "surplus_rows": surplus},
        )
    )

    if isinstance(manifest, StageError):
        purged = (
            retention_hours is not None
            and loaded_at is not None
            and datetime.now(UTC).timestamp() - loaded_at >= retention_hours * 3600
        )
        evaluations.append(
            _evaluation(
                asset_key,
                MANIFEST_MATCHES_LOAD,
                day.day,
                purged,
                f"{day.day}: the staged files were purged {retention_hours:g} h after the load, as "
                "configured; the row count and hash checks compare what was loaded"
                if purged
                else f"{day.day}: {manifest}",
                lateness,
            )
        )
        return evaluations
    staged_at = datetime.fromisoformat(manifest.staged_at).timestamp()
    problems = []
    if manifest.rows != day.snowflake_rows:
        problems.append(f"the manifest lists {manifest.rows:,} rows, Snowflake holds {day.snowflake_rows:,}")
    if loaded_at is None:
        problems.append("the day has no recorded load")
    elif staged_at > loaded_at:
        problems.append(
            f"the day was re-staged at {manifest.staged_at} after its last load at "
            f"{datetime.fromtimestamp(loaded_at, UTC).isoformat()}: re-run the Snowflake asset for the day"
        )
    evaluations.append(
        _evaluation(
            asset_key,
            MANIFEST_MATCHES_LOAD,
            day.day,
            not problems,
            f"{day.day}: "
            + (
                "; ".join(problems)
                if problems
                else f"{len(manifest.files)} staged file(s), {manifest.rows:,} rows, all loaded"
            ),
            {
                **lateness,
                "staged_files": len(manifest.files),
                "staged_rows": manifest.rows,
                "staged_bytes": manifest.bytes,
                "staged_at": manifest.staged_at,
                "snowflake_rows": day.snowflake_rows,
            },
        )
    )
    return evaluations


def build_table_checks(pipeline: TablePipeline) -> dg.AssetChecksDefinition:
    """The table's checks, evaluated together over the days of a run."""

    @dg.multi_asset_check(
        specs=check_specs(pipeline),
        can_subset=True,
        name=pipeline.checks_name,
        pool=POSTGRES_POOL,  # a checks-only run reads each day's fingerprint on DataVault's database
        description=f"Per-day reconciliation of {pipeline.spec.snowflake_table} with PostgreSQL and the stage.",
    )
    def checks(
        context: dg.AssetCheckExecutionContext,
        postgres: PostgresResource,
        snowflake_loader: SnowflakeLoader,
        s3_stage: S3Stage,
        stage_retention: StageRetention,
    ) -> Iterator:
        spec = pipeline.spec
        yield from run_checks(
            context,
            pipeline.snowflake_key,
            postgres.for_table(spec),
            snowflake_loader.for_table(spec),
            s3_stage.for_table(spec),
            stage_retention.for_table(spec),
        )

    return checks


def run_checks(
    context: dg.AssetCheckExecutionContext,
    asset_key: dg.AssetKey,
    postgres: PostgresResource,
    snowflake_loader: SnowflakeLoader,
    s3_stage: S3Stage,
    stage_retention: StageRetention,
) -> Iterator:
    op_context = context.op_execution_context
    keys = list(op_context.partition_keys)
    windows = day_windows(keys)
    loads = {key: latest_load_record(context.instance, asset_key, key) for key in keys}
    source_read = read_by_this_run(loads, context.run.run_id)
    # The manifests are small S3 reads, one day each: read them all at once, while the fingerprints run.
    with (
        asset_errors("Reconciling Snowflake with PostgreSQL"),
        ThreadPoolExecutor(MANIFEST_READERS, thread_name_prefix="manifests") as pool,
    ):
        storage = s3_stage.storage()
        manifests = pool.map(lambda key: _manifest_or_error(s3_stage, storage, key), keys)
        days = reconcile(postgres, snowflake_loader, windows, source_read=source_read)
        # The fingerprint's scan counted surplus rows; only days that have some are grouped by id.
        duplicates = {d.day: (0, 0) for d in days}
        duplicates |= snowflake_loader.duplicate_ids(
            [w for w, d in zip(windows, days, strict=True) if d.surplus_rows]
        )
        manifest_of = dict(zip(keys, manifests, strict=True))
    selected = {key.name for key in context.selected_asset_check_keys}
    failed = []
    for day in days:
        manifest = manifest_of[day.day]
        load = loads[day.day]
        for evaluation in evaluate_day(
            asset_key,
            day,
            duplicates[day.day],
            manifest,
            load.timestamp if load else None,
            stage_retention.retention_hours,
        ):
            if evaluation.check_name in selected:
                if not evaluation.passed:
                    failed.append(evaluation.description)
                yield aimed_at_load(evaluation, load)
    for line in failed:
        context.log.error(f"Check failed: {line}")
    # The evaluations above carry the per-day results; the outputs only mark the checks as done.
    for output_name, spec in op_context.assets_def.check_specs_by_output_name.items():
        if spec.name in selected:
            yield dg.Output(None, output_name=output_name)
