"""The daily schedule: shortly after midnight UTC, load yesterday, and again the days before it.

Late rows: DataVault's ingest goes through a Redis stream, so a row can be committed after its day ended.
Each daily run therefore re-materializes the previous `DATAVAULT_LATE_ROW_DAYS` days (default 2) with
yesterday, as one range run: every day in it is replaced in one Snowflake transaction (DELETE + COPY), so
a late row lands once and nothing is ever loaded twice. A row later than that window needs a backfill.

Settings (environment variables, read when the code location loads):
  DATAVAULT_SCHEDULE_CRON   cron, UTC, default "15 0 * * *" (00:15 every day)
  DATAVAULT_LATE_ROW_DAYS   how many days before yesterday each run reloads, default 2
The schedule is running by default when DATAVAULT_ENV=prod, and stopped (start it in the UI) locally.
"""

import os
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from datavault_analytics.environment import get_environment
from datavault_analytics.jobs import records_daily_job
from datavault_analytics.partitions import daily_partitions

SCHEDULE_CRON = os.getenv("DATAVAULT_SCHEDULE_CRON", "15 0 * * *")
LATE_ROW_DAYS = int(os.getenv("DATAVAULT_LATE_ROW_DAYS", "2"))
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def daily_run_request(scheduled_at: datetime, late_row_days: int = LATE_ROW_DAYS) -> dg.RunRequest | dg.SkipReason:
    """The run for the tick at `scheduled_at`: yesterday (UTC) and the `late_row_days` days before it."""
    yesterday = scheduled_at.astimezone(UTC).date() - timedelta(days=1)
    first_day = date.fromisoformat(daily_partitions.start.strftime("%Y-%m-%d"))
    if yesterday < first_day:
        return dg.SkipReason(f"{yesterday} is before the first partition ({first_day}).")
    first = max(first_day, yesterday - timedelta(days=max(0, late_row_days)))
    return dg.RunRequest(
        # Names the day; the daemon never launches a tick twice (a restart re-evaluating it is deduplicated).
        run_key=f"daily-{yesterday.isoformat()}",
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: yesterday.isoformat(),
              "datavault/trigger": "schedule", "datavault/late_row_days": str(late_row_days)},
    )


@dg.schedule(
    name="datavault_records_daily_schedule",
    cron_schedule=SCHEDULE_CRON,
    execution_timezone="UTC",
    job=records_daily_job,
    default_status=dg.DefaultScheduleStatus.RUNNING if get_environment() == "prod" else dg.DefaultScheduleStatus.STOPPED,
    description=f"Loads yesterday (UTC) and reloads the {LATE_ROW_DAYS} days before it, for rows committed late.",
)
def records_daily_schedule(context: dg.ScheduleEvaluationContext):
    return daily_run_request(context.scheduled_execution_time)
