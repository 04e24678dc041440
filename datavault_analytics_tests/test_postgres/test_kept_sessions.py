"""A day's sessions on DataVault's PostgreSQL are kept for the next day's read, and only while that is safe.

Against the session's real PostgreSQL: which backend served each read, and what is left open, are read back
from pg_stat_activity.
"""

import time
import uuid
from datetime import date

import psycopg
import pytest

from datavault_analytics.local_stack.seed import seed_records
from datavault_analytics.postgres import kept_sessions
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.postgres.sessions import KEPT_SESSION_NAME
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics_tests.pipeline_harness import create_source_database
from datavault_analytics_tests.records import RECORDS_SPEC

DAYS = ["2026-09-01", "2026-09-02"]


@pytest.fixture(scope="module")
def dsn(pg_server) -> str:
    dsn = create_source_database(pg_server, f"kept_{uuid.uuid4().hex[:8]}")
    seed_records(dsn, [date.fromisoformat(d) for d in DAYS], 500, seed=11)
    return dsn


def sessions(dsn: str, name: str) -> list[int]:
    """The pids of this database's sessions named `name`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
                (name,),
            )
        ]


def extract(postgres: PostgresResource, day: str) -> int:
    with postgres.stream_day(postgres.source_columns(), DayWindow.for_key(day)) as batches:
        return sum(batch.num_rows for batch in batches)


def test_the_next_day_is_read_by_the_session_the_last_day_left(dsn):
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn)
    assert extract(postgres, DAYS[0]) == 500
    kept = sessions(dsn, KEPT_SESSION_NAME)
    assert len(kept) == 2  # the extract's ADBC session, and the catalog's psycopg session
    with postgres.stream_day(postgres.source_columns(), DayWindow.for_key(DAYS[1])) as batches:
        [reading] = sessions(dsn, f"datavault-analytics extract {DAYS[1]}")  # renamed for this day's read
        assert reading in kept and sum(batch.num_rows for batch in batches) == 500
    assert sorted(sessions(dsn, KEPT_SESSION_NAME)) == sorted(kept)  # the same backends, no new ones


def test_a_session_ended_by_the_server_while_kept_is_replaced(dsn):
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn)
    first = extract(postgres, DAYS[0])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s",
            (KEPT_SESSION_NAME,),
        )
    assert extract(postgres, DAYS[0]) == first  # no error: new sessions


def test_a_read_that_did_not_end_cleanly_leaves_no_session(dsn):
    postgres = PostgresResource(
        table_spec=RECORDS_SPEC, dsn=dsn, batch_size_hint_bytes=4096
    )  # many batches: the reader waits on one
    extract(postgres, DAYS[0])
    kept = set(sessions(dsn, KEPT_SESSION_NAME))
    with postgres.stream_day(postgres.source_columns(), DayWindow.for_key(DAYS[1]), prefetch=1) as batches:
        next(batches)  # the consumer stops early: the read's transaction and cursor may be mid-way
    # the catalog's session came back; the extract's was closed, not kept mid-read
    assert len(set(sessions(dsn, KEPT_SESSION_NAME)) & kept) == 1
    assert len(sessions(dsn, KEPT_SESSION_NAME)) == 1


def test_a_kept_session_unused_for_a_while_is_closed(dsn, monkeypatch):
    monkeypatch.setattr(kept_sessions, "KEEP_SECONDS", 0.5)
    extract(PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn), DAYS[0])
    assert len(sessions(dsn, KEPT_SESSION_NAME)) == 2
    deadline = time.monotonic() + 10
    while sessions(dsn, KEPT_SESSION_NAME) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sessions(dsn, KEPT_SESSION_NAME) == []
