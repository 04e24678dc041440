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
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from pydantic import BaseModel

from datavault_analytics.checks import CONTENT_HASH, aimed_at_load
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
from datavault_analytics.resources.postgres import POSTGRES_POOL, PostgresResource
from datavault_analytics.resources.snowflake import SnowflakeLoader
from datavault_analytics.stage_retention import latest_load_record
from datavault_analytics.table_pipeline import TablePipeline

LISTED_DAYS = 20  # a log line names at most this many days, then counts the rest
TRIGGER_TAG = "datavault/trigger"
SCAN_TRIGGER = "drift-scan"
SCAN_SECONDS_TAG = "datavault/scan_seconds"  # on a finished scan run: the seconds its statements took
FINDINGS_KEY = "drift_scan"  # the scan's observation metadata: the repairs and the sensor's next state
LOST_SCAN_SECONDS = 600  # a requested scan run that never appeared is given up after this long


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


class RepairRange(BaseModel):
    first: str
    last: str
    drifted_days: int  # how many of its days differ (the others are equal days reloaded in passing)


class ScanFindings(BaseModel):
    """What a scan run publishes for the sensor: the repairs to launch and the state for the next scan."""

    state: ScanState
    repairs: list[RepairRange]
    summary: str


@dataclass
class ScanOutcome:
    findings: ScanFindings
    evaluations: list[dg.AssetCheckEvaluation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # days given up on, for the run's log
    job_name: str | None = None

    @property
    def cursor(self) -> str:
        return self.findings.state.model_dump_json()

    @property
    def run_requests(self) -> list[dg.RunRequest]:
        return repair_requests(self.findings, self.job_name)


def repair_requests(findings: ScanFindings, job_name: str | None = None) -> list[dg.RunRequest]:
    scan = findings.state.scans
    return [
        dg.RunRequest(
            job_name=job_name,
            run_key=f"drift-{scan}-{r.first}-{r.last}",
            tags={
                RANGE_START_TAG: r.first,
                RANGE_END_TAG: r.last,
                TRIGGER_TAG: "drift",
                "datavault/drifted_days": str(r.drifted_days),
            },
        )
        for r in findings.repairs
    ]


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
    wanted, left_alone, errors = _repairs_due(pipeline, state, cheap, drifted, busy, evaluations)
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


# -- the budget ------------------------------------------------------------------------------------


def budget_spent(instance: dg.DagsterInstance, now: float | None = None) -> float:
    """Seconds the scan runs of every table took in the past hour (each run tags its own when it ends)."""
    since = datetime.fromtimestamp((now or time.time()) - 3600, tz=UTC)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: SCAN_TRIGGER}, created_after=since))
    return sum(float(r.tags.get(SCAN_SECONDS_TAG, 0) or 0) for r in runs)


def budget_left(instance: dg.DagsterInstance) -> tuple[bool, str]:
    budget = SETTINGS.drift_budget_seconds_per_hour
    spent = budget_spent(instance)
    if spent < budget:
        return True, ""
    return False, (
        f"The drift budget is spent: the scans of every table took {spent:,.1f} s of DataVault's database in "
        f"the past hour, of {budget:,.1f} s (DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR); the scan waits."
    )


# -- the scan job ----------------------------------------------------------------------------------


class DriftScanConfig(dg.Config):
    state: str = ""  # the sensor's cursor (ScanState as JSON); empty for a first scan


def build_drift_scan_job(pipeline: TablePipeline) -> dg.JobDefinition:
    spec = pipeline.spec

    @dg.op(
        name=f"scan_{pipeline.name}_for_drift",
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
        allowed, why = budget_left(context.instance)
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
        context.log_event(
            dg.AssetObservation(
                asset_key=pipeline.source_key,
                description=outcome.findings.summary.splitlines()[0],
                metadata={
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
        tags={TRIGGER_TAG: SCAN_TRIGGER, "datavault/table": pipeline.name},
    )
    def drift_scan_job():
        scan()

    return drift_scan_job


def _findings(instance: dg.DagsterInstance, pipeline: TablePipeline, run_id: str) -> ScanFindings | None:
    """The findings a finished scan run published (None: it published none, e.g. the budget was spent)."""
    records = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=pipeline.source_key), limit=50)
    for record in records.records:
        if record.run_id == run_id and record.asset_observation is not None:
            value = record.asset_observation.metadata.get(FINDINGS_KEY)
            if value is not None:
                return ScanFindings.model_validate(value.value)
    return None


# -- the sensor ------------------------------------------------------------------------------------


def decide(
    context: dg.SensorEvaluationContext, pipeline: TablePipeline, scan_job_name: str
) -> dg.SensorResult:
    """One tick: take a finished scan's findings, launch its repairs, start the next scan when it is due."""
    state = ScanState.from_cursor(context.cursor)
    now = time.time()
    requests: list[dg.RunRequest] = []
    notes: list[str] = []
    if state.scan_run_key:
        runs = context.instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/run_key": state.scan_run_key, TRIGGER_TAG: SCAN_TRIGGER}),
            limit=1,
        )
        if not runs:
            if now - (state.scan_requested_at or now) < LOST_SCAN_SECONDS:
                return dg.SensorResult(
                    cursor=context.cursor,
                    skip_reason=f"Waiting for the scan run {state.scan_run_key} to be launched.",
                )
            notes.append(f"The scan run {state.scan_run_key} was never launched; starting another.")
            state.scan_run_key = None
        elif not runs[0].is_finished:
            return dg.SensorResult(
                cursor=context.cursor, skip_reason=f"The scan run {runs[0].run_id} is in progress."
            )
        else:
            run = runs[0]
            findings = _findings(context.instance, pipeline, run.run_id) if run.is_success else None
            if findings is not None:
                bookkeeping = state
                state = findings.state
                state.last_scan_at = bookkeeping.last_scan_at
                # A run started since the scan may load some of these days: those ranges wait, uncounted.
                busy = days_in_flight(context.instance, [pipeline.stage_key, pipeline.snowflake_key])
                for request in repair_requests(findings, pipeline.job_name):
                    if not _overlaps(request, busy):
                        requests.append(request)
                        continue
                    first, last = request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]
                    for day, repair in state.repairs.items():
                        if first <= day <= last and repair.attempts > 0:
                            repair.attempts -= 1
                notes.append(findings.summary.splitlines()[0])
                context.log.info(findings.summary)
            elif run.is_success:
                notes.append(f"The scan run {run.run_id} found nothing to report (budget spent).")
            else:
                notes.append(
                    f"The scan run {run.run_id} ended {run.status.value}; the next scan starts when due."
                )
                context.log.warning(notes[-1])
            state.scan_run_key = None

    due = state.last_scan_at is None or now - state.last_scan_at >= pipeline.drift.scan_seconds
    if due:
        allowed, why = budget_left(context.instance)
        if allowed:
            state.scan_run_key = f"drift-scan-{uuid.uuid4().hex[:12]}"
            state.scan_requested_at = state.last_scan_at = now
            requests.append(
                dg.RunRequest(
                    job_name=scan_job_name,
                    run_key=state.scan_run_key,
                    run_config={
                        "ops": {
                            f"scan_{pipeline.name}_for_drift": {"config": {"state": state.model_dump_json()}}
                        }
                    },
                    tags={TRIGGER_TAG: SCAN_TRIGGER, "datavault/table": pipeline.name},
                )
            )
        else:
            notes.append(why)
    cursor = state.model_dump_json()
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(cursor=cursor, skip_reason="; ".join(notes) or "The next scan is not due yet.")


def _overlaps(request: dg.RunRequest, busy: set[str]) -> bool:
    first, last = request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]
    return any(first <= day <= last for day in busy)


def build_drift_sensor(pipeline: TablePipeline, job, scan_job: dg.JobDefinition) -> dg.SensorDefinition:
    drift, spec = pipeline.drift, pipeline.spec
    updated = f"and latest {spec.updated_at_column} " if spec.updated_at_column else ""

    @dg.sensor(
        name=pipeline.drift_sensor_name,
        jobs=[job, scan_job],
        # Often enough to launch a finished scan's repairs promptly; a scan starts every scan_seconds.
        minimum_interval_seconds=min(drift.scan_seconds, 30),
        # On by default in prod; locally, `dagster sensor start --start-all`.
        default_status=dg.DefaultSensorStatus.RUNNING
        if SETTINGS.environment == "prod"
        else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Every {drift.scan_seconds} s, launches {scan_job.name}, which compares every day of "
            f"{spec.source_name} older than the daily schedule's window in PostgreSQL and Snowflake: row count "
            f"{updated}for every day, the full content fingerprint of {drift.hash_days_per_scan} days per scan "
            "in a round over history. Then reloads the days that differ in a few range runs; a day that still "
            f"differs after {drift.max_repairs} reloads in a row is reported and left alone. Scans share "
            "DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR with every table's."
        ),
    )
    def drift_sensor(context: dg.SensorEvaluationContext):
        return decide(context, pipeline, scan_job.name)

    return drift_sensor
