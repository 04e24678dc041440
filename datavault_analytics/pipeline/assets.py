"""A table's three daily-partitioned assets: PostgreSQL source -> S3 Parquet stage -> Snowflake table.

Three hops: the source IO manager hands the stage asset a lazy stream per day; the stage IO manager writes
it and hands the Snowflake asset the days' manifests; the Snowflake asset calls the loader once per day.
Every asset carries its table in its metadata (`table_metadata`), which is how the shared IO managers and
resources know which table they work on.
"""

import warnings
from datetime import timedelta

import dagster as dg

from datavault_analytics import names
from datavault_analytics.errors import SnowflakeLoadError, asset_errors
from datavault_analytics.names import PARTITION_TAG, POSTGRES_POOL, RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.pipeline.check_history import carry_over_verifications
from datavault_analytics.pipeline.load import load_days
from datavault_analytics.postgres.extract import SourceExtract
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.redaction import redact_known_secrets
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.io_manager import StagedDays
from datavault_analytics.stage.manifest import staged_columns
from datavault_analytics.stage.retention import StageRetention
from datavault_analytics.table.day_window import day_windows
from datavault_analytics.table.partitions import check_in_partitions
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.table.spec import table_metadata

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
        io_manager_key=names.POSTGRES_IO_MANAGER,
        group_name=pipeline.group,
        description=(
            f"DataVault's `{spec.source_name}` table in PostgreSQL, written by the DataVault backend. "
            + (f"{pipeline.description} " if pipeline.description else "")
            + f"Observing it records each of the last {pipeline.settings.observed_days} days' row count and latest "
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
        keys = partitions.get_partition_keys_between_indexes(
            max(0, count - pipeline.settings.observed_days), count
        )
        with asset_errors("Observing the PostgreSQL source"):
            catalog = postgres.for_table(spec)
            stats = catalog.day_stats(day_windows(keys))
            schema = catalog.column_schema()
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
                        "dagster/column_schema": schema,
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
        "backfill_policy": pipeline.backfill_policy,
        "retry_policy": pipeline.retry_policy,
        "group_name": pipeline.group,
        "owners": list(pipeline.owners),
        "metadata": table_metadata(pipeline.spec),
    }


def _verifications_survive_failed_staging(pipeline: TablePipeline) -> dg.HookDefinition:
    """When staging fails for good, Snowflake has not changed: the days' checks keep their last result."""

    @dg.failure_hook(name=pipeline.failed_staging_hook_name)
    def keep_verifications(context: dg.HookContext) -> None:
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
        io_manager_key=names.S3_STAGE_IO_MANAGER,
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
                except SnowflakeLoadError as error:  # unreachable: the load checks them again
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
        # The load reads each day's fingerprint on DataVault's database while its COPY runs.
        pool=POSTGRES_POOL,
        kinds={"snowflake"},
        description=(
            f"{spec.source_name} in Snowflake ({spec.snowflake_table}), loaded with COPY INTO from exactly the "
            "staged files. Each day is replaced in one transaction, so re-running a day never duplicates or "
            "loses rows."
        ),
        **_materialized_asset_args(pipeline),
        freshness_policy=dg.FreshnessPolicy.cron(
            deadline_cron=pipeline.freshness.deadline_cron,
            timezone="UTC",
            lower_bound_delta=timedelta(hours=pipeline.freshness.window_hours),
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
