"""A table's daily schedule: shortly after midnight UTC, load yesterday, and again the days before it.

A row can be committed after its day ended (ingest goes through a Redis stream), so each run reloads the
`late_row_days` days before yesterday too, as one range run; the drift sensor (sensors.py) covers older days.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from datavault_analytics.names import (
    LATE_ROW_DAYS_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SCHEDULE_TRIGGER,
    TRIGGER_TAG,
)
from datavault_analytics.table.pipeline import TablePipeline


def daily_run_request(
    scheduled_at: datetime, first_day: date, late_row_days: int
) -> dg.RunRequest | dg.SkipReason:
    """The run for the tick at `scheduled_at`: yesterday (UTC) and the `late_row_days` days before it."""
    yesterday = scheduled_at.astimezone(UTC).date() - timedelta(days=1)
    if yesterday < first_day:
        return dg.SkipReason(f"{yesterday} is before the first partition ({first_day}).")
    first = max(first_day, yesterday - timedelta(days=max(0, late_row_days)))
    return dg.RunRequest(
        # Names the day; the daemon never launches a tick twice (a restart re-evaluating it is deduplicated).
        run_key=f"daily-{yesterday.isoformat()}",
        tags={
            RANGE_START_TAG: first.isoformat(),
            RANGE_END_TAG: yesterday.isoformat(),
            TRIGGER_TAG: SCHEDULE_TRIGGER,
            LATE_ROW_DAYS_TAG: str(late_row_days),
        },
    )


def build_table_schedule(pipeline: TablePipeline, job) -> dg.ScheduleDefinition:
    first_day = date.fromisoformat(pipeline.partitions.start.strftime("%Y-%m-%d"))

    @dg.schedule(
        name=pipeline.schedule_name,
        cron_schedule=pipeline.schedule.cron,
        execution_timezone="UTC",
        job=job,
        # Running by default in prod; started from the UI locally.
        default_status=dg.DefaultScheduleStatus.RUNNING
        if pipeline.runs_by_default
        else dg.DefaultScheduleStatus.STOPPED,
        description=f"Loads yesterday (UTC) of {pipeline.spec.source_name} and reloads the "
        f"{pipeline.schedule.late_row_days} days before it, for rows committed late.",
    )
    def daily(context: dg.ScheduleEvaluationContext):
        return daily_run_request(context.scheduled_execution_time, first_day, pipeline.schedule.late_row_days)

    return daily
