"""The alert sensor in the real Dagster daemon, on an instance stored in PostgreSQL: the freshness daemon's
missed deadline and failed checks reach a local receiver once each, after the receiver was down for a tick."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from datavault_analytics.names import ALERT_SENSOR_NAME
from datavault_analytics_tests import records
from datavault_analytics_tests.dagster_processes import (
    daemon_command,
    local_dagster,
    report_old_load,
    wait_for,
)
from datavault_analytics_tests.pipeline_harness import ALL_ASSETS, Pipeline

DAY = "2026-10-01"


def sensor_ticks(instance: dg.DagsterInstance) -> int:
    [state] = [s for s in instance.all_instigator_state() if s.name == ALERT_SENSOR_NAME]
    return len(instance.get_ticks(state.instigator_origin_id, state.selector_id))


def sensor_cursor(instance: dg.DagsterInstance) -> str | None:
    states = [s for s in instance.all_instigator_state() if s.name == ALERT_SENSOR_NAME]
    return states[0].instigator_data.cursor if states and states[0].instigator_data else None


def test_a_missed_deadline_and_failed_checks_reach_the_receiver_once_each_through_the_daemon(
    pg_server, s3_endpoint, snowflake_server, tmp_path, receiver
):
    with local_dagster(pg_server, tmp_path) as dagster:
        pipeline = Pipeline(pg_server, s3_endpoint, snowflake_server, dagster.patch)
        pipeline.seed([date.fromisoformat(DAY)], rows_per_day=20)
        dagster.setenv(
            {
                "DATAVAULT_ENV": "local",
                "DATAVAULT_ALERT_WEBHOOK_URL": receiver.url,
                "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
            }
        )
        instance = dagster.open_instance()
        dagster.serve_code_location("dv")
        dagster.start("daemon", daemon_command())
        dagster.start_sensors(ALERT_SENSOR_NAME)
        logs = dagster.logs
        wait_for(lambda: sensor_cursor(instance), "the alert sensor's first tick", 120, logs)

        # The table's last load is three days old: the freshness daemon fails it, and that is told once.
        report_old_load(instance, records.SNOWFLAKE_KEY, DAY, days_ago=3)
        wait_for(lambda: receiver.bodies, "the freshness daemon's missed deadline, told", 180, logs)
        yesterday = str(datetime.now(UTC).date() - timedelta(days=1))
        assert receiver.causes() == [("freshness missed", "records", yesterday)]
        receiver.bodies.clear()

        # a day loaded, a row lost in Snowflake, the checks run: three checks fail
        tags = {"dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": DAY}
        assert dg.materialize(
            [*ALL_ASSETS, records.CHECKS],
            resources=pipeline.resources,
            tags=tags,
            instance=instance,
            selection=dg.AssetSelection.assets(records.STAGE_KEY, records.SNOWFLAKE_KEY),
        ).success
        pipeline.snowflake('DELETE FROM "RECORDS" WHERE "ID" = (SELECT MIN("ID") FROM "RECORDS")')
        receiver.down = True
        assert dg.materialize(
            [*ALL_ASSETS, records.CHECKS],
            resources=pipeline.resources,
            tags=tags,
            instance=instance,
            selection=dg.AssetSelection.checks_for_assets(records.SNOWFLAKE_KEY),
        ).success
        wait_for(lambda: receiver.refused, "a tick while the receiver is down", 120, logs)
        assert receiver.bodies == []
        receiver.down = False
        wait_for(lambda: len(receiver.bodies) >= 3, "the three alerts", 120, logs)
        ticks = sensor_ticks(instance)
        wait_for(lambda: sensor_ticks(instance) > ticks + 1, "two more ticks", 120, logs)
        assert receiver.causes() == [("check failed", "records", DAY)] * 3
        checks = sorted(b["datavault"]["details"]["check"] for b in receiver.bodies)
        assert checks == [
            "content_hash_matches_postgres",
            "row_count_matches_postgres",
            "staged_manifest_matches_load",
        ]
        daemon_log = logs[1].read_text(errors="replace")
        assert "secret-token" not in daemon_log
