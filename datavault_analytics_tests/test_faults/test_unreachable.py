"""PostgreSQL, S3 or Snowflake down (its server stopped) during a run: the error names the part and the
step, the step is retried, and once the server is back the day lands exactly, with nothing lost.

Each test runs its own server of the part it stops (the session's servers stay up for everyone else): a
PostgreSQL cluster, a moto S3 endpoint (moto's buckets live in the test process, so they outlive a restart,
as S3's do), or fakesnow in a process of its own (its databases are files, so they outlive it too). The run
is a process of its own with up to 6 retries; the test starts the server again once the run has failed
and asked for a retry.
"""

import threading
import time

import dagster as dg
import pytest

from datavault_analytics.local_stack.postgres_server import PostgresServer
from datavault_analytics.local_stack.processes import free_port
from datavault_analytics.local_stack.s3_server import S3Server
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics_tests import records
from datavault_analytics_tests.pipeline_harness import Pipeline
from datavault_analytics_tests.test_faults.conftest import (
    DAY,
    DAY_DATE,
    LOCK_WAIT_SECONDS,
    change_the_day,
)
from datavault_analytics_tests.test_faults.faultkit import SnowflakeProcess, run_events, wait_until
from soak.proxy import FaultProxy

RETRYING = {
    "DATAVAULT_MAX_RETRIES": "6",
    "DATAVAULT_RETRY_DELAY_SECONDS": "0.5",
    "SNOWFLAKE_LOGIN_TIMEOUT": "3",
}


def new_pipeline(pg, s3_endpoint, snowflake, monkeypatch) -> Pipeline:
    monkeypatch.setenv("DATAVAULT_LOCK_WAIT_SECONDS", LOCK_WAIT_SECONDS)
    pipeline = Pipeline(pg, s3_endpoint, snowflake, monkeypatch)
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    return pipeline


def retried_errors(home, run) -> list[str]:
    """The errors for which `run` retried a step, cause included (the policy's retry wraps the error)."""
    return [
        e.event_specific_data.error.to_string()
        for e in run_events(home, run.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    ]


def assert_exact(pipeline, day: str = DAY) -> None:
    assert pipeline.snowflake_rows(day) == pipeline.source_rows(day)
    [reconciled] = pipeline.reconcile([day])
    assert reconciled.matches, reconciled.difference()


def wait_for_a_retry(run) -> None:
    wait_until(
        lambda: "STEP_UP_FOR_RETRY" in run.output(), "the step to fail and ask for a retry", process=run
    )


@pytest.fixture
def own_postgres(tmp_path):
    server = PostgresServer(tmp_path / "pg", free_port(), log_path=tmp_path / "pg.log", durable=False)
    server.start()
    yield server
    server.stop()


def test_postgres_down(own_postgres, s3_endpoint, snowflake_server, monkeypatch, start_run):
    pipeline = new_pipeline(own_postgres, s3_endpoint, snowflake_server, monkeypatch)
    pipeline.seed([DAY_DATE], rows_per_day=500)
    own_postgres.stop()

    run = start_run(pipeline, DAY, env=RETRYING)
    wait_for_a_retry(run)
    own_postgres.start()
    assert run.wait() == 0, run.tail()

    first = retried_errors(start_run.home, run)[0]
    assert f"Cannot connect to PostgreSQL at 127.0.0.1:{own_postgres.port}/{pipeline.database}" in first
    assert f"[step: Reading the PostgreSQL source's columns to extract {DAY}]" in first
    assert_exact(pipeline)


def test_s3_down_while_staging_and_while_loading(pg_server, snowflake_server, monkeypatch, start_run):
    port = free_port()
    s3 = S3Server(port).start()
    try:
        pipeline = new_pipeline(pg_server, s3.endpoint_url, snowflake_server, monkeypatch)
        pipeline.seed([DAY_DATE], rows_per_day=500)
        s3.stop()

        staging = start_run(pipeline, DAY, env=RETRYING)
        wait_for_a_retry(staging)
        s3 = S3Server(port).start()
        assert staging.wait() == 0, staging.tail()
        first = retried_errors(start_run.home, staging)[0]
        assert (
            f"S3 is unreachable while staging {DAY} at {pipeline.stage_uri} (endpoint {s3.endpoint_url})"
            in first
        )
        assert f"[step: Staging to {pipeline.stage_uri}]" in first
        assert_exact(pipeline)

        # The day is staged again by a stage-only run; S3 goes down before the load reads its manifest.
        change_the_day(pipeline)
        assert pipeline.materialize(DAY, selection=[records.STAGE_KEY]).success
        s3.stop()
        loading = start_run(pipeline, DAY, "--select", "load", env=RETRYING)
        wait_for_a_retry(loading)
        s3 = S3Server(port).start()
        assert loading.wait() == 0, loading.tail()
        second = retried_errors(start_run.home, loading)[0]
        assert (
            f"S3 is unreachable while reading the stage manifest of {DAY} at {pipeline.stage_uri}" in second
        )
        assert "[step: Reading the stage manifests]" in second
        assert_exact(pipeline)
    finally:
        s3.stop()


def test_a_failed_staging_leaves_the_days_verified_checks_passed(
    pg_server, snowflake_server, monkeypatch, start_run
):
    """Staging fails for good (S3 down, no retry): Snowflake still holds the day its checks verified, so the
    check partition view keeps showing them passed, not "Execution failed" as Dagster would for the checks
    the failed run had planned."""
    from datavault_analytics_tests.dagster_internals import AssetCheckExecutionResolvedStatus

    port = free_port()
    s3 = S3Server(port).start()
    try:
        pipeline = new_pipeline(pg_server, s3.endpoint_url, snowflake_server, monkeypatch)
        pipeline.seed([DAY_DATE], rows_per_day=50)
        loaded = start_run(pipeline, DAY, "--checks", env=RETRYING)
        assert loaded.wait() == 0, loaded.tail()
        s3.stop()
        failed = start_run(pipeline, DAY, "--checks", env={**RETRYING, "DATAVAULT_MAX_RETRIES": "0"})
        assert failed.wait() == 1, failed.tail()
    finally:
        s3.stop()

    specs = records.CHECK_SPECS
    with dg.DagsterInstance.from_config(str(start_run.home)) as instance:
        [failed_run] = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
        states = instance.event_log_storage.get_asset_check_state(
            [(spec.key, records.RECORDS.partitions) for spec in specs]
        )
        shown = {
            spec.name: {
                status.value: sorted(states[spec.key].subsets[status].subset_value.get_partition_keys())
                for status in AssetCheckExecutionResolvedStatus
                if status in states[spec.key].subsets
                and states[spec.key].subsets[status].subset_value.get_partition_keys()
            }
            for spec in specs
        }
        assert shown == {spec.name: {"SUCCEEDED": [DAY]} for spec in specs}
        carried = instance.get_latest_asset_check_evaluation_record(specs[0].key)
        assert (
            f"still holds: run {failed_run.run_id} failed"
            in carried.event.dagster_event.event_specific_data.description
        )
    assert_exact(pipeline)


def test_snowflake_down(tmp_path, pg_server, s3_endpoint, monkeypatch, start_run):
    snowflake = SnowflakeProcess(
        tmp_path / "snowflake", s3_endpoint, free_port(), tmp_path / "snowflake.log"
    ).start()
    try:
        pipeline = new_pipeline(pg_server, s3_endpoint, snowflake, monkeypatch)
        pipeline.seed([DAY_DATE], rows_per_day=500)
        assert pipeline.materialize(DAY).success
        change_the_day(pipeline)
        snowflake.stop()

        run = start_run(pipeline, DAY, env=RETRYING)
        wait_for_a_retry(run)
        snowflake.start()
        assert run.wait() == 0, run.tail()

        # Staging did not need Snowflake: it went ahead, saying it could not check the table first.
        assert "Staging without checking Snowflake's columns first (the load checks them)" in run.output()
        first = retried_errors(start_run.home, run)[0]
        assert (
            f"Snowflake failed while connecting (account fakesnow at 127.0.0.1) for {DAY}; nothing was "
            f"changed" in first
        )
        assert "[step: Loading into Snowflake]" in first
        assert_exact(pipeline)
    finally:
        snowflake.stop()


def test_a_snowflake_statement_that_gets_no_answer_fails_after_the_statement_timeout(
    pg_server, s3_endpoint, snowflake_server, monkeypatch
):
    """The connector re-sends a statement that got no answer (or an HTTP 500), by default forever: a load
    would hang holding its day's transaction. DATAVAULT_SNOWFLAKE_STATEMENT_TIMEOUT_SECONDS ends it."""
    proxy = FaultProxy("snowflake", snowflake_server.port).start()
    try:
        pipeline = Pipeline(pg_server, s3_endpoint, snowflake_server, monkeypatch)
        monkeypatch.setenv("SNOWFLAKE_PORT", str(proxy.port))
        monkeypatch.setenv("DATAVAULT_SNOWFLAKE_STATEMENT_TIMEOUT_SECONDS", "4")
        resources = build_resources(Settings.from_environment("prod"))
        outcome: dict = {}

        def statement(cursor) -> None:
            started = time.monotonic()
            try:
                cursor.execute("SELECT 2")
            except Exception as error:  # noqa: BLE001 - the outcome is asserted below
                outcome["error"] = error
            outcome["seconds"] = time.monotonic() - started

        with dg.build_resources({"snowflake": resources["snowflake"]}) as built:
            with built.snowflake.get_connection() as conn:
                cursor = conn.cursor()
                assert cursor.execute("SELECT 1").fetchall() == [(1,)]
                proxy.inject("blackhole")
                waiting = threading.Thread(target=statement, args=(cursor,), daemon=True)
                waiting.start()
                waiting.join(60)
                proxy.heal()  # lets a statement that is still waiting end, if the timeout did not work
                waiting.join(30)
        assert "seconds" in outcome and outcome["seconds"] < 60, "the statement waited for its answer"
        assert "error" in outcome and outcome["seconds"] >= 3, outcome
        assert pipeline.snowflake("SELECT 3") == [(3,)]
    finally:
        proxy.stop()
