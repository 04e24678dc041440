"""The three daily-partitioned assets: PostgreSQL source -> S3 Parquet stage -> Snowflake table.

The data path in three hops: `PostgresSourceIOManager.load_input` opens a lazy per-day Arrow stream,
`S3StageIOManager.handle_output` writes it as Parquet and a manifest, and `snowflake_records` loads
exactly the manifest's files. Every asset works on a range of days, so a backfill runs many days per run.
"""

import os
import time
import warnings
from datetime import timedelta

import dagster as dg

from datavault_analytics.errors import PermanentError, TransientError, reported_as
from datavault_analytics.partitions import DayWindow, check_in_partitions, daily_partitions, day_windows
from datavault_analytics.resources.postgres import PostgresResource, SourceExtract
from datavault_analytics.resources.s3_stage import (
    S3StageIOManager,
    StagedPartition,
    StageError,
    staged_columns,
)
from datavault_analytics.resources.snowflake import SnowflakeLoader, SnowflakeLoadError

SOURCE_KEY = dg.AssetKey(["postgres", "datavault", "records"])
STAGE_KEY = dg.AssetKey(["s3", "datavault", "records"])
SNOWFLAKE_KEY = dg.AssetKey(["snowflake", "datavault", "records"])

GROUP = "datavault"
OWNERS = ["team:data-platform"]
OBSERVED_DAYS = int(os.getenv("DATAVAULT_OBSERVED_DAYS", "7"))
# A range of days runs as one run (a year's backfill is not 365 process start-ups), and each day in it is
# committed on its own, so a failure keeps the days before it. By default a range is one run: that is what
# `dagster asset materialize --partition-range` requires. A deployment sets DATAVAULT_BACKFILL_DAYS_PER_RUN
# (31 in deploy/helm/values.yaml) so a UI backfill of a year becomes 12 runs that fan out across pods.
BACKFILL_DAYS_PER_RUN = int(os.getenv("DATAVAULT_BACKFILL_DAYS_PER_RUN", "0"))
BACKFILL_POLICY = (dg.BackfillPolicy.multi_run(BACKFILL_DAYS_PER_RUN) if BACKFILL_DAYS_PER_RUN > 0
                   else dg.BackfillPolicy.single_run())
# Yesterday's partition is due by this cron tick (UTC), loaded within the hours before it: one deadline per
# daily partition, so a late or missing day turns the asset's freshness to FAIL until it lands.
FRESHNESS_DEADLINE_CRON = os.getenv("DATAVAULT_FRESHNESS_DEADLINE_CRON", "0 6 * * *")
FRESHNESS_WINDOW_HOURS = float(os.getenv("DATAVAULT_FRESHNESS_WINDOW_HOURS", "6"))
# Transient failures (a server restarting, a dropped connection) are retried with backoff; errors that
# retrying cannot fix are raised as non-retryable dagster.Failure (see errors.py).
RETRY_POLICY = dg.RetryPolicy(
    max_retries=int(os.getenv("DATAVAULT_MAX_RETRIES", "3")),
    delay=float(os.getenv("DATAVAULT_RETRY_DELAY_SECONDS", "15")),
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)

RECORDS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("id", "uuid -> VARCHAR(36)", description="Record id; primary key."),
        dg.TableColumn("owner_id", "bigint -> NUMBER(19,0)"),
        dg.TableColumn("key", "text -> VARCHAR"),
        dg.TableColumn("ciphertext", "bytea -> BINARY", description="AES-GCM ciphertext, never decrypted here."),
        dg.TableColumn("nonce", "bytea -> BINARY"),
        dg.TableColumn("created_at", "timestamptz -> TIMESTAMP_NTZ (UTC)", description="Partition column."),
        dg.TableColumn("updated_at", "timestamptz -> TIMESTAMP_NTZ (UTC)"),
    ]
)


def _observed_windows() -> list[DayWindow]:
    last = daily_partitions.get_last_partition_key()
    if last is None:
        return []
    keys = daily_partitions.get_partition_keys_between_indexes(
        max(0, daily_partitions.get_num_partitions() - OBSERVED_DAYS), daily_partitions.get_num_partitions()
    )
    return day_windows(keys)


# Per-day observations with metadata are only possible through `observable_source_asset` (Dagster's
# ObserveResult has no partition yet). Converting it, Dagster itself reads a deprecated property; that
# one internal warning is silenced here, nothing else.
warnings.filterwarnings("ignore", message="Property `OpDefinition.version` is deprecated", category=DeprecationWarning)


@dg.observable_source_asset(
    key=SOURCE_KEY,
    partitions_def=daily_partitions,
    io_manager_key="postgres_io_manager",
    group_name=GROUP,
    description=(
        "DataVault's `records` table in PostgreSQL, written by the DataVault backend (ingest -> Redis Stream -> "
        f"backend). Observing it records each of the last {OBSERVED_DAYS} days' row count and latest created_at, "
        "so a change in the source shows as a new data version."
    ),
    tags={"dagster/kind/postgres": ""},
    metadata={"dagster/column_schema": RECORDS_SCHEMA, "dagster/table_name": "datavault.public.records"},
)
def postgres_records(context: dg.OpExecutionContext, postgres: PostgresResource) -> dg.DataVersionsByPartition:
    """One observation per recent day, carrying its data version and what is there."""
    with reported_as("Observing the PostgreSQL source"):
        stats = postgres.day_stats(_observed_windows())
    for day, stat in stats.items():
        latest = stat["latest"].isoformat() if stat["latest"] else None
        latest_update = stat["latest_update"].isoformat() if stat["latest_update"] else None
        context.log_event(
            dg.AssetObservation(
                asset_key=SOURCE_KEY,
                partition=day,
                tags={"dagster/data_version": f"rows={stat['rows']};latest={latest};updated={latest_update}"},
                metadata={"dagster/row_count": stat["rows"], "latest_created_at": latest or "none",
                          "latest_updated_at": latest_update or "none"},
            )
        )
    # The observations above carry the versions together with their metadata.
    return dg.DataVersionsByPartition({})


@dg.asset(
    key=STAGE_KEY,
    ins={"source": dg.AssetIn(key=SOURCE_KEY)},
    partitions_def=daily_partitions,
    io_manager_key="s3_stage_io_manager",
    backfill_policy=BACKFILL_POLICY,
    retry_policy=RETRY_POLICY,
    pool="datavault_postgres",
    group_name=GROUP,
    owners=OWNERS,
    kinds={"s3", "parquet"},
    description=(
        "The day's rows as Parquet files in the S3 stage, at s3://<bucket>/<prefix>/records/dt=<day>/"
        "part-NNNNN.parquet, with a _manifest.json written last. Ciphertext is copied byte for byte."
    ),
    metadata={"dagster/column_schema": RECORDS_SCHEMA},
)
def s3_stage_records(
    context: dg.AssetExecutionContext, source: SourceExtract, snowflake_loader: SnowflakeLoader
) -> SourceExtract:
    # The stage IO manager streams PostgreSQL into Parquet; the day never passes through here in memory.
    # First, before anything is written: days outside the partitions, and a source whose columns the
    # Snowflake table cannot take, stop here.
    with reported_as("Checking the partition keys"):
        check_in_partitions(context.partition_keys)
    if source.days:
        with reported_as("Checking the Snowflake table's columns before staging"):
            try:
                snowflake_loader.check_compatible(staged_columns(source.days[0].columns))
            except SnowflakeLoadError as error:
                if isinstance(error, PermanentError):
                    raise
                context.log.warning(f"Staging without checking Snowflake's columns first (the load checks them): {error}")
    return source


@dg.asset(
    key=SNOWFLAKE_KEY,
    # The manifests are read in the body, under each day's lock, not as an input loaded before it: a run
    # re-staging the day at that moment has deleted the manifest and not yet written the new one.
    deps=[STAGE_KEY],
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    retry_policy=RETRY_POLICY,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"snowflake"},
    description=(
        "DataVault records in Snowflake, loaded with COPY INTO from exactly the staged files. Each day is "
        "replaced in one transaction, so re-running a day never duplicates or loses rows."
    ),
    metadata={"dagster/column_schema": RECORDS_SCHEMA},
    freshness_policy=dg.FreshnessPolicy.cron(deadline_cron=FRESHNESS_DEADLINE_CRON, timezone="UTC",
                                             lower_bound_delta=timedelta(hours=FRESHNESS_WINDOW_HOURS)),
)
def snowflake_records(
    context: dg.AssetExecutionContext,
    snowflake_loader: SnowflakeLoader,
    postgres: PostgresResource,
    s3_stage_io_manager: dg.ResourceParam[S3StageIOManager],
) -> dg.MaterializeResult:
    started = time.monotonic()
    keys = list(context.partition_keys)
    with reported_as("Checking the partition keys"):
        check_in_partitions(keys)
    with reported_as("Checking the stage settings"):
        storage = s3_stage_io_manager.storage()
    results: list = []
    loaded: list[StagedPartition] = []
    for number, key in enumerate(keys, start=1):
        with reported_as(f"Loading {key} into Snowflake"), \
                postgres.partition_lock(key, holder=f"load {key} run {context.run.run_id[:8]}") as lock:
            # Under the day's lock (locks.py), so the load takes exactly one complete staging.
            with reported_as(f"Reading the stage manifest of {key}"), \
                    s3_stage_io_manager.s3_errors(f"reading the stage manifest of {key}"):
                partition = s3_stage_io_manager.read_manifest(storage, key)
            result = snowflake_loader.load_partition(partition, lock=lock, run_id=context.run.run_id)
            try:
                with s3_stage_io_manager.s3_errors(f"marking {key} loaded"):
                    s3_stage_io_manager.mark_loaded(storage, partition, context.run.run_id)
            except (TransientError, StageError) as error:  # the day is loaded; only its clean-up waits
                context.log.warning(f"{key} is loaded, but its staged files stay until it is loaded again: {error}")
        loaded.append(partition)
        results.append(result)
        if result.columns_added:
            context.log.warning(f"Added new column(s) {result.columns_added} to Snowflake table {snowflake_loader.table}.")
        context.log.info(
            f"Loaded {result.partition_key} ({number}/{len(keys)} days): {result.rows_loaded:,} rows from "
            f"{result.files_loaded} file(s), replacing {result.rows_deleted:,}, in {result.seconds:.2f}s"
        )
    staged = loaded
    try:
        with s3_stage_io_manager.s3_errors("deleting staged files past their retention"):
            purged = s3_stage_io_manager.purge_expired(
                storage, lambda key: postgres.try_partition_lock(key, holder=f"purge {key} run {context.run.run_id[:8]}"),
                keep=frozenset(p.partition_key for p in loaded),
            )
        if purged:
            context.log.info(f"Deleted the staged files of {len(purged)} day(s) loaded more than "
                             f"{s3_stage_io_manager.retention_hours:g} h ago: {', '.join(purged)}")
    except (TransientError, StageError) as error:  # the load is done; the next one retries the clean-up
        context.log.warning(f"Could not delete staged files past their retention: {error}")
    rows = sum(r.rows_loaded for r in results)
    metadata: dict = {
        # As in the stage: a range run's materializations share metadata, so only one day states its count.
        "dagster/row_count" if len(results) == 1 else "rows_in_run": rows,
        "dagster/table_name": f"{snowflake_loader.snowflake.database}.{snowflake_loader.snowflake.schema_}."
                              f"{snowflake_loader.table}".upper(),
        "dagster/uri": dg.MetadataValue.path(", ".join(f"{p.stage_uri}/{p.directory}" for p in staged[:3])
                                             + (" ..." if len(staged) > 3 else "")),
        "rows_replaced": sum(r.rows_deleted for r in results),
        "files_loaded": sum(r.files_loaded for r in results),
        "staged_bytes": sum(p.bytes for p in staged),
        "partition_window": f"[{staged[0].window_start}, {staged[-1].window_end})" if staged else "empty range",
        "load_seconds": round(time.monotonic() - started, 3),
    }
    if staged:
        metadata["dagster/column_schema"] = staged[-1].column_schema(lambda c: c.snowflake_type)
    if len(results) > 1:
        metadata["days"] = dg.MetadataValue.md(
            "| day | rows loaded | rows replaced | files | seconds |\n|---|---|---|---|---|\n"
            + "\n".join(f"| {r.partition_key} | {r.rows_loaded} | {r.rows_deleted} | {r.files_loaded} | {r.seconds} |"
                        for r in results)
        )
    return dg.MaterializeResult(metadata=metadata)
