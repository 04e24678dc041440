"""`seed`: realistic, really encrypted rows, the right count on the right days, edges included."""

import os
import re
import subprocess
import sys
import zlib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from datavault_analytics.local_stack.postgres_server import PostgresServer
from datavault_analytics.local_stack.seed import (
    CIPHERTEXT_MAX_BYTES,
    CIPHERTEXT_MIN_BYTES,
    generate_records,
    last_full_days,
    seed_records,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 4)]
ROWS_PER_DAY = 400


@pytest.fixture(scope="module")
def seeded_dsn(pg_server: PostgresServer) -> str:
    pg_server.create_database("seed_test")
    dsn = pg_server.dsn("seed_test")
    result = seed_records(dsn, DAYS, ROWS_PER_DAY, seed=11)
    assert result.rows_per_day == dict.fromkeys(DAYS, ROWS_PER_DAY)
    assert result.total_rows == len(DAYS) * ROWS_PER_DAY
    return dsn


def test_rows_per_utc_day(seeded_dsn: str) -> None:
    with psycopg.connect(seeded_dsn) as conn:
        counts = conn.execute(
            "select (created_at at time zone 'UTC')::date, count(*) from records group by 1 order by 1"
        ).fetchall()
    assert counts == [(day, ROWS_PER_DAY) for day in DAYS]


def test_every_day_has_rows_on_both_edges(seeded_dsn: str) -> None:
    with psycopg.connect(seeded_dsn) as conn:
        created = {row[0] for row in conn.execute("select created_at from records")}
    for day in DAYS:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1) - timedelta(microseconds=1)
        assert start in created and end in created, day
        assert any(start < at < start + timedelta(seconds=1) for at in created), day
        assert any(end - timedelta(seconds=1) < at < end for at in created), day


def test_columns_look_like_datavault_rows(seeded_dsn: str) -> None:
    with psycopg.connect(seeded_dsn) as conn:
        rows = conn.execute(
            "select id, owner_id, key, ciphertext, nonce, created_at, updated_at from records"
        ).fetchall()
    assert len({row[0] for row in rows}) == len(rows)
    for record_id, owner_id, key, ciphertext, nonce, created_at, updated_at in rows:
        assert re.fullmatch(rf"owner-{owner_id}/doc-{record_id}", key)
        assert 0 < owner_id < 2**63
        assert CIPHERTEXT_MIN_BYTES <= len(ciphertext) <= CIPHERTEXT_MAX_BYTES  # the 16-byte GCM tag included
        assert len(nonce) == 12
        assert updated_at is None or updated_at > created_at
    updated = sum(row[6] is not None for row in rows)
    assert 0.05 * len(rows) < updated < 0.3 * len(rows)
    lengths = {len(row[3]) for row in rows}
    assert min(lengths) < 230 and max(lengths) > 370, "sizes spread over the whole range"


def test_payloads_are_ciphertext_not_plaintext(seeded_dsn: str) -> None:
    with psycopg.connect(seeded_dsn) as conn:
        rows = conn.execute("select id, ciphertext, nonce from records limit 500").fetchall()
    payloads = b"".join(bytes(row[1]) for row in rows)
    # Random bytes do not compress; the JSON documents inside would.
    assert len(zlib.compress(payloads, 9)) > 0.99 * len(payloads)
    assert b'"body"' not in payloads and b'{"id"' not in payloads
    assert len({bytes(row[2]) for row in rows}) == len(rows), "nonces are never reused"
    record_id, ciphertext, nonce = rows[0]
    with pytest.raises(InvalidTag):
        AESGCM(AESGCM.generate_key(bit_length=256)).decrypt(bytes(nonce), bytes(ciphertext), record_id.bytes)


def test_the_same_seed_gives_the_same_rows_and_no_seed_gives_fresh_ones() -> None:
    now = datetime(2026, 3, 10, tzinfo=UTC)
    first = list(generate_records(DAYS[:1], 50, seed=5, now=now))
    assert first == list(generate_records(DAYS[:1], 50, seed=5, now=now))
    assert first != list(generate_records(DAYS[:1], 50, seed=6, now=now))
    unseeded = [row[0] for row in generate_records(DAYS[:1], 50)]
    assert not set(unseeded) & {row[0] for row in generate_records(DAYS[:1], 50)}
    assert [row[5] for row in first] == sorted(row[5] for row in first)


def test_last_full_days_end_yesterday() -> None:
    assert last_full_days(3, today=date(2026, 3, 1)) == [
        date(2026, 2, 26),
        date(2026, 2, 27),
        date(2026, 2, 28),
    ]
    assert last_full_days(0, today=date(2026, 3, 1)) == []


def test_seed_command_appends_fresh_rows_for_the_last_days_and_never_prints_the_dsn_password(
    pg_server: PostgresServer,
) -> None:
    pg_server.create_database("seed_cli_test")
    # Trust auth ignores the password: it is only here to prove it is never printed.
    dsn = pg_server.dsn("seed_cli_test").replace("postgres@", "postgres:not-to-be-printed@")
    command = [sys.executable, "-m", "datavault_analytics.cli", "seed", "--days", "2", "--rows-per-day", "30"]
    environ = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    for _ in range(2):
        result = subprocess.run(
            [*command, "--dsn", dsn], env=environ, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "seeded 60 rows" in result.stdout
        assert "not-to-be-printed" not in result.stdout + result.stderr

    with psycopg.connect(pg_server.dsn("seed_cli_test")) as conn:
        counts = conn.execute(
            "select (created_at at time zone 'UTC')::date, count(*), count(distinct id) from records group "
            "by 1 order by 1"
        ).fetchall()
    assert counts == [(day, 60, 60) for day in last_full_days(2)]


def test_seed_command_fails_in_one_line_when_postgres_is_unreachable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "datavault_analytics.cli", "seed", "--days", "1", "--rows-per-day", "1"],
        env=dict(
            os.environ,
            PYTHONPATH=str(REPO_ROOT),
            DATAVAULT_PG_DSN="postgresql://postgres:pw-never-shown@127.0.0.1:1/x",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("datavault-analytics: error: seeding PostgreSQL at 127.0.0.1:1/x failed")
    assert result.stderr.count("\n") == 1 and "pw-never-shown" not in result.stderr
