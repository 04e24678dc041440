"""The drift sensor in the real Dagster daemon: old days changed in PostgreSQL converge in Snowflake.

Days far older than the daily schedule's window are loaded, then changed in the four ways drift happens.
The code server and the daemon run as real processes on an instance stored in PostgreSQL, with a 5 s scan
interval; the sensor is started with `dagster sensor start --start-all`, as the README tells a local user.
"""

import os
import subprocess
from datetime import date, timedelta

import dagster as dg
import psycopg
import pytest

from datavault_analytics.drift import ScanState
from datavault_analytics_tests.dagster_processes import (
    BIN,
    daemon_command,
    instance_in_postgres,
    serve_code_location,
    settled,
    start,
    stop,
    wait_for,
)
from datavault_analytics_tests.pipeline_harness import Pipeline, loads_per_day
from datavault_analytics_tests.records import DRIFT_SENSOR, STAGE_KEY

DAYS = [(date(2025, 5, 1) + timedelta(days=n)).isoformat() for n in range(6)]
ERASED, BUMPED, SILENT, BACKDATED = DAYS[0], DAYS[1], DAYS[3], DAYS[5]
HASH_DAYS_PER_SCAN = 2


@pytest.fixture(scope="module")
def drifted(pg_server, s3_endpoint, snowflake_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift")
    patch = pytest.MonkeyPatch()
    processes: list[subprocess.Popen] = []
    instance = None
    try:
        pipeline = Pipeline(pg_server, s3_endpoint, snowflake_server, patch)
        pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=25)
        pipeline.materialize(DAYS[0], DAYS[-1])

        pipeline.drift(ERASED, BUMPED, SILENT, BACKDATED)

        for name, value in {
            **instance_in_postgres(pg_server, folder),
            "DATAVAULT_ENV": "local",  # the sensor is off by default: started below, as a local user does
            "DATAVAULT_DRIFT_SCAN_SECONDS": "5",
            "DATAVAULT_DRIFT_HASH_DAYS_PER_SCAN": str(HASH_DAYS_PER_SCAN),
            "DATAVAULT_DRIFT_MERGE_GAP_DAYS": "0",  # so an unchanged day is never reloaded
            "PYTHONUNBUFFERED": "1",
        }.items():
            patch.setenv(name, value)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        instance = dg.DagsterInstance.get()
        logs = [folder / "code-server.log", folder / "daemon.log"]
        processes.append(serve_code_location(folder, env, logs[0], "dv"))
        processes.append(start(daemon_command(), logs[1], env, folder))
        started = subprocess.run(
            [str(BIN / "dagster"), "sensor", "start", "--start-all", "-w", "workspace.yaml"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield pipeline, instance, os.environ["DAGSTER_PG_URL"].replace("+psycopg2", ""), logs
    finally:
        for process in reversed(processes):
            stop(process)
        if instance is not None:
            instance.dispose()
        patch.undo()


def scan_state(instance: dg.DagsterInstance) -> ScanState:
    [state] = [s for s in instance.all_instigator_state() if s.name == DRIFT_SENSOR.name]
    data = state.instigator_data
    return ScanState.from_cursor(data.cursor if data else None)


def event_counts(dagster_dsn: str) -> dict[str, int]:
    """Dagster's event log, counted by event type, straight from its table."""
    with psycopg.connect(dagster_dsn) as conn:
        rows = conn.execute("SELECT dagster_event_type, count(*) FROM event_logs GROUP BY 1").fetchall()
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

    # Quiet from now on: scans go on, write only their content verifications, and load nothing.
    before_events, before_scans = event_counts(dagster_dsn), scan_state(instance).scans
    wait_for(lambda: scan_state(instance).scans >= before_scans + 4, "four more scans", 180, logs)
    after_events, scans = event_counts(dagster_dsn), scan_state(instance).scans - before_scans
    grown = {k: after_events.get(k, 0) - before_events.get(k, 0) for k in after_events}
    grown = {k: n for k, n in grown.items() if n}
    # The freshness daemon may record the table's state changing once; the scans write only evaluations.
    assert set(grown) <= {"ASSET_CHECK_EVALUATION", "FRESHNESS_STATE_CHANGE"}, grown
    assert grown.get("FRESHNESS_STATE_CHANGE", 0) <= 1
    assert scans <= grown.get("ASSET_CHECK_EVALUATION", 0) <= HASH_DAYS_PER_SCAN * (scans + 1)
    assert loads_per_day(instance) == dict.fromkeys(sorted(changed), 1)
    assert loads_per_day(instance, STAGE_KEY) == dict.fromkeys(sorted(changed), 1)
    assert all(day.matches for day in pipeline.reconcile(DAYS))
