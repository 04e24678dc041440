"""A run killed with SIGKILL at each step: the day's old contents stay whole, no partial set of staged files
is ever loaded, and a re-run gives exactly PostgreSQL's rows.

Each test loads the day once (version A), changes it in PostgreSQL (version B), and starts a run of the
stage and load assets in a process of its own. The run is stopped at the step under test from outside:
PostgreSQL holds its read half-way (a gate function on the table), or a proxy holds its request to S3 or
Snowflake. The test then SIGKILLs the process: no clean-up runs, exactly as when a pod is evicted.
"""

import re
import time
import uuid
from datetime import date

import pytest

from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics_tests import records
from datavault_analytics_tests.test_faults.conftest import (
    DAY,
    DAY_DATE,
    loaded_then_changed,
    partition_lock_key,
)
from datavault_analytics_tests.test_faults.faultkit import (
    HttpProxy,
    PostgresGate,
    advisory_locks,
    s3_writes,
    wait_until,
)

ROWS = 8000  # about 3 MB of ciphertext: three staged files of 1 MB in the killed run
MANIFEST = f"analytics/records/dt={DAY}/_manifest.json"


def failure_messages(result) -> list[str]:
    return [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]


def assert_old_contents_intact(pipeline, before: list[tuple]) -> None:
    assert pipeline.snowflake_rows(DAY) == before, "the day's previous contents changed"
    # PostgreSQL released the killed run's partition lock when its connection closed.
    wait_until(lambda: not advisory_locks(pipeline.dsn, partition_lock_key()), "the killed run's lock to go")


def assert_stage_without_manifest_is_never_loaded(pipeline, before: list[tuple]) -> None:
    assert MANIFEST not in pipeline.stage_keys(DAY)
    result = pipeline.materialize(DAY, selection=[records.SNOWFLAKE_KEY], raise_on_error=False)
    assert not result.success
    [message] = failure_messages(result)
    assert f"Partition {DAY} has no stage manifest" in message
    assert not any(e.is_step_up_for_retry for e in result.all_events)  # a broken stage is not retried
    assert pipeline.snowflake_rows(DAY) == before


def assert_rerun_is_exact(pipeline) -> None:
    assert pipeline.materialize(DAY).success
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)
    [day] = pipeline.reconcile([DAY])
    assert day.matches, day.difference()


def rerun_without_a_daemon(instance, monkeypatch) -> list[str]:
    """An engineer's in-process rerun of DAY's stage and load, with a LOCK_TIMEOUT (300 s) far longer than it
    may wait: it succeeds. Its warnings that it ended an abandoned Snowflake transaction."""
    import dagster as dg

    monkeypatch.setenv("DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS", "300")
    result = dg.materialize(
        records.ALL_ASSETS,
        resources=build_resources(Settings.from_environment("prod")),
        selection=[records.STAGE_KEY, records.SNOWFLAKE_KEY],
        partition_key=DAY,
        instance=instance,
    )
    assert result.success
    return [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.level >= 30 and "Ended Snowflake transaction" in e.user_message
    ]


def test_killed_during_the_postgres_read(fault_pipeline, start_run):
    pipeline = fault_pipeline
    before = loaded_then_changed(pipeline, ROWS)
    window = DayWindow.for_key(DAY)
    [(halfway,)] = pipeline.pg(
        "SELECT id::text FROM records WHERE created_at >= %s AND created_at < %s ORDER BY ctid OFFSET %s "
        "LIMIT 1",
        (window.start, window.end, ROWS // 2),
    )
    gate = PostgresGate(pipeline.dsn)
    gate.install(halfway)
    gate.close()

    run = start_run(pipeline, DAY)
    [(_, state, query)] = wait_until(
        gate.waiting, "the extract to stop half-way through the day", process=run
    )
    # inside the extract's read of the table: a FETCH from its cursor over the day
    assert state == "active" and query.startswith("FETCH FORWARD") and query.endswith("FROM extract")
    assert MANIFEST not in pipeline.stage_keys(DAY)  # the stage invalidated the day before reading it
    run.kill()
    gate.open()

    assert_old_contents_intact(pipeline, before)
    assert_stage_without_manifest_is_never_loaded(pipeline, before)
    assert_rerun_is_exact(pipeline)


def test_killed_between_two_staged_files(fault_pipeline, start_run):
    pipeline = fault_pipeline
    before = loaded_then_changed(pipeline, ROWS)
    with HttpProxy(pipeline.s3_endpoint) as s3:
        gate = s3.hold(lambda r: r.method == "PUT" and f"dt={DAY}/part-00001-" in r.target)
        run = start_run(pipeline, DAY, "--file-mb", "1", "--row-group-rows", "1000", s3=s3)
        wait_until(gate.arrived.is_set, "the upload of the second staged file", process=run)
        # One new file is staged, the second is on its way, the manifest is gone.
        assert s3_writes(s3, DAY) == ["delete manifest", "put part-00000.parquet", "put part-00001.parquet"]
        run.kill()
        gate.release(forward=False)  # the upload dies with the process

    assert_old_contents_intact(pipeline, before)
    assert_stage_without_manifest_is_never_loaded(pipeline, before)
    assert_rerun_is_exact(pipeline)


def test_killed_after_staging_before_the_copy(fault_pipeline, start_run, snowflake_server):
    pipeline = fault_pipeline
    before = loaded_then_changed(pipeline, ROWS)
    with HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as snowflake:
        gate = snowflake.hold(lambda r: r.sql.startswith("SHOW STAGES"))  # the load's first statement
        run = start_run(pipeline, DAY, snowflake=snowflake)
        wait_until(gate.arrived.is_set, "the load step's first Snowflake statement", process=run)
        assert MANIFEST in pipeline.stage_keys(DAY)  # the day is fully staged
        run.kill()
        gate.release(forward=False)

    assert_old_contents_intact(pipeline, before)
    # The stage is complete and verified: loading it alone gives exactly PostgreSQL's rows.
    assert pipeline.materialize(DAY, selection=[records.SNOWFLAKE_KEY]).success
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)
    assert_rerun_is_exact(pipeline)


def killed_inside_the_copy_transaction(pipeline, start_run, snowflake_server) -> list[tuple]:
    """Load version A, change the day, then SIGKILL a run once Snowflake has run the DELETE and the COPY in
    the day's transaction (the run never hears back). Version A, as still seen by every other session."""
    before = loaded_then_changed(pipeline, ROWS)
    with HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as snowflake:
        gate = snowflake.hold(lambda r: r.sql.startswith("COPY INTO"), when="response")
        run = start_run(pipeline, DAY, snowflake=snowflake)
        wait_until(gate.arrived.is_set, "the COPY inside the day's transaction", process=run)
        statements = [r.sql.split()[0] for r in snowflake.requests if r.sql]
        assert statements[-3:] == ["BEGIN", "DELETE", "COPY"]
        run.kill()
        gate.release(forward=False)
    # Uncommitted: every other session still sees the day exactly as it was.
    assert_old_contents_intact(pipeline, before)
    return before


def test_killed_inside_the_copy_transaction_then_rerun_without_a_daemon(
    fault_pipeline, start_run, snowflake_server, monkeypatch
):
    """An engineer's run (`dagster asset materialize`, no daemon anywhere) SIGKILLed inside the day's COPY
    transaction. Nothing marks the run failed, but its day's lock died with it: the rerun ends the dead
    transaction itself, at once, says so, and loads the day exactly."""
    import dagster as dg

    pipeline = fault_pipeline
    killed_inside_the_copy_transaction(pipeline, start_run, snowflake_server)
    [(transaction_id, _, _, name, *_)] = pipeline.snowflake("SHOW TRANSACTIONS")
    with dg.DagsterInstance.from_config(str(start_run.home)) as instance:
        [killed] = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED  # nothing noticed the SIGKILL
        assert (
            name == f"DATAVAULT_LOAD_RECORDS_{DAY.replace('-', '')}_{killed.run_id.replace('-', '').upper()}"
        )

        started = time.monotonic()
        warnings = rerun_without_a_daemon(instance, monkeypatch)
        assert time.monotonic() - started < 60  # never waited for the dead transaction
        assert len(warnings) == 1 and name in warnings[0] and killed.run_id in warnings[0], warnings
        assert str(transaction_id) in warnings[0]
    assert pipeline.snowflake("SHOW TRANSACTIONS") == []
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)
    [day] = pipeline.reconcile([DAY])
    assert day.matches, day.difference()


def test_a_live_loads_transaction_is_never_ended_and_the_wait_for_it_is_retried(
    fault_pipeline, snowflake_server
):
    """Which open load transactions a load ends: a dead run's (its day's lock is free, or Dagster has the run
    as finished), never a live one's (its day's lock is held), nor another table's whose run may live. A load
    blocked by a live one waits LOCK_TIMEOUT, then fails to be retried; one blocked by a transaction that is
    not ours fails for good, saying how to end it."""
    import dagster as dg
    import snowflake.connector

    from datavault_analytics.errors import SnowflakeLockTimeoutError, SnowflakeTableBusyError
    from datavault_analytics.pipeline.load import _abandoned
    from datavault_analytics.snowflake.loader import SnowflakeLoader

    pipeline = fault_pipeline
    before = loaded_then_changed(pipeline, 50)
    assert pipeline.materialize(DAY, selection=[records.STAGE_KEY]).success  # the changed day, staged
    with pipeline.configured("s3_stage") as built:
        staged = built.s3_stage.read_manifest(built.s3_stage.storage(), DAY)
    instance = dg.DagsterInstance.ephemeral()

    @dg.asset
    def fails() -> None:
        raise RuntimeError("a run that failed")

    finished_run = dg.materialize([fails], instance=instance, raise_on_error=False).run_id
    live, dead, other = (str(uuid.uuid4()) for _ in range(3))
    live_day, dead_day = "2026-11-02", "2026-11-03"
    names = {
        "live": SnowflakeLoader._transaction_name("RECORDS", live_day, live),
        "dead": SnowflakeLoader._transaction_name("RECORDS", dead_day, dead),
        "other table": SnowflakeLoader._transaction_name("RETRIEVAL_LOG", dead_day, other),
        "finished": SnowflakeLoader._transaction_name("RETRIEVAL_LOG", dead_day, finished_run),
    }
    args = snowflake_server.connection_args(pipeline.sf_database, pipeline.sf_schema)
    holders = [snowflake.connector.connect(**{**args, "user": pipeline.env["SNOWFLAKE_USER"]}) for _ in names]
    for conn, name in zip(holders, names.values(), strict=True):
        conn.cursor().execute(f"BEGIN TRANSACTION NAME {name}")
    holders[0].cursor().execute('DELETE FROM "RECORDS" WHERE 1 = 0')  # the live load holds the table's lock
    with pipeline.configured("partition_locks", "snowflake_loader") as built:
        locks = built.partition_locks
        with locks.hold(live_day, holder="a live load"):  # as the live load's run holds its day's
            with built.snowflake_loader.connection() as conn:
                ended = built.snowflake_loader.end_abandoned_transactions(
                    conn.cursor(), lambda found: _abandoned(instance, locks, DAY, found)
                )
            assert sorted(t.name for t in ended) == sorted([names["dead"], names["finished"]])
            assert sorted(row[3] for row in pipeline.snowflake("SHOW TRANSACTIONS")) == sorted(
                [names["live"], names["other table"]]
            )

            # The live one blocks this load: it waits LOCK_TIMEOUT, then fails as busy, to be retried.
            with pytest.raises(SnowflakeTableBusyError) as busy:
                built.snowflake_loader.model_copy(update={"lock_timeout_seconds": 3}).load_partition(
                    staged, abandoned=lambda found: _abandoned(instance, locks, DAY, found)
                )
    message = str(busy.value)
    assert "is locked by transaction " in message and names["live"] in message
    assert f"a live load of {live_day}, which did not end within LOCK_TIMEOUT (3 s)" in message
    assert "Nothing was changed; the day is retried" in message and "ABORT" not in message

    # A transaction that is not one of our loads: not retried, and the message says how to end it.
    for conn in holders:
        conn.close()
    foreign = snowflake.connector.connect(**{**args, "user": pipeline.env["SNOWFLAKE_USER"]})
    foreign.cursor().execute("BEGIN TRANSACTION NAME MANUAL_FIX")
    foreign.cursor().execute('DELETE FROM "RECORDS" WHERE 1 = 0')
    with pipeline.configured("snowflake_loader") as built:
        with pytest.raises(SnowflakeLockTimeoutError) as stuck:
            built.snowflake_loader.model_copy(update={"lock_timeout_seconds": 3}).load_partition(staged)
    message = str(stuck.value)
    assert "(named MANUAL_FIX, started " in message and "not one of this pipeline's loads" in message
    assert re.search(r"run: SELECT SYSTEM\$ABORT_TRANSACTION\(\d+\);", message)
    assert "Nothing was changed" in message
    foreign.close()
    assert pipeline.snowflake_rows(DAY) == before
    instance.dispose()


def test_the_retrieval_log_killed_inside_its_copy_keeps_its_old_day_and_reloads_exactly(
    fault_pipeline, start_run, snowflake_server
):
    """The second table's load, SIGKILLed once Snowflake ran its DELETE and COPY: its transaction never
    commits, every other session sees the day as it was, and the re-run ends the dead transaction (its day's
    lock died with the run) and is exact."""
    pipeline, log = fault_pipeline, configured_table("retrieval_log")
    pipeline.seed_retrievals([DAY_DATE], rows_per_day=400)
    assert pipeline.materialize(DAY, table=log).success
    version_a = pipeline.snowflake('SELECT COUNT(*), SUM("ID"), MAX("LATENCY_MS") FROM "RETRIEVAL_LOG"')
    pipeline.pg("DELETE FROM retrieval_log WHERE id % 3 = 0")
    pipeline.pg("UPDATE retrieval_log SET latency_ms = 99.5 WHERE id % 3 = 1")
    with HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as snowflake:
        gate = snowflake.hold(lambda r: r.sql.startswith("COPY INTO"), when="response")
        run = start_run(pipeline, DAY, "--table", "retrieval_log", snowflake=snowflake)
        wait_until(gate.arrived.is_set, "the COPY inside the day's transaction", process=run)
        assert [r.sql.split()[0] for r in snowflake.requests if r.sql][-3:] == ["BEGIN", "DELETE", "COPY"]
        run.kill()
        gate.release(forward=False)

    assert (
        pipeline.snowflake('SELECT COUNT(*), SUM("ID"), MAX("LATENCY_MS") FROM "RETRIEVAL_LOG"') == version_a
    )
    [(transaction_id, name)] = [(row[0], row[3]) for row in pipeline.snowflake("SHOW TRANSACTIONS")]
    assert name.startswith(f"DATAVAULT_LOAD_RETRIEVAL_LOG_{DAY.replace('-', '')}_")
    assert pipeline.materialize(DAY, table=log).success
    assert transaction_id not in [row[0] for row in pipeline.snowflake("SHOW TRANSACTIONS")]
    [day] = pipeline.reconcile([DAY], table=log)
    assert day.matches and day.snowflake_rows == pipeline.pg("SELECT count(*) FROM retrieval_log")[0][0]


BIG_DAY_ROWS = 300_000  # the size at which a killed run was found to block its day for hours


def test_a_300k_row_day_killed_three_times_without_a_daemon_then_rerun_exactly(
    fault_pipeline, start_run, snowflake_server, monkeypatch
):
    """A day of 300,000 rows (2,000 the day after, loaded first), its load SIGKILLed at three moments with no daemon
    anywhere: while it uploads its second staged file, after staging before its first Snowflake statement, and
    inside its COPY transaction. Nothing of it is ever seen in Snowflake, and the rerun, an engineer's
    in-process materialize, ends the dead transaction at once and loads exactly PostgreSQL's rows."""
    import dagster as dg

    pipeline = fault_pipeline
    pipeline.seed([DAY_DATE], rows_per_day=BIG_DAY_ROWS)
    next_day = date.fromordinal(DAY_DATE.toordinal() + 1)
    pipeline.seed([next_day], rows_per_day=2_000, seed=8)
    assert pipeline.materialize(next_day.isoformat()).success  # the table exists, with another day in it
    snowflake_url = f"http://{snowflake_server.host}:{snowflake_server.port}"

    with HttpProxy(pipeline.s3_endpoint) as s3:  # 1. uploading the second of several staged files
        gate = s3.hold(lambda r: r.method == "PUT" and f"dt={DAY}/part-00001-" in r.target)
        run = start_run(pipeline, DAY, "--file-mb", "16", s3=s3)
        wait_until(gate.arrived.is_set, "the upload of the second staged file", process=run, timeout=300)
        run.kill()
        gate.release(forward=False)
    assert pipeline.snowflake_rows(DAY) == []

    with HttpProxy(snowflake_url) as snowflake:  # 2. staged, before the load's first statement
        gate = snowflake.hold(lambda r: r.sql.startswith("SHOW STAGES"))
        run = start_run(pipeline, DAY, snowflake=snowflake)
        wait_until(gate.arrived.is_set, "the load step's first Snowflake statement", process=run, timeout=300)
        assert MANIFEST in pipeline.stage_keys(DAY)
        run.kill()
        gate.release(forward=False)
    assert pipeline.snowflake_rows(DAY) == []

    with HttpProxy(snowflake_url) as snowflake:  # 3. inside the day's COPY transaction
        gate = snowflake.hold(lambda r: r.sql.startswith("COPY INTO"), when="response")
        run = start_run(pipeline, DAY, snowflake=snowflake)
        wait_until(gate.arrived.is_set, "the COPY inside the day's transaction", process=run, timeout=300)
        run.kill()
        gate.release(forward=False)
    assert pipeline.snowflake_rows(DAY) == []  # uncommitted: no other session sees any of it
    [(_, _, _, name, *_)] = pipeline.snowflake("SHOW TRANSACTIONS")

    with dg.DagsterInstance.from_config(str(start_run.home)) as instance:
        killed = instance.get_runs()
        assert len(killed) == 3 and {r.status for r in killed} == {dg.DagsterRunStatus.STARTED}
        ended = rerun_without_a_daemon(instance, monkeypatch)
        assert len(ended) == 1 and name in ended[0], ended  # at once, not after LOCK_TIMEOUT
    assert pipeline.snowflake("SHOW TRANSACTIONS") == []
    loaded = pipeline.snowflake_rows(DAY)
    assert len(loaded) == BIG_DAY_ROWS and loaded == pipeline.source_rows(DAY)
    [day] = pipeline.reconcile([DAY])
    assert day.matches, day.difference()
