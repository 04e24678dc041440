"""The drift sensor in the real Dagster daemon: old days changed in PostgreSQL converge in Snowflake.

Days far older than the daily schedule's window are loaded, then changed in the four ways drift happens.
The code server and the daemon run as real processes on an instance stored in PostgreSQL, with a 5 s scan
interval; the sensor is started with `dagster sensor start --start-all`, as the README tells a local user.
A sensor tick gets 4 s here (Dagster's default is 60 s), and the first scan is held up longer than that by a
lock on the table: the scan runs as a run, so it finishes, and no tick fails.
"""

import os
import threading
import time
from datetime import date, timedelta

import dagster as dg
import psycopg
import pytest

from datavault_analytics.drift.plan import ScanState
from datavault_analytics.names import CONTENT_HASH, SCAN_SECONDS_TAG
from datavault_analytics_tests.dagster_processes import (
    daemon_command,
    local_dagster,
    settled,
    wait_for,
)
from datavault_analytics_tests.pipeline_harness import Pipeline, loads_per_day
from datavault_analytics_tests.records import DRIFT_SENSOR, SNOWFLAKE_KEY, STAGE_KEY

DAYS = [(date(2025, 5, 1) + timedelta(days=n)).isoformat() for n in range(6)]
ERASED, BUMPED, SILENT, BACKDATED = DAYS[0], DAYS[1], DAYS[3], DAYS[5]
HASH_DAYS_PER_SCAN = 2
TICK_SECONDS = 4  # the sensor tick's time limit here (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS)
HELD_SECONDS = 8  # how long the first scan run waits for the table's lock, once started
SCAN = {"datavault/trigger": "drift-scan", "datavault/table": "records"}


def hold_the_table_during_the_first_scan(dsn: str) -> threading.Thread:
    """Locks `records` until the first scan's statement has waited for it HELD_SECONDS (at most 100 s)."""
    locked = threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn) as conn, psycopg.connect(dsn, autocommit=True) as watcher:
            conn.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
            locked.set()
            deadline, waiting_since = time.monotonic() + 100, None
            while time.monotonic() < deadline:
                blocked = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND application_name LIKE %s",
                    ("%drift scan%",),
                ).fetchone()[0]
                if waiting_since is None and blocked:
                    waiting_since = time.monotonic()
                if waiting_since is not None and time.monotonic() - waiting_since >= HELD_SECONDS:
                    break
                time.sleep(0.2)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(30)
    return thread


@pytest.fixture(scope="module")
def drifted(pg_server, s3_endpoint, snowflake_server, tmp_path_factory):
    with local_dagster(pg_server, tmp_path_factory.mktemp("drift")) as dagster:
        pipeline = Pipeline(pg_server, s3_endpoint, snowflake_server, dagster.patch)
        pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=25)
        pipeline.materialize(DAYS[0], DAYS[-1])

        pipeline.drift(ERASED, BUMPED, SILENT, BACKDATED)

        dagster.setenv(
            {
                "DATAVAULT_ENV": "local",  # the sensor is off by default: started below, as a local user does
                "DATAVAULT_DRIFT_SCAN_SECONDS": "5",
                "DATAVAULT_DRIFT_HASH_DAYS_PER_SCAN": str(HASH_DAYS_PER_SCAN),
                "DATAVAULT_DRIFT_MERGE_GAP_DAYS": "0",  # so an unchanged day is never reloaded
                "DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR": "100000",
                "DATAVAULT_PG_LOCK_TIMEOUT_SECONDS": "120",  # the first scan waits for the held lock
                "DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS": str(TICK_SECONDS),
            }
        )
        instance = dagster.open_instance()
        dagster.serve_code_location("dv")
        dagster.start("daemon", daemon_command())
        holder = hold_the_table_during_the_first_scan(pipeline.dsn)
        dagster.start_sensors()
        holder.join(120)
        yield pipeline, instance, os.environ["DAGSTER_PG_URL"].replace("+psycopg2", ""), dagster.logs


def scan_state(instance: dg.DagsterInstance) -> ScanState:
    [state] = [s for s in instance.all_instigator_state() if s.name == DRIFT_SENSOR.name]
    data = state.instigator_data
    return ScanState.from_cursor(data.cursor if data else None)


def event_counts(dagster_dsn: str) -> dict[str, int]:
    """Dagster's event log, counted by event type, straight from its table: records' runs and the instance's
    own events. retrieval_log's drift sensor scans at the same interval (DATAVAULT_DRIFT_SCAN_SECONDS is the
    deployment's), and its scans are not the ones counted here."""
    with psycopg.connect(dagster_dsn) as conn:
        rows = conn.execute(
            "SELECT e.dagster_event_type, count(*) FROM event_logs AS e LEFT JOIN runs AS r ON r.run_id = e.run_id "
            "WHERE r.pipeline_name IS NULL OR r.pipeline_name NOT LIKE %s GROUP BY 1",
            ("%retrieval_log%",),
        ).fetchall()
    return {kind or "log": n for kind, n in rows}


def test_the_daemon_converges_every_changed_day_by_content_loading_each_once_then_loads_nothing(drifted):
    pipeline, instance, dagster_dsn, logs = drifted

    def converged():
        if not settled(instance) or not all(day.matches for day in pipeline.reconcile(DAYS)):
            return False
        state = scan_state(instance)
        # Converged once the silently rewritten day has been reloaded and verified again by content.
        return SILENT in loads_per_day(instance) and not state.repairs and not state.content_drifted

    wait_for(converged, "every drifted day to be reloaded and verified", 420, logs)
    changed = {ERASED, BUMPED, SILENT, BACKDATED}
    assert loads_per_day(instance) == dict.fromkeys(sorted(changed), 1)
    assert loads_per_day(instance, STAGE_KEY) == dict.fromkeys(sorted(changed), 1)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"datavault/trigger": "drift"}))
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

    # The UI's check partition view counts the scan's verifications: Dagster's partition status (what the
    # view shows) takes each day's latest evaluation if it targets the day's latest load. The silently
    # rewritten day was last verified by a scan run, after its reload; every day shows as passed.
    scan_runs = {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(tags=SCAN))}
    infos = {
        i.partition_key: i
        for i in instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(SNOWFLAKE_KEY, CONTENT_HASH)], partition_keys=DAYS
        )
    }
    assert {d: (i.latest_execution_status.value, i.is_current) for d, i in infos.items()} == dict.fromkeys(
        DAYS, ("SUCCEEDED", True)
    )
    assert infos[SILENT].latest_planned_run_id in scan_runs

    # The first scan took longer than a sensor tick may, and worked: it was a run, and no tick failed.
    first_scan = instance.get_runs(filters=dg.RunsFilter(tags=SCAN))[-1]
    assert first_scan.status == dg.DagsterRunStatus.SUCCESS
    assert float(first_scan.tags[SCAN_SECONDS_TAG]) > TICK_SECONDS
    [sensor] = [s for s in instance.all_instigator_state() if s.name == DRIFT_SENSOR.name]
    ticks = instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id)
    assert ticks and not [t.error for t in ticks if t.status.value == "FAILURE"]

    # Quiet from now on: scans go on, each a run of a fixed number of events whatever the history's
    # length (its content verifications among them), and load nothing.
    before_events, before_scans = event_counts(dagster_dsn), scan_state(instance).scans
    wait_for(lambda: scan_state(instance).scans >= before_scans + 4, "four more scans", 240, logs)
    after_events, scans = event_counts(dagster_dsn), scan_state(instance).scans - before_scans
    grown = {k: after_events.get(k, 0) - before_events.get(k, 0) for k in after_events}
    grown = {k: n for k, n in grown.items() if n}
    assert not {"ASSET_MATERIALIZATION", "ASSET_MATERIALIZATION_PLANNED"} & set(grown), grown
    # A scan's run ends before the sensor takes its findings: the counts are one scan either way.
    assert scans - 1 <= grown.get("ASSET_OBSERVATION", 0) <= scans + 2, grown  # each scan's findings
    assert scans - 1 <= grown.get("ASSET_CHECK_EVALUATION", 0) <= HASH_DAYS_PER_SCAN * (scans + 2), grown
    assert sum(grown.values()) <= 40 * (scans + 2), grown
    assert loads_per_day(instance) == dict.fromkeys(sorted(changed), 1)
    assert loads_per_day(instance, STAGE_KEY) == dict.fromkeys(sorted(changed), 1)
    assert all(day.matches for day in pipeline.reconcile(DAYS))
