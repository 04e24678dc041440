"""The extract reads a day in time slices while no other application works on the database, and from the
first sign of one in short bursts; either way it finds exactly the rows one whole statement finds.

Against the session's real PostgreSQL. The other application is a real session, named as DataVault's would
be, that runs a statement while the day is read.
"""

import logging
import threading
import time
import uuid
from datetime import date

import psycopg
import pyarrow as pa
import pytest

from datavault_analytics.local_stack.seed import seed_records
from datavault_analytics.postgres.bursts import LEAST_PIECE_ROWS
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics_tests.pipeline_harness import (
    create_source_database,
    wait_until_no_other_application_works,
)
from datavault_analytics_tests.records import RECORDS_SPEC

DAY = "2026-11-02"
# Rows at shared instants: groups smaller than the fewest rows of a slice (LEAST_PIECE_ROWS), which a slice
# must not split at its end, and one instant with many more, which must be read whole.
SMALL_GROUP = LEAST_PIECE_ROWS // 2 - 1
CROWDED_INSTANT_ROWS = 10 * LEAST_PIECE_ROWS


@pytest.fixture(scope="module")
def dsn(pg_server) -> str:
    dsn = create_source_database(pg_server, f"extract_{uuid.uuid4().hex[:8]}")
    seed_records(dsn, [date.fromisoformat(DAY)], 600, seed=8)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # many rows share an instant: each group of SMALL_GROUP rows takes its first row's time
        conn.execute(
            """
            UPDATE records r SET created_at = g.first
            FROM (SELECT id, min(created_at) OVER (PARTITION BY (rank - 1) / %s) AS first
                  FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at, id) AS rank
                        FROM records) ranked) g
            WHERE r.id = g.id
            """,
            (SMALL_GROUP,),
        )
        conn.execute(
            "UPDATE records SET created_at = %s::date + time '12:00' WHERE id IN "
            "(SELECT id FROM records ORDER BY id LIMIT %s)",
            (DAY, CROWDED_INSTANT_ROWS),
        )
        groups = conn.execute(
            "SELECT count(*) FROM records GROUP BY created_at HAVING count(*) > 1"
        ).fetchall()
        assert len(groups) > 30  # the shape the test is about is there
    return dsn


def whole_day(dsn: str, columns) -> pa.Table:
    return read(PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=0), columns)


def read(postgres: PostgresResource, columns, between_batches=lambda: None) -> pa.Table:
    batches = []
    with postgres.stream_day(columns, DayWindow.for_key(DAY), prefetch=1) as stream:
        for batch in stream:
            batches.append(batch)
            between_batches()
    return pa.Table.from_batches(batches).sort_by("id")


def rows_read(caplog) -> dict[str, int]:
    """The extract's own account of its last day: rows in time slices and rows in bursts."""
    [message] = [r.getMessage() for r in caplog.records if r.name.endswith("postgres.extract")][-1:]
    sliced, fetched = message.split(": ", 1)[1].split(", ")
    return {
        "in time slices": int(sliced.split()[0].replace(",", "")),
        "in bursts": int(fetched.split()[0].replace(",", "")),
    }


def test_while_no_one_else_works_the_day_is_read_in_time_slices_that_split_no_instant(dsn, caplog):
    # slices so short that each is the fewest rows a slice holds: many slice ends fall inside a group
    sliced = PostgresResource(
        table_spec=RECORDS_SPEC, dsn=dsn, alone_burst_ms=0.001, batch_size_hint_bytes=4096
    )
    columns = sliced.source_columns()
    expected = whole_day(dsn, columns)
    wait_until_no_other_application_works(dsn)

    with caplog.at_level(logging.INFO, logger="datavault_analytics.postgres.extract"):
        found = read(sliced, columns)

    assert found.equals(expected)
    assert rows_read(caplog) == {"in time slices": expected.num_rows, "in bursts": 0}

    # alone_burst_ms 0: bursts only, whatever the database is doing
    with caplog.at_level(logging.INFO, logger="datavault_analytics.postgres.extract"):
        found = read(sliced.model_copy(update={"alone_burst_ms": 0.0}), columns)
    assert found.equals(expected)
    assert rows_read(caplog) == {"in time slices": 0, "in bursts": expected.num_rows}


def test_from_the_first_sign_of_other_work_the_rest_of_the_day_is_read_in_bursts(dsn, caplog):
    sliced = PostgresResource(
        table_spec=RECORDS_SPEC, dsn=dsn, alone_burst_ms=0.001, batch_size_hint_bytes=4096
    )
    columns = sliced.source_columns()
    expected = whole_day(dsn, columns)
    retrieve = psycopg.connect(dsn, autocommit=True, application_name="datavault retrieve (test)")
    wait_until_no_other_application_works(dsn)  # its connection, idle for a second, does not count

    def work() -> None:
        with pytest.raises(psycopg.errors.QueryCanceled):  # ended by the test when the day is read
            retrieve.execute("SELECT pg_sleep(20)")

    busy = threading.Thread(target=work, daemon=True)

    def after_the_first_batch() -> (
        None
    ):  # another application starts working; the read waits until it is seen
        if busy.is_alive():
            return
        busy.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'datavault retrieve (test)' "
                "AND state = 'active'"
            ).fetchone():
                time.sleep(0.05)

    try:
        with caplog.at_level(logging.INFO, logger="datavault_analytics.postgres.extract"):
            found = read(sliced, columns, between_batches=after_the_first_batch)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'datavault retrieve (test)'"
            )
        busy.join(timeout=10)
        retrieve.close()

    assert found.equals(expected)
    counts = rows_read(caplog)
    assert counts["in time slices"] > 0 and counts["in bursts"] > 0, counts
    assert sum(counts.values()) == expected.num_rows
