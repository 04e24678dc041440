"""A table's drift scan: a run that compares all of history, and a sensor that decides when to start it and
launches the repairs it asks for.

The sensor only decides; it reads Dagster's instance and never DataVault's databases. Every
`drift.scan_seconds`, if the drift budget allows, it launches the table's scan job,
`datavault_<table>_drift_scan`. That run's one op reads both databases (both tiers, drift.py), records each
day it verified by content as a check evaluation of its own run, and publishes what it found as an
observation of the source asset: the repairs to launch and the sensor's next state. A later tick launches
those repairs. A scan therefore takes as long as it needs (Dagster gives a sensor tick 60 s), and is
visible, logged, retried and killed like any other run.

The budget (`DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR`) is shared by every table's scans: a scan starts only
while the scans of all tables took less than that many seconds in the past hour. The scan op is in the
`datavault_postgres` pool, with the extracts: what bounds concurrent sessions on DataVault's database bounds
the scans too.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import dagster as dg

from datavault_analytics.drift.budget import budget_left
from datavault_analytics.drift.findings import RepairRange, ScanFindings, ScanOutcome
from datavault_analytics.drift.plan import (
    CheapTier,
    Repair,
    ScanState,
    content_days,
    days_in_flight,
    next_content_day,
    plan_ranges,
)
from datavault_analytics.errors import asset_errors
from datavault_analytics.names import (
    CONTENT_HASH,
    FINDINGS_KEY,
    POSTGRES_POOL,
    RANGE_END_TAG,
    ROW_COUNT,
    SCAN_SECONDS_TAG,
    SCAN_TRIGGER,
    SCHEDULE_NAME_TAG,
    TABLE_TAG,
    TRIGGER_TAG,
)
from datavault_analytics.pipeline.check_history import aimed_at_load, latest_load_record
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.table.day_window import DayWindow, day_windows
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.verification.fingerprint import NO_ROWS
from datavault_analytics.verification.reconciliation import DayReconciliation, reconcile

LISTED_DAYS = 20  # a log line names at most this many days, then counts the rest


def scanned_days(pipeline: TablePipeline, instance: dg.DagsterInstance | None = None) -> list[str]:
    """Every day of history the daily schedule is done with: the days older than its window, and the days
    of its latest run once that run has ended. A failed scheduled run is repaired here, since its run retry
    may never be launched (a code server down at that moment is enough)."""
    partitions = pipeline.partitions
    last = partitions.get_last_partition_key()
    if last is None:
        return []
    newest = (date.fromisoformat(last) - timedelta(days=pipeline.schedule.late_row_days + 1)).isoformat()
    if instance is not None:
        newest = max(newest, _last_day_of_ended_scheduled_run(pipeline, instance) or newest)
    first = partitions.get_first_partition_key()
    return (
        partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, newest)) if first <= newest else []
    )


def _last_day_of_ended_scheduled_run(pipeline: TablePipeline, instance: dg.DagsterInstance) -> str | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={SCHEDULE_NAME_TAG: pipeline.schedule_name}), limit=1)
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


def scan_for_drift(
    instance: dg.DagsterInstance,
    pipeline: TablePipeline,
    postgres: PostgresResource,
    snowflake_loader: SnowflakeLoader,
    days: list[str],
    state: ScanState,
) -> ScanOutcome:
    """One scan over `days`: both tiers, then the repairs to ask for. `state` is not changed."""
    state = state.model_copy(deep=True)
    state.scans += 1
    if not days:
        summary = "No day is older than the daily schedule's window yet."
        return ScanOutcome(ScanFindings(state=state, repairs=[], summary=summary), job_name=pipeline.job_name)
    first, last = DayWindow.for_key(days[0]), DayWindow.for_key(days[-1])
    with (
        asset_errors("Drift scan: row counts and latest updates per day"),
        ThreadPoolExecutor(2, thread_name_prefix="drift-scan") as pool,
    ):
        source = pool.submit(postgres.day_summaries, first, last)
        target = pool.submit(snowflake_loader.day_summaries, first, last)
        cheap = CheapTier(source.result(), target.result(), days)
    busy = days_in_flight(instance, [pipeline.stage_key, pipeline.snowflake_key])
    drift = pipeline.drift
    with asset_errors("Drift scan: content fingerprints"):
        evaluations = _verify_content(pipeline, state, cheap, busy, postgres, snowflake_loader)
    verified = len(evaluations)

    drifted = {**{d: why for d, why in state.content_drifted.items() if d in cheap.days}, **cheap.drifted}
    emptied = _held_back_as_lost_history(pipeline, cheap, drifted, evaluations)
    lost_history = evaluations[-1].description if emptied else None
    wanted, left_alone, errors = _repairs_due(pipeline, state, cheap, drifted, busy, evaluations)
    if lost_history:
        errors.append(f"Drift: {lost_history}")
    plan = plan_ranges(
        wanted,
        max_gap_days=drift.merge_gap_days,
        max_days_per_run=pipeline.settings.backfill_days_per_run or 31,
        max_runs=drift.runs_per_scan,
        avoid=busy | set(left_alone) | set(emptied),
    )
    due = set(wanted)
    requested = [d for d in plan.days if d in due]  # not the equal days a range reloads in passing
    for day in requested:
        state.repairs[day].attempts += 1
    repairs = [
        RepairRange(first=start, last=end, drifted_days=sum(1 for d in requested if start <= d <= end))
        for start, end in plan.ranges
    ]
    summary = (
        f"Scan {state.scans}: {len(days):,} days compared by count and latest update, {verified} by content; "
        f"{len(drifted)} differ, {len(busy & set(drifted))} of them already being loaded"
    )
    if plan.waiting:
        summary += f"; {len(plan.waiting)} wait for the next scan ({_listed(plan.waiting)})"
    if left_alone:
        summary += (
            f"; {len(left_alone)} left alone after {drift.max_repairs} failed reloads ({_listed(left_alone)})"
        )
    if emptied:
        summary += f"; {len(emptied)} emptied in PostgreSQL held back as lost history ({_listed(emptied)})"
    if repairs:
        summary += f"; reloading {_listed(requested)} in {len(repairs)} run(s)"
    details = [f"Drift: {day} differs: {drifted[day]}." for day in requested]
    return ScanOutcome(
        ScanFindings(state=state, repairs=repairs, summary="\n".join([summary, *details])),
        [
            aimed_at_load(e, latest_load_record(instance, pipeline.snowflake_key, e.partition))
            for e in evaluations
        ],
        errors,
    )


def _held_back_as_lost_history(
    pipeline: TablePipeline, cheap: CheapTier, drifted: dict[str, str], events: list[dg.AssetCheckEvaluation]
) -> list[str]:
    """The days PostgreSQL has emptied but Snowflake holds, if more than `max_emptied_days` at once: taken out
    of `drifted` (never reloaded, so Snowflake keeps them), and told once, as a failed check on the latest."""
    emptied = sorted(
        d
        for d in drifted
        if cheap.postgres.get(d, NO_ROWS).rows == 0 and cheap.snowflake.get(d, NO_ROWS).rows > 0
    )
    if len(emptied) <= pipeline.drift.max_emptied_days:
        return []
    for day in emptied:
        del drifted[day]
    rows = sum(cheap.snowflake[d].rows for d in emptied)
    events.append(
        dg.AssetCheckEvaluation(
            asset_key=pipeline.snowflake_key,
            check_name=ROW_COUNT,
            partition=emptied[-1],
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"PostgreSQL has no rows for {len(emptied)} days that Snowflake holds ({_listed(emptied)}; "
            f"{rows:,} rows), more than drift.max_emptied_days ({pipeline.drift.max_emptied_days}) at once. "
            "That looks like a source that lost its history: a restore from an old backup, a TRUNCATE, or a "
            "DSN pointed at an empty replica. None of these days is reloaded, so Snowflake keeps them. If the "
            f"deletion is real, reload them: make backfill START={emptied[0]} END={emptied[-1]}.",
            metadata={"emptied_days": len(emptied), "rows_in_snowflake": rows, "verified_by": "drift scan"},
        )
    )
    return emptied


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
    pipeline: TablePipeline,
    state: ScanState,
    cheap: CheapTier,
    drifted: dict[str, str],
    busy: set[str],
    events: list[dg.AssetCheckEvaluation],
) -> tuple[list[str], list[str], list[str]]:
    """(days to reload now, days given up on, errors to log). A day gets `drift.max_repairs` reloads in a
    row while its PostgreSQL side stays the same; then it is reported once, into `events`, and left alone."""
    for day in list(state.repairs):
        if day not in drifted:
            del state.repairs[day]  # equal again: repaired, or changed back
    wanted, left_alone, errors = [], [], []
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
            errors.append(
                f"Drift: {day} still differs after {repair.attempts} reloads in a row ({why}); left alone "
                "until it changes in PostgreSQL."
            )
    return wanted, left_alone, errors


class DriftScanConfig(dg.Config):
    state: str = ""  # the sensor's cursor (ScanState as JSON); empty for a first scan


def build_drift_scan_job(pipeline: TablePipeline) -> dg.JobDefinition:
    spec = pipeline.spec

    @dg.op(
        name=pipeline.drift_scan_op_name,
        pool=POSTGRES_POOL,
        description=f"Compares every scanned day of {spec.source_name} in PostgreSQL and Snowflake "
        "(docs/drift.md) and publishes the repairs as an observation of the source.",
        tags={"dagster/kind/postgres": "", "dagster/kind/snowflake": ""},
    )
    def scan(
        context: dg.OpExecutionContext,
        config: DriftScanConfig,
        postgres: PostgresResource,
        snowflake_loader: SnowflakeLoader,
    ) -> None:
        allowed, why = budget_left(context.instance, pipeline.settings.drift_budget_seconds_per_hour)
        if not allowed:  # another table's scan spent it since the sensor looked
            context.log.info(why)
            return
        started = time.monotonic()
        try:
            outcome = scan_for_drift(
                context.instance,
                pipeline,
                postgres.for_table(spec),
                snowflake_loader.for_table(spec),
                scanned_days(pipeline, context.instance),
                ScanState.from_cursor(config.state or None),
            )
        finally:
            seconds = round(time.monotonic() - started, 3)
            context.instance.add_run_tags(context.run_id, {SCAN_SECONDS_TAG: str(seconds)})
        for evaluation in outcome.evaluations:
            context.log_event(evaluation)
        for error in outcome.errors:
            context.log.error(error)
        context.log.info(outcome.findings.summary)
        with asset_errors("Reading the source's columns"):
            columns = postgres.for_table(spec).column_schema()
        context.log_event(
            dg.AssetObservation(
                asset_key=pipeline.source_key,
                description=outcome.findings.summary.splitlines()[0],
                metadata={
                    "dagster/column_schema": columns,
                    FINDINGS_KEY: dg.MetadataValue.json(outcome.findings.model_dump(mode="json")),
                    "scan_seconds": dg.MetadataValue.float(seconds),
                    "days_to_reload": dg.MetadataValue.int(
                        sum(r.drifted_days for r in outcome.findings.repairs)
                    ),
                },
            )
        )

    @dg.job(
        name=pipeline.drift_scan_job_name,
        description=f"The drift scan of {spec.source_name}, launched by {pipeline.drift_sensor_name}.",
        tags={TRIGGER_TAG: SCAN_TRIGGER, TABLE_TAG: pipeline.name},
    )
    def drift_scan_job():
        scan()

    return drift_scan_job
