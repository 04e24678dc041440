"""The daily schedule: which days each tick asks for, late rows, and transient failures.

The daemon itself evaluating a tick and launching the run is in test_daemon_and_webserver.py; here the
schedule's run requests are executed in process against the real servers.
"""

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from datavault_analytics.names import RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.pipeline.schedule import daily_run_request
from datavault_analytics.postgres.io_manager import PostgresSourceIOManager
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics_tests.records import PARTITIONS
from datavault_analytics_tests.records import SCHEDULE as records_daily_schedule


def tick(day: date, hour: int = 0, minute: int = 15) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def test_the_tick_after_midnight_asks_for_yesterday_and_the_two_days_before_it():
    context = dg.build_schedule_context(scheduled_execution_time=tick(date(2026, 11, 24)))
    request = records_daily_schedule.evaluate_tick(context).run_requests[0]

    assert request.tags[RANGE_START_TAG] == "2026-11-21"
    assert request.tags[RANGE_END_TAG] == "2026-11-23"
    assert request.run_key == "daily-2026-11-23"
    assert records_daily_schedule.cron_schedule == "15 0 * * *"
    assert records_daily_schedule.execution_timezone == "UTC"
    assert records_daily_schedule.job_name == "datavault_records_daily"


def test_the_range_never_starts_before_the_first_partition():
    first = date.fromisoformat(PARTITIONS.start.strftime("%Y-%m-%d"))

    request = daily_run_request(tick(first + timedelta(days=2)), first, late_row_days=5)
    skipped = daily_run_request(tick(first), first, late_row_days=2)

    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        str(first),
        str(first + timedelta(days=1)),
    )
    assert isinstance(skipped, dg.SkipReason)


def test_time_and_late_days_are_configurable_and_prod_runs_the_schedule_by_default(tmp_path):
    probe = (
        "import json; import dagster as dg; from datavault_analytics.components.datavault_table import "
        "build_table_definitions as b, configured_table as c; [s] = b(c('records')).schedules; "
        "from datetime import datetime, UTC; q = s.evaluate_tick(dg.build_schedule_context(scheduled_execution_time="
        "datetime(2026, 11, 24, 1, 30, tzinfo=UTC))).run_requests[0]; print(json.dumps([s.cron_schedule, "
        "s.default_status.value, q.tags['dagster/asset_partition_range_start']]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DAGSTER_"))}

    def load(**env) -> list:
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env={**clean, **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    assert load(DATAVAULT_ENV="prod", DATAVAULT_SCHEDULE_CRON="30 1 * * *", DATAVAULT_LATE_ROW_DAYS="5") == [
        "30 1 * * *",
        "RUNNING",
        "2026-11-18",
    ]
    assert load(DATAVAULT_ENV="local") == ["15 0 * * *", "STOPPED", "2026-11-21"]
    # one switch for every table's schedule and sensor: the local stack run like production, or prod held
    assert load(DATAVAULT_ENV="local", DATAVAULT_AUTOMATION="on")[1] == "RUNNING"
    assert load(DATAVAULT_ENV="prod", DATAVAULT_AUTOMATION="off")[1] == "STOPPED"


def test_a_row_committed_after_its_day_was_loaded_lands_with_the_next_daily_run_exactly_once(pipeline):
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(4)]
    pipeline.seed(days, rows_per_day=50)

    def run_tick(day: date) -> None:
        request = records_daily_schedule.evaluate_tick(
            dg.build_schedule_context(scheduled_execution_time=tick(day))
        ).run_requests[0]
        assert pipeline.materialize(request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]).success

    run_tick(date(2026, 11, 4))  # loads 11-01 .. 11-03
    late = str(uuid.uuid4())
    pipeline.insert(
        late, datetime(2026, 11, 2, 23, 59, tzinfo=UTC), b"committed late through the Redis stream"
    )
    assert pipeline.snowflake('SELECT COUNT(*) FROM "RECORDS" WHERE "ID" = %s', (late,)) == [(0,)]

    run_tick(date(2026, 11, 5))  # loads 11-02 .. 11-04, picking up the late row
    run_tick(date(2026, 11, 5))  # the same tick again changes nothing

    assert pipeline.snowflake('SELECT COUNT(*) FROM "RECORDS" WHERE "ID" = %s', (late,)) == [(1,)]
    assert pipeline.snowflake('SELECT COUNT(*), COUNT(DISTINCT "ID") FROM "RECORDS"') == [(201, 201)]
    assert all(d.matches for d in pipeline.reconcile([str(d) for d in days]))


def test_an_unreachable_postgres_is_retried_with_backoff_then_fails_with_a_clear_error(pipeline, pg_server):
    from datavault_analytics.local_stack.processes import free_port

    secret = "pg-secret-" + uuid.uuid4().hex[:6]
    unreachable = PostgresResource(dsn=f"postgresql://reader:{secret}@127.0.0.1:{free_port()}/datavault")
    pipeline.with_resources(
        postgres=unreachable, postgres_io_manager=PostgresSourceIOManager(postgres=unreachable)
    )

    result = pipeline.materialize("2026-11-01", raise_on_error=False)

    assert not result.success
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == int(os.environ["DATAVAULT_MAX_RETRIES"])
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error
    assert error.message.startswith("Exceeded max_retries of")
    assert "PostgresSourceError: Cannot connect to PostgreSQL" in error.cause.message
    assert "Connection refused" in error.cause.message
    assert secret not in error.to_string()
