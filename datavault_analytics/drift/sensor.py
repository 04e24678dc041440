"""A table's drift sensor: it decides when the table's scan runs, and launches the repairs a scan asks for.

It only decides; it reads Dagster's instance and never DataVault's databases (scan.py reads them, in a run).
"""

import time
import uuid

import dagster as dg

from datavault_analytics.drift.budget import budget_left
from datavault_analytics.drift.findings import published_findings, repair_requests
from datavault_analytics.drift.plan import ScanState, days_in_flight
from datavault_analytics.names import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    RUN_KEY_TAG,
    SCAN_TRIGGER,
    TABLE_TAG,
    TRIGGER_TAG,
)
from datavault_analytics.table.pipeline import TablePipeline

LOST_SCAN_SECONDS = 600  # a requested scan run that never appeared is given up after this long


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
            filters=dg.RunsFilter(tags={RUN_KEY_TAG: state.scan_run_key, TRIGGER_TAG: SCAN_TRIGGER}),
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
            findings = published_findings(context.instance, pipeline, run.run_id) if run.is_success else None
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
        allowed, why = budget_left(context.instance, pipeline.settings.drift_budget_seconds_per_hour)
        if allowed:
            state.scan_run_key = f"drift-scan-{uuid.uuid4().hex[:12]}"
            state.scan_requested_at = state.last_scan_at = now
            requests.append(
                dg.RunRequest(
                    job_name=scan_job_name,
                    run_key=state.scan_run_key,
                    run_config={
                        "ops": {pipeline.drift_scan_op_name: {"config": {"state": state.model_dump_json()}}}
                    },
                    tags={TRIGGER_TAG: SCAN_TRIGGER, TABLE_TAG: pipeline.name},
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
        if pipeline.runs_by_default
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
