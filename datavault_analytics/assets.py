"""A table's three daily-partitioned assets: PostgreSQL source -> S3 Parquet stage -> Snowflake table.

Three hops: the source IO manager hands the stage asset a lazy stream per day; the stage IO manager writes
it and hands the Snowflake asset the days' manifests; the Snowflake asset calls the loader once per day.
Every asset carries its table in its metadata (`table_metadata`), which is how the shared IO managers and
resources know which table they work on.
"""

import time
import warnings
from datetime import timedelta
from functools import partial

import dagster as dg

from datavault_analytics.day_window import day_windows
from datavault_analytics.environment import SETTINGS
from datavault_analytics.errors import PermanentError, TransientError, asset_errors
from datavault_analytics.metadata import materialization_metadata
from datavault_analytics.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG, check_in_partitions
from datavault_analytics.reconciliation import (
    SourceFingerprintReader,
    SourceFingerprints,
    source_fingerprints_meanwhile,
)
from datavault_analytics.redaction import redact_known_secrets
from datavault_analytics.resources.partition_locks import PartitionLocks
from datavault_analytics.resources.postgres import POSTGRES_POOL, PostgresResource, SourceExtract
from datavault_analytics.resources.s3_stage import StagedDays
from datavault_analytics.resources.snowflake import LoadResult, SnowflakeLoader, SnowflakeLoadError
from datavault_analytics.resources.stage_manifest import StagedPartition, staged_columns
from datavault_analytics.resources.table_spec import table_metadata
from datavault_analytics.stage_retention import StageRetention
from datavault_analytics.table_pipeline import TablePipeline

SOURCE_FINGERPRINTS = "postgres_fingerprints"  # the load's metadata: PostgreSQL's side of the checks

# A range of days runs as one run by default (what `dg launch --partition-range` requires); a deployment sets
# DATAVAULT_BACKFILL_DAYS_PER_RUN (31 in deploy/helm/values.yaml) so a UI backfill fans out across pods.
BACKFILL_POLICY = (
    dg.BackfillPolicy.multi_run(SETTINGS.backfill_days_per_run)
    if SETTINGS.backfill_days_per_run > 0
    else dg.BackfillPolicy.single_run()
)
# Transient failures are retried with backoff; errors that retrying cannot fix are non-retryable Failures.
RETRY_POLICY = dg.RetryPolicy(
    max_retries=SETTINGS.max_retries,
    delay=SETTINGS.retry_delay_seconds,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)

# Per-day observations with metadata need `observable_source_asset` (ObserveResult has no partition yet);
# converting it, Dagster itself reads a deprecated property. Only that internal warning is silenced.
warnings.filterwarnings(
    "ignore", message="Property `OpDefinition.version` is deprecated", category=DeprecationWarning
)


def build_table_assets(pipeline: TablePipeline) -> list[dg.AssetsDefinition]:
    """The table's source, stage and Snowflake assets."""
    return [_source_asset(pipeline), _stage_asset(pipeline), _snowflake_asset(pipeline)]


def _source_asset(pipeline: TablePipeline) -> dg.AssetsDefinition:
    spec, partitions = pipeline.spec, pipeline.partitions

    @dg.observable_source_asset(
        key=pipeline.source_key,
        partitions_def=partitions,
        io_manager_key="postgres_io_manager",
        group_name=pipeline.group,
        description=(
            f"DataVault's `{spec.source_name}` table in PostgreSQL, written by the DataVault backend. "
            + (f"{pipeline.description} " if pipeline.description else "")
            + f"Observing it records each of the last {SETTINGS.observed_days} days' row count and latest "
            f"{spec.partition_column}, so a change in the source shows as a new data version."
        ),
        tags={"dagster/kind/postgres": ""},
        metadata={
            "dagster/table_name": f"datavault.{spec.source_name}",
            **table_metadata(spec),
        },
    )
    def source(context: dg.OpExecutionContext, postgres: PostgresResource) -> dg.DataVersionsByPartition:
        """One observation per recent day, carrying its data version and what is there."""
        count = partitions.get_num_partitions()
        keys = partitions.get_partition_keys_between_indexes(max(0, count - SETTINGS.observed_days), count)
        with asset_errors("Observing the PostgreSQL source"):
            stats = postgres.for_table(spec).day_stats(day_windows(keys))
        for day, stat in stats.items():
            latest = stat["latest"].isoformat() if stat["latest"] else None
            latest_update = stat["latest_update"].isoformat() if stat["latest_update"] else None
            context.log_event(
                dg.AssetObservation(
                    asset_key=pipeline.source_key,
                    partition=day,
                    tags={
                        "dagster/data_version": f"rows={stat['rows']};latest={latest};updated={latest_update}"
                    },
                    metadata={
                        "dagster/row_count": stat["rows"],
                        f"latest_{spec.partition_column}": latest or "none",
                        "latest_updated_at": latest_update or "none",
                    },
                )
            )
        # The observations above carry the versions together with their metadata.
        return dg.DataVersionsByPartition({})

    return source


def _materialized_asset_args(pipeline: TablePipeline) -> dict:
    """What the stage and Snowflake assets share: partitions, policies, ownership and the table."""
    return {
        "partitions_def": pipeline.partitions,
        "backfill_policy": BACKFILL_POLICY,
        "retry_policy": RETRY_POLICY,
        "group_name": pipeline.group,
        "owners": list(pipeline.owners),
        "metadata": table_metadata(pipeline.spec),
    }


def _verifications_survive_failed_staging(pipeline: TablePipeline) -> dg.HookDefinition:
    """When staging fails for good, Snowflake has not changed: the days' checks keep their last result."""

    @dg.failure_hook(name=f"{pipeline.name}_verifications_survive_failed_staging")
    def keep_verifications(context: dg.HookContext) -> None:
        from datavault_analytics.checks import carry_over_verifications  # checks.py imports this module

        tags = context.instance.get_run_by_id(context.run_id).tags
        if PARTITION_TAG in tags:
            days = [tags[PARTITION_TAG]]
        elif RANGE_START_TAG in tags:
            days = pipeline.partitions.get_partition_keys_in_range(
                dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
            )
        else:
            return
        carried = carry_over_verifications(context.instance, pipeline, days, context.run_id)
        if carried:
            context.log.info(
                f"Staging failed before Snowflake changed: {carried} check result(s) of "
                f"{pipeline.spec.snowflake_table}'s days still hold and are shown again."
            )

    return keep_verifications


def _stage_asset(pipeline: TablePipeline) -> dg.AssetsDefinition:
    spec = pipeline.spec

    @dg.asset(
        key=pipeline.stage_key,
        ins={"source": dg.AssetIn(key=pipeline.source_key)},
        io_manager_key="s3_stage_io_manager",
        pool=POSTGRES_POOL,
        kinds={"s3", "parquet"},
        hooks={_verifications_survive_failed_staging(pipeline)},
        description=(
            f"The day's rows of {spec.source_name} as Parquet files in the S3 stage, at "
            f"s3://<bucket>/<prefix>/{spec.name}/dt=<day>/part-NNNNN-<staging>.parquet, with a _manifest.json "
            "written last. Binary columns (ciphertext) are copied byte for byte."
        ),
        **_materialized_asset_args(pipeline),
    )
    def stage(
        context: dg.AssetExecutionContext, source: SourceExtract, snowflake_loader: SnowflakeLoader
    ) -> SourceExtract:
        """Hands the days' streams to the stage IO manager, once they can be loaded: the keys are days of the
        partitions, and the Snowflake table can take the source's columns. Nothing is read here."""
        loader = snowflake_loader.for_table(spec)
        with asset_errors("Checking the days and the Snowflake table before staging"):
            check_in_partitions(pipeline.partitions, context.partition_keys)
            if source.days:
                try:
                    loader.check_compatible(staged_columns(source.days[0].columns))
                except SnowflakeLoadError as error:
                    if isinstance(error, PermanentError):
                        raise
                    context.log.warning(
                        redact_known_secrets(
                            f"Staging without checking Snowflake's columns first (the load checks them): {error}"
                        )
                    )
        return source

    return stage


def _snowflake_asset(pipeline: TablePipeline) -> dg.AssetsDefinition:
    spec = pipeline.spec

    @dg.asset(
        key=pipeline.snowflake_key,
        ins={"staged": dg.AssetIn(key=pipeline.stage_key)},
        kinds={"snowflake"},
        description=(
            f"{spec.source_name} in Snowflake ({spec.snowflake_table}), loaded with COPY INTO from exactly the "
            "staged files. Each day is replaced in one transaction, so re-running a day never duplicates or "
            "loses rows."
        ),
        **_materialized_asset_args(pipeline),
        freshness_policy=dg.FreshnessPolicy.cron(
            deadline_cron=pipeline.freshness_deadline_cron,
            timezone="UTC",
            lower_bound_delta=timedelta(hours=pipeline.freshness_window_hours),
        ),
    )
    def load(
        context: dg.AssetExecutionContext,
        staged: StagedDays,
        snowflake_loader: SnowflakeLoader,
        postgres: PostgresResource,
        partition_locks: PartitionLocks,
        stage_retention: StageRetention,
    ) -> dg.MaterializeResult:
        """Loads each staged day under its lock, reading its manifest there: the load and a re-staging of the
        same day never interleave, and a re-staging in progress is waited for.

        Meanwhile, PostgreSQL's fingerprints of the days are read for the checks (reconciliation.py)."""
        return load_days(
            context,
            pipeline,
            staged,
            snowflake_loader.for_table(spec),
            postgres.for_table(spec),
            partition_locks.for_table(spec),
            stage_retention.for_table(spec),
        )

    return load


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
                    manifest, lock=lock, run_id=run, finished_runs=partial(_finished_runs, context.instance)
                )
            manifests.append(manifest)
            results.append(result)
            for ended in result.ended:
                context.log.warning(
                    f"Ended Snowflake transaction {ended.transaction_id} ({ended.name}), left open by run "
                    f"{ended.run_id}, which has finished: it held {snowflake_loader.table_name}'s lock."
                )
            if result.columns_added:
                context.log.warning(
                    f"Added new column(s) {result.columns_added} to {snowflake_loader.table_name}."
                )
            context.log.info(
                f"Loaded {key} ({number}/{len(keys)} days): {result.rows_loaded:,} rows from "
                f"{result.files_loaded} file(s), replacing {result.rows_deleted:,}, in {result.seconds:.2f}s"
            )
    source_read = _source_fingerprints(context, reader, loaded_at=time.monotonic())
    read_metadata = {SOURCE_FINGERPRINTS: dg.MetadataValue.json(source_read.to_json())} if source_read else {}
    _purge_expired_stagings(context, pipeline, stage_retention, keep=frozenset(keys))
    return dg.MaterializeResult(
        metadata=materialization_metadata(
            manifests,
            rows=sum(r.rows_loaded for r in results),
            seconds=time.monotonic() - started,
            seconds_key="load_seconds",
            column_type=lambda c: c.snowflake_type,
            range_uri=(
                f"{manifests[0].stage_uri}/{manifests[0].directory.rsplit('/', 1)[0]}" if manifests else ""
            ),
            day_columns={
                "rows loaded": lambda i: results[i].rows_loaded,
                "rows replaced": lambda i: results[i].rows_deleted,
                "files": lambda i: results[i].files_loaded,
                "seconds": lambda i: results[i].seconds,
            },
            extra={
                "dagster/table_name": snowflake_loader.qualified_table_name,
                "rows_replaced": sum(r.rows_deleted for r in results),
                "files_loaded": sum(r.files_loaded for r in results),
                **read_metadata,
            },
        )
    )


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
