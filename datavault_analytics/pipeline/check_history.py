"""A table's history in Dagster's instance that the checks, the drift scan and the retention read: each day's
latest load, and each check's latest evaluation of it."""

from typing import TYPE_CHECKING

import dagster as dg

from datavault_analytics.dagster_internals import (
    AssetCheckEvaluationTargetMaterializationData,
    AssetCheckExecutionRecordStatus,
    PartitionKeyFilter,
)
from datavault_analytics.names import CHECK_NAMES

if TYPE_CHECKING:
    from datavault_analytics.table.pipeline import TablePipeline


def latest_load_record(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str
) -> dg.EventLogRecord | None:
    """The latest materialization of `asset_key` for `partition_key`, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    ).records
    return records[0] if records else None


def latest_load(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str) -> float | None:
    """When `partition_key` was last loaded (its latest materialization of `asset_key`), as a timestamp."""
    record = latest_load_record(instance, asset_key, partition_key)
    return record.timestamp if record else None


def aimed_at_load(
    evaluation: dg.AssetCheckEvaluation, load: dg.EventLogRecord | None
) -> dg.AssetCheckEvaluation:
    """The evaluation, naming the day's latest load as what it verified.

    Dagster's check partition view (the UI's Partitions tab) counts an evaluation only if it targets the
    day's latest materialization; otherwise the day shows "Missing". AssetCheckResult fills the target in
    for a one-partition step only, and our runs check a range of days each, as does the drift scan."""
    if load is None:
        return evaluation
    return dg.AssetCheckEvaluation(
        asset_key=evaluation.asset_key,
        check_name=evaluation.check_name,
        passed=evaluation.passed,
        metadata=evaluation.metadata,
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
            storage_id=load.storage_id, run_id=load.run_id, timestamp=load.timestamp
        ),
        severity=evaluation.severity,
        description=evaluation.description,
        blocking=evaluation.blocking,
        partition=evaluation.partition,
    )


def carry_over_verifications(
    instance: dg.DagsterInstance, pipeline: "TablePipeline", days: list[str], failed_run_id: str
) -> int:
    """After a run failed before it changed Snowflake (its staging failed), each day's latest evaluation of
    each check still holds if it verified the day's latest load: report it again, saying so. Otherwise
    Dagster shows every check that run had planned as "Execution failed" for its days, although the data
    they verified is unchanged. Returns how many evaluations were carried over."""
    evaluated = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
    carried = 0
    for day in days:
        load = latest_load_record(instance, pipeline.snowflake_key, day)
        if load is None:
            continue
        for check_name in CHECK_NAMES:
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(pipeline.snowflake_key, check_name),
                limit=1,
                status=evaluated,
                partition_filter=PartitionKeyFilter(key=day),
            )
            if not history or history[0].event is None or history[0].event.dagster_event is None:
                continue
            previous = history[0].event.dagster_event.event_specific_data
            target = getattr(previous, "target_materialization_data", None)
            if target is None or target.storage_id != load.storage_id:
                continue  # it verified an earlier load: nothing to carry
            instance.report_runless_asset_event(
                aimed_at_load(
                    dg.AssetCheckEvaluation(
                        asset_key=previous.asset_key,
                        check_name=previous.check_name,
                        passed=previous.passed,
                        severity=previous.severity,
                        partition=day,
                        description=f"{previous.description} (still holds: run {failed_run_id} failed "
                        "before it changed Snowflake)",
                        metadata={
                            **previous.metadata,
                            "evaluated_by_run": history[0].run_id,
                            "carried_over_after_failed_run": failed_run_id,
                        },
                    ),
                    load,
                )
            )
            carried += 1
    return carried
