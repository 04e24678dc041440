"""Two runs of the same day at once never interleave: each step holds the day's PostgreSQL lock
(resources/partition_locks.py). And a hot standby as the source: the locks on the primary
(DATAVAULT_LOCK_DSN), and a read the standby cancels to replay the primary is retried.

Both runs are real processes. The first is held, by a proxy, in the middle of a step that holds the
lock; the second is started and must wait at the lock without touching the day. Released, both finish,
their stagings follow one another in S3 (never one inside the other), and the day is exactly
PostgreSQL's rows.
"""

import dataclasses
import threading
import time

import psycopg
import pytest

from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.local_stack.postgres_server import PostgresServer
from datavault_analytics.local_stack.processes import free_port
from datavault_analytics.postgres.locks import PartitionLocks, lock_key
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics_tests.pipeline_harness import Pipeline
from datavault_analytics_tests.records import RECORDS
from datavault_analytics_tests.test_faults.conftest import (
    DAY,
    DAY_DATE,
    loaded_then_changed,
    partition_lock_key,
)
from datavault_analytics_tests.test_faults.faultkit import HttpProxy, advisory_locks, s3_writes, wait_until

ROWS = 8000  # about 3 MB: three staged files of 1 MB (SMALL_FILES)
MANIFEST_KEY = f"analytics/records/dt={DAY}/_manifest.json"
SMALL_FILES = ("--file-mb", "1", "--row-group-rows", "1000")


def stagings(writes: list[str]) -> list[list[str]]:
    """The writes grouped into stagings, each from 'delete manifest' to 'put manifest'; fails if one
    staging starts inside another or a file is written outside any staging."""
    groups, current = [], None
    for write in writes:
        if write == "delete manifest":
            assert current is None, f"a staging started inside another: {writes}"
            current = [write]
        else:
            assert current is not None, f"{write} outside a staging: {writes}"
            current.append(write)
            if write == "put manifest":
                groups.append(current)
                current = None
    assert current is None, f"a staging never finished: {writes}"
    return groups


def waiting_for_the_lock(pipeline) -> list[tuple]:
    return [h for h in advisory_locks(pipeline.dsn, partition_lock_key()) if not h[1]]


def assert_exact(pipeline) -> None:
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)
    [day] = pipeline.reconcile([DAY])
    assert day.matches, day.difference()


def test_a_second_run_waits_while_the_first_is_staging_the_day(fault_pipeline, start_run):
    pipeline = fault_pipeline
    loaded_then_changed(pipeline, ROWS)
    with HttpProxy(pipeline.s3_endpoint) as s3:
        gate = s3.hold(lambda r: r.method == "PUT" and f"dt={DAY}/part-00001-" in r.target)
        first = start_run(pipeline, DAY, *SMALL_FILES, s3=s3)
        wait_until(gate.arrived.is_set, "the first run to be half-way through staging", process=first)
        second = start_run(pipeline, DAY, *SMALL_FILES, s3=s3)

        [(_, _, waiter)] = wait_until(
            lambda: waiting_for_the_lock(pipeline), "the second run to wait for the lock", process=second
        )
        [(_, _, holder)] = [h for h in advisory_locks(pipeline.dsn, partition_lock_key()) if h[1]]
        assert holder.startswith(f"datavault lock stage {DAY} run ")
        assert waiter.startswith(f"datavault lock stage {DAY} run ") and waiter != holder
        # While it waits, the second run has written nothing: only the first run's half staging is there.
        assert s3_writes(s3, DAY) == ["delete manifest", "put part-00000.parquet", "put part-00001.parquet"]

        gate.release()
        assert first.wait() == 0, first.tail()
        assert second.wait() == 0, second.tail()
        assert len(stagings(s3_writes(s3, DAY))) == 2
    assert_exact(pipeline)


def test_a_load_waits_while_a_second_run_re_stages_the_retrieval_log_day(fault_pipeline, start_run):
    """The first run's load begins while a second run re-stages the day and its manifest is deleted: the
    load waits at the day's lock and loads the second staging, rather than find no manifest. On the second
    table, whose days have locks of their own."""
    pipeline, log = fault_pipeline, configured_table("retrieval_log")
    pipeline.seed_retrievals([DAY_DATE], rows_per_day=120_000)  # about 3 MB: three files of 1 MB
    assert pipeline.materialize(DAY, table=log).success
    pipeline.pg("DELETE FROM retrieval_log WHERE id % 5 = 0")
    key = lock_key(log.spec.source_name, DAY)

    def waiting(step: str) -> list[tuple]:
        return [
            h
            for h in advisory_locks(pipeline.dsn, key)
            if not h[1] and h[2].startswith(f"datavault lock {step}")
        ]

    with HttpProxy(pipeline.s3_endpoint) as s3:
        first_staging = s3.hold(lambda r: r.method == "PUT" and f"dt={DAY}/part-00001-" in r.target)
        first = start_run(pipeline, DAY, "--table", "retrieval_log", *SMALL_FILES, s3=s3)
        wait_until(
            first_staging.arrived.is_set, "the first run to be half-way through staging", process=first
        )
        second = start_run(pipeline, DAY, "--table", "retrieval_log", *SMALL_FILES, s3=s3)
        wait_until(
            lambda: waiting(f"stage {DAY}"), "the second run to wait for the day's lock", process=second
        )

        # Released, the first run finishes its staging; the second takes the lock, deletes that manifest and
        # is held at its first file, while the first run's load starts.
        second_staging = s3.hold(lambda r: r.method == "PUT" and f"dt={DAY}/part-00000-" in r.target)
        first_staging.release()
        wait_until(second_staging.arrived.is_set, "the second run to re-stage the day", process=second)
        assert s3_writes(s3, DAY)[-3:] == ["put manifest", "delete manifest", "put part-00000.parquet"]
        wait_until(
            lambda: waiting(f"load {DAY}"), "the first run's load to wait for the day's lock", process=first
        )

        second_staging.release()
        assert first.wait() == 0, first.tail()
        assert second.wait() == 0, second.tail()
        assert len(stagings(s3_writes(s3, DAY))) == 2
    [day] = pipeline.reconcile([DAY], table=log)
    assert day.matches and day.snowflake_rows == pipeline.pg("SELECT count(*) FROM retrieval_log")[0][0]


def test_a_run_staging_the_day_waits_while_another_is_loading_it(fault_pipeline, start_run, snowflake_server):
    pipeline = fault_pipeline
    loaded_then_changed(pipeline, ROWS)
    with (
        HttpProxy(pipeline.s3_endpoint) as s3,
        HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as snowflake,
    ):
        gate = snowflake.hold(lambda r: r.sql.startswith("COPY INTO"))  # inside the first run's transaction
        first = start_run(pipeline, DAY, *SMALL_FILES, s3=s3, snowflake=snowflake)
        wait_until(gate.arrived.is_set, "the first run's COPY", process=first)
        second = start_run(pipeline, DAY, *SMALL_FILES, s3=s3, snowflake=snowflake)

        [(_, _, waiter)] = wait_until(
            lambda: waiting_for_the_lock(pipeline), "the second run to wait for the lock", process=second
        )
        [(_, _, holder)] = [h for h in advisory_locks(pipeline.dsn, partition_lock_key()) if h[1]]
        assert holder.startswith(f"datavault lock load {DAY} run ")
        assert waiter.startswith(f"datavault lock stage {DAY} run ")
        # The files the first run is loading stay as its manifest lists them: the second has not begun.
        [first_staging] = stagings(s3_writes(s3, DAY))
        assert first_staging[-1] == "put manifest"

        gate.release()
        assert first.wait() == 0, first.tail()
        assert second.wait() == 0, second.tail()
        assert len(stagings(s3_writes(s3, DAY))) == 2
    assert_exact(pipeline)


# -- a hot standby as the source -------------------------------------------------------------------


def _primary_and_standby(tmp_path, standby_settings: str = ""):
    """A PostgreSQL primary and a streaming hot standby of it (pg_basebackup -R)."""
    primary = PostgresServer(
        tmp_path / "primary", free_port(), log_path=tmp_path / "primary.log", durable=False
    )
    primary.start()
    standby = PostgresServer(
        tmp_path / "standby", free_port(), log_path=tmp_path / "standby.log", durable=False
    )
    try:
        standby._prepare_directories()  # an empty folder the server's OS user owns, for pg_basebackup
        standby._run(
            "pg_basebackup",
            ["-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(standby.data_dir), "-R"]
            + ["-X", "stream"],
        )
        with open(standby.data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(standby_settings)
        standby.start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


@pytest.fixture
def primary_and_standby(tmp_path):
    yield from _primary_and_standby(tmp_path)


@pytest.fixture
def standby_that_cancels_reads(tmp_path):
    """A standby that cancels a read within 200 ms when replaying the primary needs rows the read sees."""
    yield from _primary_and_standby(
        tmp_path, "hot_standby_feedback = off\nmax_standby_streaming_delay = '200ms'\n"
    )


def wait_for_replay(standby_dsn: str, rows: int) -> None:
    def replayed() -> bool:
        try:
            with psycopg.connect(standby_dsn) as conn:
                return conn.execute("SELECT count(*) FROM records").fetchone()[0] == rows
        except (psycopg.OperationalError, psycopg.errors.UndefinedTable):  # not replayed yet
            return False

    wait_until(replayed, f"the standby to replay {rows} rows")


def reading_from_the_standby(servers, s3_endpoint, snowflake_server, monkeypatch, rows: int, **env: str):
    """A pipeline whose source is the standby and whose locks are on the primary, with `rows` seeded and
    replayed; `env` adds settings. Returns (pipeline, the standby's DSN, the primary's DSN)."""
    primary, standby = servers
    pipeline = Pipeline(primary, s3_endpoint, snowflake_server, monkeypatch)
    pipeline.seed([DAY_DATE], rows_per_day=rows)
    replica_dsn, primary_dsn = standby.dsn(pipeline.database), primary.dsn(pipeline.database)
    wait_for_replay(replica_dsn, rows)
    for name, value in {"DATAVAULT_PG_DSN": replica_dsn, "DATAVAULT_LOCK_DSN": primary_dsn, **env}.items():
        monkeypatch.setenv(name, value)
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    return pipeline, replica_dsn, primary_dsn


def test_a_hot_standby_as_the_source_with_the_locks_on_the_primary(
    primary_and_standby, s3_endpoint, snowflake_server, monkeypatch
):
    pipeline, _, primary_dsn = reading_from_the_standby(
        primary_and_standby, s3_endpoint, snowflake_server, monkeypatch, 300, DATAVAULT_LOCK_WAIT_SECONDS="1"
    )

    # The day's lock is taken on the primary: while another run holds it there, this run waits, then says so.
    other = PartitionLocks(dsn=primary_dsn).for_table(RECORDS.spec)
    with other.hold(DAY, holder="another run"):
        result = pipeline.materialize(DAY, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert (
        "public.records 2026-11-01 stayed locked by another run (pid"
        in failure.step_failure_data.error.to_string()
    )
    assert "'datavault lock another run'" in failure.step_failure_data.error.to_string()
    assert MANIFEST_KEY not in pipeline.stage_keys(DAY)

    # Free, the day is read from the standby, in its read-only snapshot, and lands exactly.
    assert pipeline.materialize(DAY).success
    assert_exact(pipeline)


def test_a_read_the_standby_cancels_to_replay_the_primary_is_retried_and_the_day_is_exact(
    standby_that_cancels_reads, s3_endpoint, snowflake_server, monkeypatch
):
    pipeline, replica_dsn, primary_dsn = (
        reading_from_the_standby(  # an extract of about 8 s, to conflict with
            standby_that_cancels_reads,
            s3_endpoint,
            snowflake_server,
            monkeypatch,
            60_000,  # about 24 MB: more than the sockets buffer, so the read is still going when it conflicts
            DATAVAULT_PG_MAX_MB_PER_SECOND="3",
        )
    )
    # The shipped three retries, not the tests' one: a DELETE and VACUUM issued just before the first read was
    # cancelled can still be replayed into the first retry's snapshot, and cancel it too.
    shipped = {"max_retries": Settings.model_fields["max_retries"].default, "retry_delay_seconds": 0.5}
    table = dataclasses.replace(RECORDS, settings=RECORDS.settings.model_copy(update=shipped))
    outcome = {}
    run = threading.Thread(
        target=lambda: outcome.update(result=pipeline.materialize(DAY, raise_on_error=False, table=table))
    )
    run.start()

    def extracting() -> bool:
        with psycopg.connect(replica_dsn, autocommit=True) as conn:
            [reading] = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
                "AND backend_xmin IS NOT NULL AND query LIKE %s",
                ("datavault-analytics extract%", "FETCH FORWARD % FROM extract"),
            ).fetchone()
            return reading > 0

    # Its cursor over the day, not the driver's catalog queries, holds the snapshot the primary's VACUUM must
    # conflict with.
    wait_until(extracting, "the extract's cursor to be reading from the standby")
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        [first_reader] = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND application_name LIKE %s",
            ("datavault-analytics extract%",),
        ).fetchone()
    # On the primary, rows of the day go and VACUUM removes them; replaying that conflicts with the read. Until
    # the first read is no longer running (cancelled), so that its retry reads undisturbed.
    deleted = 0
    with (
        psycopg.connect(primary_dsn, autocommit=True) as primary_conn,
        psycopg.connect(replica_dsn, autocommit=True) as standby_conn,
    ):
        while standby_conn.execute(
            # between two FETCHes the read is idle in its transaction: it runs while it holds its snapshot
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND backend_xmin IS NOT NULL",
            (first_reader,),
        ).fetchone()[0]:
            primary_conn.execute(
                "DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY id LIMIT 100)"
            )
            primary_conn.execute("VACUUM records")
            deleted += 100
            time.sleep(0.5)
    run.join(timeout=180)

    result = outcome["result"]
    assert result.success
    retried = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_up_for_retry]
    assert any("conflict with recovery" in error and "hot_standby_feedback" in error for error in retried), (
        retried
    )
    wait_for_replay(replica_dsn, 60_000 - deleted)
    assert_exact(pipeline)
