"""Every session the pipeline opens on DataVault's PostgreSQL names itself and is bounded; the throttle holds.

Against the session's real PostgreSQL: the names are read back from pg_stat_activity, and each bound is
shown by PostgreSQL enforcing it.
"""

import re
import threading
import time
import uuid
from datetime import date

import psycopg
import pytest

from datavault_analytics.day_window import DayWindow
from datavault_analytics.environment import ConfigurationError, Settings, build_resources
from datavault_analytics.local_stack.seed import seed_records
from datavault_analytics.resources.postgres import PostgresResource, PostgresSourceError
from datavault_analytics_tests.pipeline_harness import create_source_database

DAY = "2026-11-01"
ROWS = 20_000  # about 8 MB as Arrow


@pytest.fixture(scope="module")
def dsn(pg_server) -> str:
    dsn = create_source_database(pg_server, f"sessions_{uuid.uuid4().hex[:8]}")
    seed_records(dsn, [date.fromisoformat(DAY)], ROWS, seed=3)
    return dsn


def activity(dsn: str, pattern: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT application_name, state, wait_event_type FROM pg_stat_activity WHERE application_name LIKE %s",
            (pattern,),
        ).fetchall()


def test_a_catalog_session_names_itself_and_sets_its_bounds(dsn):
    postgres = PostgresResource(
        dsn=dsn, statement_timeout_seconds=7, idle_in_transaction_timeout_seconds=5, lock_timeout_seconds=3
    )
    with postgres.connect("catalog") as conn:
        settings = [
            conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("statement_timeout", "idle_in_transaction_session_timeout", "lock_timeout")
        ]
        assert settings == ["7s", "5s", "3s"]
        assert activity(dsn, "datavault-analytics catalog") == [
            ("datavault-analytics catalog", "idle in transaction", "Client")
        ]


def test_a_session_left_idle_in_its_transaction_is_ended_by_postgresql(dsn):
    postgres = PostgresResource(dsn=dsn, idle_in_transaction_timeout_seconds=1)
    with pytest.raises(PostgresSourceError, match="idle-in-transaction timeout"):
        with postgres.connect("catalog") as conn:
            conn.execute("SELECT 1")
            time.sleep(2.5)  # a stuck run: PostgreSQL ends the session, and the snapshot with it
            conn.execute("SELECT 1")


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"lock_timeout_seconds": 1, "statement_timeout_seconds": 60}, "lock timeout"),
        ({"lock_timeout_seconds": 60, "statement_timeout_seconds": 1}, "statement timeout"),
    ],
)
def test_an_extract_names_its_day_and_run_and_stops_at_its_bounds(dsn, bounds, expected):
    postgres = PostgresResource(dsn=dsn, **bounds)
    columns = postgres.source_columns()
    with psycopg.connect(dsn) as blocker:
        blocker.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")  # e.g. a migration, mid-way
        outcome: dict = {}

        def extract() -> None:
            started = time.monotonic()
            try:
                with postgres.stream_day(columns, DayWindow.for_key(DAY), run_id="0123abcd-run") as batches:
                    sum(b.num_rows for b in batches)
            except PostgresSourceError as error:
                outcome["error"] = str(error)
            outcome["seconds"] = time.monotonic() - started

        reader = threading.Thread(target=extract)
        reader.start()
        waiting = (f"datavault-analytics extract {DAY} run 0123abcd", "active", "Lock")
        deadline = time.monotonic() + 10
        while waiting not in activity(dsn, "datavault-analytics extract%") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting in activity(dsn, "datavault-analytics extract%")  # named, and waiting behind the lock
        reader.join(timeout=30)
        blocker.rollback()
    assert expected in outcome["error"] and outcome["seconds"] < 10
    if expected == "lock timeout":
        assert "another session holds a conflicting lock" in outcome["error"]


def read_rate(postgres: PostgresResource) -> tuple[float, int]:
    """(MB of Arrow data per second, MB read) for one extract of the day."""
    columns = postgres.source_columns()
    started = time.monotonic()
    with postgres.stream_day(columns, DayWindow.for_key(DAY)) as batches:
        read = sum(batch.nbytes for batch in batches)
    return read / 1e6 / (time.monotonic() - started), read / 1e6


def test_the_throttle_holds_the_extract_to_its_rate_within_ten_percent(dsn):
    hint = 256 * 1024  # small batches, so that the pacing is fine-grained
    full_speed, megabytes = read_rate(PostgresResource(dsn=dsn, batch_size_hint_bytes=hint))
    limit = 3.0
    assert megabytes > 2 * limit and full_speed > 2 * limit  # the limit, not the reading, sets the pace

    throttled, _ = read_rate(PostgresResource(dsn=dsn, batch_size_hint_bytes=hint, max_mb_per_second=limit))

    assert 0.9 * limit <= throttled <= 1.1 * limit, f"{throttled:.2f} MB/s against a limit of {limit} MB/s"


def test_paced_reads_find_what_full_speed_reads_find_and_use_no_parallel_workers(dsn):
    """time_share below 1 cuts the work finer and rests between the pieces: the fingerprint hour by hour,
    the drift scan's summaries a week a statement. The answers must not change."""
    seed_records(dsn, [date(2026, 10, d) for d in range(1, 21)], 300, seed=5)  # 20 more days: three weeks
    full, paced = PostgresResource(dsn=dsn), PostgresResource(dsn=dsn, time_share=0.5)
    columns = full.source_columns()
    windows = [DayWindow.for_key(DAY), DayWindow.for_key("2026-10-07"), DayWindow.for_key("2026-10-08")]
    first, last = DayWindow.for_key("2026-10-01"), DayWindow.for_key(DAY)

    assert paced.fingerprints(windows, columns) == full.fingerprints(windows, columns)
    assert paced.day_summaries(first, last) == full.day_summaries(first, last)
    assert len(full.day_summaries(first, last)) == 21
    with paced.stream_day(columns, DayWindow.for_key(DAY)) as batches:
        paced_rows = sum(b.num_rows for b in batches)
    assert paced_rows == ROWS

    with paced.connect("catalog") as conn:
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "0"
    with full.connect("catalog") as conn:
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] != "0"


def test_a_paced_read_rests_for_the_rest_of_its_share(dsn, monkeypatch):
    """Each piece of work is followed by a rest of (1 - share) / share times its length; unpaced, none."""
    rests: list[float] = []
    monkeypatch.setattr(time, "sleep", rests.append)
    PostgresResource(dsn=dsn, time_share=0.25).rest_after(0.2)
    PostgresResource(dsn=dsn).rest_after(0.2)
    assert rests == [pytest.approx(0.6)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 1.0),
        ("0.25", 0.25),
        ("0", "DATAVAULT_PG_TIME_SHARE='0': Input should be greater than 0"),
        ("1.5", "DATAVAULT_PG_TIME_SHARE='1.5': Input should be less than or equal to 1"),
        ("a quarter", "DATAVAULT_PG_TIME_SHARE='a quarter'"),
    ],
)
def test_the_time_share_comes_from_the_environment_and_bad_values_say_so(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("DATAVAULT_PG_TIME_SHARE", raising=False)
    else:
        monkeypatch.setenv("DATAVAULT_PG_TIME_SHARE", value)
    if isinstance(expected, str):
        with pytest.raises(ConfigurationError, match=re.escape(expected)):
            Settings.from_environment("local")
    else:
        settings = Settings.from_environment("local")
        assert settings.pg_time_share == expected
        assert build_resources(settings)["postgres"].time_share == expected
