"""Two runs of the same day at once never interleave: each step holds the day's PostgreSQL lock (locks.py).

Both runs are real processes. The first is held, by a proxy, in the middle of a step that holds the
lock; the second is started and must wait at the lock without touching the day. Released, both finish,
their stagings follow one another in S3 (never one inside the other), and the day is exactly
PostgreSQL's rows.
"""

from datavault_analytics_tests.test_faults.conftest import DAY, loaded_then_changed, partition_lock_key
from datavault_analytics_tests.test_faults.faultkit import HttpProxy, advisory_locks, s3_writes, wait_until

ROWS = 4000
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
        gate = s3.hold(lambda r: r.method == "PUT" and f"dt={DAY}/part-00001.parquet" in r.target)
        first = start_run(pipeline, DAY, *SMALL_FILES, s3=s3)
        wait_until(gate.arrived.is_set, "the first run to be half-way through staging", process=first)
        second = start_run(pipeline, DAY, *SMALL_FILES, s3=s3)

        [(_, _, waiter)] = wait_until(lambda: waiting_for_the_lock(pipeline), "the second run to wait for the lock",
                                      process=second)
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


def test_a_run_staging_the_day_waits_while_another_is_loading_it(fault_pipeline, start_run, snowflake_server):
    pipeline = fault_pipeline
    loaded_then_changed(pipeline, ROWS)
    with HttpProxy(pipeline.s3_endpoint) as s3, \
            HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as snowflake:
        gate = snowflake.hold(lambda r: r.sql.startswith("COPY INTO"))  # inside the first run's transaction
        first = start_run(pipeline, DAY, *SMALL_FILES, s3=s3, snowflake=snowflake)
        wait_until(gate.arrived.is_set, "the first run's COPY", process=first)
        second = start_run(pipeline, DAY, *SMALL_FILES, s3=s3, snowflake=snowflake)

        [(_, _, waiter)] = wait_until(lambda: waiting_for_the_lock(pipeline), "the second run to wait for the lock",
                                      process=second)
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
