"""Every session the pipeline opens on DataVault's PostgreSQL names itself and is bounded; the throttle holds.

Against the session's real PostgreSQL: the names are read back from pg_stat_activity, and each bound is
shown by PostgreSQL enforcing it.
"""

import re
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import psycopg
import pyarrow as pa
import pytest

from datavault_analytics.errors import ConfigurationError, PostgresSourceError
from datavault_analytics.local_stack.seed import seed_records
from datavault_analytics.postgres.bursts import (
    FIRST_BURST_ROWS,
    LEAST_PIECE_ROWS,
    SLICE_ROWS_BOUND,
    BurstSize,
)
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics_tests.pipeline_harness import (
    create_source_database,
    wait_until_no_other_application_works,
)
from datavault_analytics_tests.records import RECORDS_SPEC

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
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, idle_in_transaction_timeout_seconds=1)
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
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, **bounds)
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
    full_speed, megabytes = read_rate(
        PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, batch_size_hint_bytes=hint)
    )
    limit = 3.0
    assert megabytes > 2 * limit and full_speed > 2 * limit  # the limit, not the reading, sets the pace

    throttled, _ = read_rate(
        PostgresResource(
            table_spec=RECORDS_SPEC, dsn=dsn, batch_size_hint_bytes=hint, max_mb_per_second=limit
        )
    )

    assert 0.9 * limit <= throttled <= 1.1 * limit, f"{throttled:.2f} MB/s against a limit of {limit} MB/s"


def test_reads_in_bursts_find_what_whole_statements_find(dsn, monkeypatch):
    """In bursts, the extract and the fingerprints FETCH from a cursor a few rows at a time and the cheap tier
    counts short time slices, resting between pieces when paced. The answers must not change."""
    seed_records(dsn, [date(2026, 10, d) for d in range(1, 21)], 300, seed=5)  # 20 more days
    whole = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=0)
    columns = whole.source_columns()
    windows = [DayWindow.for_key(DAY), DayWindow.for_key("2026-10-07"), DayWindow.for_key("2026-10-08")]
    first, last = DayWindow.for_key("2026-10-01"), DayWindow.for_key(DAY)
    expected_day = read_day(whole, columns)
    expected_fingerprints = whole.fingerprints(windows, columns)
    expected_summaries = whole.day_summaries(first, last)
    assert len(expected_summaries) == 21 and expected_day.num_rows == ROWS

    pieces: list[float] = []
    after = BurstSize.after
    monkeypatch.setattr(
        BurstSize, "after", lambda self, took, rows: (pieces.append(self.size), after(self, took, rows))
    )
    # bursts only: the shipped length; one so short that every piece is a few rows; and paced, resting after
    # each piece
    for bursts in (
        PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, alone_burst_ms=0),
        PostgresResource(
            table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=0.01, alone_burst_ms=0, time_share=0.5
        ),
    ):
        pieces.clear()
        assert read_day(bursts, columns).equals(expected_day)
        assert bursts.fingerprints(windows, columns) == expected_fingerprints
        assert bursts.day_summaries(first, last) == expected_summaries
        assert bursts.day_stats(windows) == whole.day_stats(windows)
        assert len(pieces) > 40  # the reads were cut into pieces
    assert LEAST_PIECE_ROWS in pieces  # the short burst came down to the fewest rows a FETCH
    short_pieces = max(pieces)

    # the shipped default while no other application works: longer pieces, the same answers
    pieces.clear()
    alone = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=0.01)
    wait_until_no_other_application_works(dsn)
    assert alone.fingerprints(windows, columns) == expected_fingerprints
    assert alone.day_summaries(first, last) == expected_summaries
    assert max(pieces) > 10 * short_pieces

    # paced, and in bursts (the shipped default): one backend, no parallel workers, no JIT compile (one long piece)
    for reading in (dict(time_share=0.5, max_burst_ms=0), {}):
        with PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, **reading).connect("catalog") as conn:
            assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "0"
            assert conn.execute("SHOW jit").fetchone()[0] == ("on" if reading else "off")
            plans = conn.execute("SHOW plan_cache_mode").fetchone()[0]
            assert plans == ("auto" if reading else "force_generic_plan")  # a slice is not planned each time
    with whole.connect("catalog") as conn:
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] != "0"
        assert conn.execute("SHOW jit").fetchone()[0] == "on"


def read_day(postgres: PostgresResource, columns) -> pa.Table:
    with postgres.stream_day(columns, DayWindow.for_key(DAY)) as batches:
        return pa.Table.from_batches(list(batches)).sort_by("id")


def test_a_burst_is_resized_toward_its_length_at_most_twofold_a_step():
    size = BurstSize(seconds=0.001, size=100, least=16, most=1000)
    size.after(0.0005, 100)  # took half the target: double
    assert size.size == 200
    size.after(0.010, 200)  # ten times too long: halve, no more
    assert size.size == 100
    for _ in range(10):
        size.after(0.0, 100)  # instant: double, up to the most
    assert size.size == 1000
    for _ in range(20):
        size.after(1.0, 1000)
    assert size.size == 16
    size.after(1.0, LEAST_PIECE_ROWS)  # a statement's own cost: cutting finer would not help
    assert size.size == 16


def test_at_the_first_sign_of_other_work_a_piece_is_cut_to_the_short_burst_at_once():
    others = SimpleNamespace(alone=True)  # OthersAtWork's state, as its looks leave it
    size = BurstSize(seconds=0.0003, size=64, least=16, most=65_536, others=others, alone_seconds=0.03)
    assert size.next() == 6400  # alone: the piece may take 100 x as long
    size.after(0.015, 6400)  # took half its 30 ms: double
    assert size.next() == 12_800
    others.alone = False
    assert size.next() == 128  # at once, not halving step by step
    size.after(0.0003, 128)
    assert size.next() == 128


def test_an_empty_slice_that_is_slow_is_not_cut_finer():
    """A time slice's cost is the statement's own when it holds almost no rows: the slice must not shrink
    toward nothing (a day would then take millions of statements)."""
    width = BurstSize(seconds=0.0003, size=60, least=0.001, most=86_400)
    for _ in range(100):
        width.after(0.002, 0)
    assert width.size == 60


def test_a_dense_day_after_empty_days_is_still_counted_in_pieces(pg_server, monkeypatch):
    """The cheap tier's time slices widen over empty days, so the first slice of a dense day after them spans
    hours. It is bounded in rows too (SLICE_ROWS_BOUND bursts' rows): full, it is counted again, narrower, from
    the same start. More rows at one
    instant than a piece holds cannot be cut: that instant, and only it, is counted whole."""
    dsn = create_source_database(pg_server, f"slices_{uuid.uuid4().hex[:8]}")
    seed_records(dsn, [date(2026, 9, 1)], 10, seed=8)  # sparse: no slice reaches its limit
    seed_records(dsn, [date(2026, 11, 20)], 3_000, seed=9)  # dense, after 80 empty days
    instant = "2026-11-20T06:00:00+00:00"
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE records SET created_at = %s WHERE id IN (SELECT id FROM records WHERE created_at >= "
            "'2026-11-20' ORDER BY id LIMIT 300)",
            (instant,),
        )
    first, last = DayWindow.for_key("2026-09-01"), DayWindow.for_key("2026-11-20")
    expected = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=0).day_summaries(first, last)
    assert sum(s.rows for s in expected.values()) == 3_010

    slices: list[tuple] = []  # (start, end, limit) of each slice statement
    execute = psycopg.Connection.execute
    monkeypatch.setattr(
        psycopg.Connection,
        "execute",
        lambda self, query, params=None, **kw: (
            slices.append(params) if "LIMIT" in str(query) else None,
            execute(self, query, params, **kw),
        )[1],
    )
    # bursts so long that every slice is quick: the width grows over the empty days to a whole day
    assert (
        PostgresResource(
            table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=1_000, alone_burst_ms=0
        ).day_summaries(first, last)
        == expected
    )
    dense = [s for s in slices if s[0] >= DayWindow.for_key("2026-11-20").start]
    (start, end, limit), retried = dense[0], dense[1]
    assert end - start == timedelta(days=1) and limit <= SLICE_ROWS_BOUND * FIRST_BURST_ROWS + 1  # bounded
    assert retried[0] == start and retried[1] < end  # full: counted again, narrower, from the same start

    slices.clear()
    # bursts so short that a piece is LEAST_PIECE_ROWS rows: the 300 rows at the instant exceed it
    assert (
        PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=0.01, alone_burst_ms=0).day_summaries(
            first, last
        )
        == expected
    )
    whole = [(s[0], s[1]) for s in slices if s[2] is None]
    assert whole == [
        (datetime.fromisoformat(instant), datetime.fromisoformat(instant) + timedelta(microseconds=1))
    ]
    limits = [s[2] for s in slices if s[2] is not None]
    assert max(limits) <= SLICE_ROWS_BOUND * FIRST_BURST_ROWS + 1  # slow: never grown past the first
    assert min(limits) == LEAST_PIECE_ROWS + 1  # and down to the fewest rows a slice holds


def test_a_paced_read_rests_for_the_rest_of_its_share(dsn, monkeypatch):
    """Each piece of work is followed by a rest of (1 - share) / share times its length; unpaced, none."""
    rests: list[float] = []
    monkeypatch.setattr(time, "sleep", rests.append)
    PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, time_share=0.25).rest_after(0.2)
    PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn).rest_after(0.2)
    assert rests == [pytest.approx(0.6)]


@pytest.mark.parametrize(
    ("variable", "field", "value", "expected"),
    [
        ("DATAVAULT_PG_TIME_SHARE", "time_share", None, 1.0),
        ("DATAVAULT_PG_TIME_SHARE", "time_share", "0.25", 0.25),
        ("DATAVAULT_PG_TIME_SHARE", "time_share", "0", "='0': Input should be greater than 0"),
        ("DATAVAULT_PG_TIME_SHARE", "time_share", "1.5", "='1.5': Input should be less than or equal to 1"),
        ("DATAVAULT_PG_TIME_SHARE", "time_share", "a quarter", "='a quarter'"),
        ("DATAVAULT_PG_MAX_BURST_MS", "max_burst_ms", None, 0.3),
        ("DATAVAULT_PG_MAX_BURST_MS", "max_burst_ms", "0", 0.0),
        ("DATAVAULT_PG_MAX_BURST_MS", "max_burst_ms", "1.5", 1.5),
        (
            "DATAVAULT_PG_MAX_BURST_MS",
            "max_burst_ms",
            "-1",
            "='-1': Input should be greater than or equal to 0",
        ),
        ("DATAVAULT_PG_MAX_BURST_MS", "max_burst_ms", "short", "='short'"),
        ("DATAVAULT_PG_ALONE_BURST_MS", "alone_burst_ms", None, 25.0),
        ("DATAVAULT_PG_ALONE_BURST_MS", "alone_burst_ms", "0", 0.0),
        (
            "DATAVAULT_PG_ALONE_BURST_MS",
            "alone_burst_ms",
            "-5",
            "='-5': Input should be greater than or equal to 0",
        ),
    ],
)
def test_the_pace_comes_from_the_environment_and_bad_values_say_so(
    monkeypatch, variable, field, value, expected
):
    if value is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, value)
    if isinstance(expected, str):
        with pytest.raises(ConfigurationError, match=re.escape(variable + expected)):
            Settings.from_environment("local")
    else:
        settings = Settings.from_environment("local")
        assert getattr(settings, f"pg_{field}") == expected
        assert getattr(build_resources(settings)["postgres"], field) == expected


def test_alone_the_cheap_tier_counts_runs_of_days_and_a_dense_day_among_them_alone(pg_server, monkeypatch):
    """While no other application works, the cheap tier counts many days per statement, each bounded in rows:
    a long history's empty days go many at once, and a dense day among them is cut short there and counted
    alone. The same summaries as one whole statement."""
    dsn = create_source_database(pg_server, f"runs_{uuid.uuid4().hex[:8]}")
    seed_records(dsn, [date(2026, 1, 10)], 5, seed=3)
    seed_records(dsn, [date(2026, 6, 1)], 3_000, seed=4)  # dense, inside a long empty stretch
    seed_records(dsn, [date(2026, 11, 20)], 7, seed=5)
    first, last = DayWindow.for_key("2026-01-01"), DayWindow.for_key("2026-11-30")
    expected = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, max_burst_ms=0).day_summaries(first, last)
    assert sum(s.rows for s in expected.values()) == 3_012

    statements: list[tuple[str, tuple]] = []
    execute = psycopg.Connection.execute
    monkeypatch.setattr(
        psycopg.Connection,
        "execute",
        lambda self, query, params=None, **kw: (
            statements.append((str(query), params)),
            execute(self, query, params, **kw),
        )[1],
    )
    wait_until_no_other_application_works(dsn)
    alone = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, alone_burst_ms=25)
    assert alone.day_summaries(first, last) == expected

    runs = [params for query, params in statements if "unnest" in query]
    days = (last.start - first.start).days + 1
    assert sum(len(p[0]) for p in runs) == days  # every day once, in runs
    assert len(runs) < days / 8 and max(len(p[0]) for p in runs) >= 32  # many days per statement
    counted_alone = [
        params[0]
        for query, params in statements
        if params and len(params) == 2 and "records" in query and "unnest" not in query
    ]
    assert counted_alone == [DayWindow.for_key("2026-06-01").start]  # the dense day, whole, by itself
    assert not [q for q, p in statements if p and len(p) == 3 and "LIMIT" in q]  # no slices: alone throughout
