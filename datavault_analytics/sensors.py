"""A table's drift sensor: every `drift.scan_seconds`, compare all of history and reload what differs.

A sensor, not an AutomationCondition on the observable source: the repair needs what declarative
automation has no words for (a cap on failed attempts per day, a batch limit per scan), and an observation
per day per scan is what the event log must not grow by (docs/drift.md). Each scan writes events only
for the days it content-verified or gave up on; the rest is in its cursor.

Those check evaluations are written here, under an id of the scan's own, not returned in the
SensorResult: Dagster 1.13 stores a sensor's evaluations with an empty run id, and its unique index on
(asset_key, check_name, run_id, partition) then refuses a day's second evaluation, failing the tick.
"""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType

from datavault_analytics.checks import CONTENT_HASH
from datavault_analytics.day_window import DayWindow, day_windows
from datavault_analytics.drift import (
    CheapTier,
    Repair,
    ScanState,
    content_days,
    days_in_flight,
    next_content_day,
    plan_ranges,
)
from datavault_analytics.environment import SETTINGS
from datavault_analytics.errors import asset_errors
from datavault_analytics.fingerprint import NO_ROWS
from datavault_analytics.partitions import RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.reconciliation import DayReconciliation, reconcile
from datavault_analytics.resources.postgres import PostgresResource
from datavault_analytics.resources.snowflake import SnowflakeLoader
from datavault_analytics.table_pipeline import TablePipeline

LISTED_DAYS = 20  # a log line names at most this many days, then counts the rest


def scanned_days(pipeline: TablePipeline, instance: dg.DagsterInstance | None = None) -> list[str]:
    """Every day of history the daily schedule is done with: the days older than its window, and the days
    of its latest run once that run has ended. A failed scheduled run is repaired here, since its run retry
    may never be launched (a code server down at that moment is enough)."""
    partitions = pipeline.partitions
    last = partitions.get_last_partition_key()
    if last is None:
        return []
    newest = (date.fromisoformat(last) - timedelta(days=pipeline.late_row_days + 1)).isoformat()
    if instance is not None:
        newest = max(newest, _last_day_of_ended_scheduled_run(pipeline, instance) or newest)
    first = partitions.get_first_partition_key()
    return (
        partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, newest)) if first <= newest else []
    )


def _last_day_of_ended_scheduled_run(pipeline: TablePipeline, instance: dg.DagsterInstance) -> str | None:
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"dagster/schedule_name": pipeline.schedule_name}), limit=1
    )
    return runs[0].tags.get(RANGE_END_TAG) if runs and runs[0].is_finished else None


def _listed(days: list[str]) -> str:
    shown = ", ".join(days[:LISTED_DAYS])
    return shown + (f" and {len(days) - LISTED_DAYS} more" if len(days) > LISTED_DAYS else "")


def _content_evaluation(asset_key: dg.AssetKey, day: DayReconciliation, why: str) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=CONTENT_HASH,
        partition=day.day,
        passed=day.matches,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{day.day}: content fingerprint over every column matches ({why})"
        if day.matches
        else f"{day.difference()} ({why}); the day is reloaded",
        metadata={
            "day": day.day,
            "verified_by": "drift scan",
            "postgres_fingerprint": str(day.postgres),
            "snowflake_fingerprint": str(day.snowflake),
        },
    )


def _given_up(asset_key: dg.AssetKey, day: str, why: str, attempts: int) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=CONTENT_HASH,
        partition=day,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{day}: still differs from PostgreSQL after {attempts} reloads in a row ({why}). The drift "
        "scan leaves it alone until the day changes in PostgreSQL; read the failed runs' logs, fix the cause, "
        "then re-run the day.",
        metadata={"day": day, "verified_by": "drift scan", "repairs_in_a_row": attempts},
    )


def record_evaluations(
    instance: dg.DagsterInstance, sensor_name: str, scan_id: str, evaluations: list[dg.AssetCheckEvaluation]
) -> None:
    """Store the scan's evaluations as the UI's per-day check results, all under the scan's id."""
    for evaluation in evaluations:
        instance.report_dagster_event(
            DagsterEvent(
                event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
                job_name=sensor_name,
                event_specific_data=evaluation,
            ),
            run_id=scan_id,
        )


def scan_for_drift(
    context: dg.SensorEvaluationContext,
    pipeline: TablePipeline,
    postgres: PostgresResource,
    snowflake_loader: SnowflakeLoader,
    days: list[str],
) -> dg.SensorResult | dg.SkipReason:
    """One scan over `days`: both tiers, then the repair requests. The cursor carries `ScanState`."""
    state = ScanState.from_cursor(context.cursor)
    state.scans += 1
    state.scan_id = str(uuid.uuid4())
    if not days:
        return dg.SkipReason("No day is older than the daily schedule's window yet.")
    first, last = DayWindow.for_key(days[0]), DayWindow.for_key(days[-1])
    with (
        asset_errors("Drift scan: row counts and latest updates per day"),
        ThreadPoolExecutor(2, thread_name_prefix="drift-scan") as pool,
    ):
        source = pool.submit(postgres.day_summaries, first, last)
        target = pool.submit(snowflake_loader.day_summaries, first, last)
        cheap = CheapTier(source.result(), target.result(), days)
    busy = days_in_flight(context.instance, [pipeline.stage_key, pipeline.snowflake_key])
    drift = pipeline.drift
    with asset_errors("Drift scan: content fingerprints"):
        events = _verify_content(pipeline, state, cheap, busy, postgres, snowflake_loader)

    drifted = {**{d: why for d, why in state.content_drifted.items() if d in cheap.days}, **cheap.drifted}
    wanted, left_alone = _repairs_due(context, pipeline, state, cheap, drifted, busy, events)
    plan = plan_ranges(
        wanted,
        max_gap_days=drift.merge_gap_days,
        max_days_per_run=SETTINGS.backfill_days_per_run or 31,
        max_runs=drift.runs_per_scan,
        avoid=busy | set(left_alone),
    )
    due = set(wanted)
    requested = [d for d in plan.days if d in due]  # not the equal days a range reloads in passing
    for day in requested:
        state.repairs[day].attempts += 1
        context.log.info(f"Drift: {day} differs: {drifted[day]}.")
    runs = [
        dg.RunRequest(
            run_key=f"drift-{state.scans}-{start}-{end}",
            tags={
                RANGE_START_TAG: start,
                RANGE_END_TAG: end,
                "datavault/trigger": "drift",
                "datavault/drifted_days": str(sum(1 for d in requested if start <= d <= end)),
            },
        )
        for start, end in plan.ranges
    ]
    summary = (
        f"Scan {state.scans}: {len(days):,} days compared by count and latest update, "
        f"{sum(1 for e in events if e.metadata.get('repairs_in_a_row') is None)} by content; {len(drifted)} "
        f"differ, {len(busy & set(drifted))} of them already being loaded"
    )
    if plan.waiting:
        summary += f"; {len(plan.waiting)} wait for the next scan ({_listed(plan.waiting)})"
    if left_alone:
        summary += (
            f"; {len(left_alone)} left alone after {drift.max_repairs} failed reloads ({_listed(left_alone)})"
        )
    context.log.info(summary + (f"; reloading {_listed(requested)} in {len(runs)} run(s)" if runs else ""))
    record_evaluations(context.instance, pipeline.drift_sensor_name, state.scan_id, events)
    return dg.SensorResult(
        run_requests=runs, cursor=state.model_dump_json(), skip_reason=None if runs else summary
    )


def _verify_content(
    pipeline: TablePipeline,
    state: ScanState,
    cheap: CheapTier,
    busy: set[str],
    postgres: PostgresResource,
    snowflake_loader: SnowflakeLoader,
) -> list[dg.AssetCheckEvaluation]:
    """The content tier: fingerprints of this scan's days, remembered in `state` until equal again."""
    again, in_round = content_days(state, cheap, busy, pipeline.drift.hash_days_per_scan)
    state.next_content_day = next_content_day(in_round, state)
    if not again and not in_round:
        return []
    events = []
    for day in reconcile(postgres, snowflake_loader, day_windows(again + in_round)):
        why = "after its reload" if day.day in again else "in the round over history"
        events.append(_content_evaluation(pipeline.snowflake_key, day, why))
        if day.matches:
            state.content_drifted.pop(day.day, None)
        else:
            state.content_drifted[day.day] = "content fingerprint differs, same row count and latest update"
    return events


def _repairs_due(
    context: dg.SensorEvaluationContext,
    pipeline: TablePipeline,
    state: ScanState,
    cheap: CheapTier,
    drifted: dict[str, str],
    busy: set[str],
    events: list[dg.AssetCheckEvaluation],
) -> tuple[list[str], list[str]]:
    """(days to reload now, days given up on). A day gets `drift_max_repairs` reloads in a row while its
    PostgreSQL side stays the same; then it is reported once, into `events`, and left alone."""
    for day in list(state.repairs):
        if day not in drifted:
            del state.repairs[day]  # equal again: repaired, or changed back
    wanted, left_alone = [], []
    for day, why in sorted(drifted.items()):
        if day in busy:
            continue
        source_now = str(cheap.postgres.get(day, NO_ROWS))
        repair = state.repairs.get(day)
        if repair is None or repair.source != source_now:
            repair = state.repairs[day] = Repair(source=source_now)
        if repair.attempts < pipeline.drift.max_repairs:
            wanted.append(day)
            continue
        left_alone.append(day)
        if not repair.reported:
            repair.reported = True
            events.append(_given_up(pipeline.snowflake_key, day, why, repair.attempts))
            context.log.error(
                f"Drift: {day} still differs after {repair.attempts} reloads in a row ({why}); left alone "
                "until it changes in PostgreSQL."
            )
    return wanted, left_alone


def build_drift_sensor(pipeline: TablePipeline, job) -> dg.SensorDefinition:
    drift, spec = pipeline.drift, pipeline.spec
    updated = f"and latest {spec.updated_at_column} " if spec.updated_at_column else ""

    @dg.sensor(
        name=pipeline.drift_sensor_name,
        job=job,
        minimum_interval_seconds=drift.scan_seconds,
        # On by default in prod; locally, `dagster sensor start --start-all`.
        default_status=dg.DefaultSensorStatus.RUNNING
        if SETTINGS.environment == "prod"
        else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Compares every day of {spec.source_name} older than the daily schedule's window, in PostgreSQL "
            f"and Snowflake: row count {updated}on every scan, the full content fingerprint of "
            f"{drift.hash_days_per_scan} days per scan in a round over history. Days that differ are reloaded "
            f"in a few range runs; a day that still differs after {drift.max_repairs} reloads in a row is "
            "reported and left alone."
        ),
    )
    def drift_sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource, snowflake_loader: SnowflakeLoader
    ):
        return scan_for_drift(
            context,
            pipeline,
            postgres.for_table(spec),
            snowflake_loader.for_table(spec),
            scanned_days(pipeline, context.instance),
        )

    return drift_sensor
