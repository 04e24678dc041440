"""The Snowflake asset's work: each staged day loaded under its lock, PostgreSQL's side of the checks read
meanwhile, expired stagings purged after."""

import json
import time
from functools import partial

import dagster as dg

from datavault_analytics.errors import PermanentError, TransientError, asset_errors
from datavault_analytics.names import LOADED_DAYS_TAG, SOURCE_FINGERPRINTS
from datavault_analytics.pipeline.metadata import loaded_day_metadata, run_metadata
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.redaction import redact_known_secrets
from datavault_analytics.snowflake.loader import AbandonedTransaction, LoadResult, SnowflakeLoader
from datavault_analytics.stage.io_manager import StagedDays
from datavault_analytics.stage.manifest import StagedPartition
from datavault_analytics.stage.retention import StageRetention
from datavault_analytics.table.day_window import day_windows
from datavault_analytics.table.partitions import check_in_partitions
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.verification.reconciliation import (
    SourceFingerprintReader,
    SourceFingerprints,
    source_fingerprints_meanwhile,
)


def load_days(
    context: dg.AssetExecutionContext,
    pipeline: TablePipeline,
    staged: StagedDays,
    snowflake_loader: SnowflakeLoader,
    postgres: PostgresResource,
    partition_locks: PartitionLocks,
    stage_retention: StageRetention,
) -> dg.MaterializeResult:
    started, run, keys = time.monotonic(), context.run.run_id, staged.partition_keys
    manifests: list[StagedPartition] = []
    results: list[LoadResult] = []
    with (
        asset_errors("Loading into Snowflake"),
        source_fingerprints_meanwhile(postgres, day_windows(keys)) as reader,
    ):
        check_in_partitions(pipeline.partitions, context.partition_keys)
        for number, key in enumerate(keys, start=1):
            with partition_locks.hold(key, holder=f"load {key} run {run[:8]}") as lock:
                with asset_errors("Reading the stage manifests"):
                    manifest = staged.read(key)
                result = snowflake_loader.load_partition(
                    manifest,
                    lock=lock,
                    run_id=run,
                    abandoned=partial(_abandoned, context.instance, partition_locks, key),
                )
            manifests.append(manifest)
            results.append(result)
            # Progress as data, for the CLI and the run's page: the days this run has loaded so far.
            loaded = {m.partition_key: r.rows_loaded for m, r in zip(manifests, results, strict=True)}
            context.instance.add_run_tags(run, {LOADED_DAYS_TAG: json.dumps(loaded, separators=(",", ":"))})
            for ended in result.ended:
                context.log.warning(
                    f"Ended Snowflake transaction {ended.transaction_id} ({ended.name}), left open by run "
                    f"{ended.run_id}, which is gone (its day's lock was free, or Dagster has the run as finished): it "
                    f"held {snowflake_loader.table_name}'s lock."
                )
            for change in result.schema_changes:
                context.log.warning(
                    f"Schema change of {snowflake_loader.table_name}, loading {key}: {change}."
                )
            context.log.info(
                f"Loaded {key} ({number}/{len(keys)} days): {result.rows_loaded:,} rows from "
                f"{result.files_loaded} file(s), replacing {result.rows_deleted:,}, in {result.seconds:.2f}s"
            )
    for manifest, result in zip(manifests, results, strict=True):
        context.add_asset_metadata(
            loaded_day_metadata(manifest, result), partition_key=manifest.partition_key
        )
    rows, seconds = sum(r.rows_loaded for r in results), time.monotonic() - started
    context.log.info(f"Loaded {len(results)} day(s): {rows:,} rows in {seconds:.2f}s")
    source_read = _source_fingerprints(context, reader, loaded_at=time.monotonic())
    read_metadata = {SOURCE_FINGERPRINTS: dg.MetadataValue.json(source_read.to_json())} if source_read else {}
    _purge_expired_stagings(context, pipeline, stage_retention, keep=frozenset(keys))
    changes = [c for r in results for c in r.schema_changes]
    return dg.MaterializeResult(
        metadata={
            **run_metadata(manifests, lambda c: c.snowflake_type),
            "dagster/table_name": snowflake_loader.qualified_table_name,
            **({"schema_changes": dg.MetadataValue.json(changes)} if changes else {}),
            **read_metadata,
        }
    )


def _abandoned(
    instance: dg.DagsterInstance, locks: PartitionLocks, holding: str, candidates: list[AbandonedTransaction]
) -> list[AbandonedTransaction]:
    """The load transactions nobody will commit. A loader holds its day's lock from before BEGIN to after
    COMMIT or ROLLBACK, and PostgreSQL frees the lock when its session ends, so a transaction of this table
    whose day's lock is free (or held by us, for `holding`) belongs to a run that is gone: killed outside the
    daemon, or on a machine that was lost. Without the daemon, nothing else would ever say so. A transaction
    of another table, or named before names carried the table, is ended only once Dagster has its run as
    finished."""
    finished = _finished_runs(instance, sorted({c.run_id for c in candidates}))
    found = []
    for candidate in candidates:
        if candidate.run_id in finished or (candidate.this_table and candidate.partition_key == holding):
            found.append(candidate)
        elif candidate.this_table:
            with locks.try_hold(candidate.partition_key, holder=f"check {candidate.name}") as lock:
                if lock is not None:
                    found.append(candidate)
    return found


def _finished_runs(instance: dg.DagsterInstance, run_ids: list[str]) -> set[str]:
    """Which of these runs Dagster has as finished (a killed run is, once run monitoring has seen it)."""
    finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    return {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids, statuses=finished))}


def _source_fingerprints(
    context: dg.AssetExecutionContext, reader: SourceFingerprintReader, loaded_at: float
) -> SourceFingerprints | None:
    """What the reader found; if it failed, the load stands and the checks read PostgreSQL themselves."""
    try:
        read = reader.result()
    except Exception as error:  # noqa: BLE001 - any failure here only moves the read to the checks
        context.log.warning(
            redact_known_secrets(
                f"Could not read PostgreSQL's fingerprints while loading (the checks read them): {error}"
            )
        )
        return None
    context.log.info(
        f"Read PostgreSQL's fingerprints of {len(read.days)} day(s) for the checks while loading; waited "
        f"{time.monotonic() - loaded_at:.2f}s for them after the last load"
    )
    return read


def _purge_expired_stagings(
    context: dg.AssetExecutionContext,
    pipeline: TablePipeline,
    retention: StageRetention,
    keep: frozenset[str],
) -> None:
    """The load is done whatever happens here: a failure is a warning, and the next load tries again."""
    try:
        purged = retention.purge_expired(
            context.instance, pipeline.snowflake_key, keep=keep, holder=f"purge run {context.run.run_id[:8]}"
        )
    except (TransientError, PermanentError) as error:
        context.log.warning(
            redact_known_secrets(f"Could not delete staged files past their retention: {error}")
        )
        return
    if purged:
        context.log.info(
            f"Deleted the staged files of {len(purged)} day(s) loaded more than "
            f"{retention.retention_hours:g} h ago: {', '.join(purged)}"
        )
