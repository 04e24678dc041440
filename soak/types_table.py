"""The soak's table of the types beyond records' and retrieval_log's (README, "Every PostgreSQL core type
travels"): numerics, an enum and a domain, arrays, char(n), time, timetz, interval, inet, macaddr, bit(n),
money, jsonb, a naive timestamp. It lives in the soak's own code location (soak/code_location.py,
soak/defs/soak_types). A row's values are SQL expressions of its number, so seeding a day is one INSERT.
"""

from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

import psycopg

SOAK_DEFS_FOLDER = Path(__file__).parent / "defs"  # the soak's own tables' defs.yaml (soak/code_location.py)
TABLE = "soak_types"
DDL = """
DO $$ BEGIN CREATE TYPE soak_mood AS ENUM ('sad', 'ok', 'happy'); EXCEPTION WHEN duplicate_object THEN END $$;
DO $$ BEGIN CREATE DOMAIN soak_qty AS integer CHECK (VALUE >= 0); EXCEPTION WHEN duplicate_object THEN END $$;
CREATE TABLE IF NOT EXISTS public.soak_types (
    id bigint PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz,
    amount numeric(12,2), free numeric, code char(8), label varchar(40), t time, ttz timetz, span interval,
    tags text[], grid integer[], feeling soak_mood, qty soak_qty, addr inet, mac macaddr, flags bit(8),
    price money, payload jsonb, d date, ts timestamp, r real, f double precision, b boolean, u uuid, s smallint
);
CREATE INDEX IF NOT EXISTS soak_types_created_at ON public.soak_types (created_at) INCLUDE (updated_at);
"""
# Every column but id, created_at and updated_at, from a row's number `{n}` (below 10**9); some NULLs. `%%`:
# the statements take parameters.
_VALUES = """
    CASE WHEN {n} %% 11 = 0 THEN NULL ELSE ({n} %% 100000) / 100.0 - 500 END, {n} / 7.0, 'c' || ({n} %% 1000),
    'label ' || {n}, TIME '00:00' + {n} * INTERVAL '1 ms', TIME WITH TIME ZONE '12:00+02' + {n} * INTERVAL '1 s',
    {n} * INTERVAL '1 minute' + ({n} %% 13) * INTERVAL '1 month',
    CASE WHEN {n} %% 7 = 0 THEN NULL ELSE ARRAY['a' || {n}, NULL, 'b'] END, ARRAY[{n}, {n} + 1, {n} %% 7],
    (ARRAY['sad', 'ok', 'happy'])[1 + {n} %% 3]::soak_mood, {n} %% 500,
    ('10.' || ({n} %% 250) || '.' || ({n} %% 200) || '.1')::inet, '08:00:2b:01:02:03'::macaddr,
    ({n} %% 256)::bit(8), ({n} %% 100000)::numeric::money,
    jsonb_build_object('n', {n}, 'tags', ARRAY['x', 'y'], 'city', 'Zürich'), DATE '2026-01-01' - ({n} %% 3650)::integer,
    TIMESTAMP '2026-01-01 00:00' - {n} * INTERVAL '1 s', {n} / 3.0, {n} / 7.0, {n} %% 2 = 0,
    md5({n}::text)::uuid, ({n} %% 32000)::smallint
"""
COLUMNS = (
    "id, created_at, updated_at, amount, free, code, label, t, ttz, span, tags, grid, feeling, qty, addr, mac, "
    "flags, price, payload, d, ts, r, f, b, u, s"
)
INSERT_ONE = (
    f"INSERT INTO public.soak_types ({COLUMNS}) SELECT n, %(at)s, %(updated)s, {_VALUES.format(n='n')} "  # noqa: S608
    "FROM (SELECT %(n)s::bigint AS n) AS one ON CONFLICT (id) DO NOTHING"
)
SEED_DAY = (
    f"INSERT INTO public.soak_types ({COLUMNS}) SELECT n, %(day)s::timestamptz + (n - %(first)s) * "  # noqa: S608
    f"(INTERVAL '86399 s' / %(rows)s), NULL, {_VALUES.format(n='n')} "
    "FROM generate_series(%(first)s::bigint, %(first)s::bigint + %(rows)s - 1) AS n"
)
# A change of a row's values that a later version of the backend could make: new numbers in half the columns.
UPDATE_ONE = (
    "UPDATE public.soak_types SET amount = %(amount)s, span = span + INTERVAL '1 day 2 hours', "
    "tags = array_append(coalesce(tags, ARRAY[]::text[]), 'changed'), addr = '192.168.7.7', "
    "payload = payload || jsonb_build_object('changed', true), ts = ts + INTERVAL '1 s' {bump}WHERE id = %(id)s"
)


def create(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)


def seed(dsn: str, days: Iterable[date], rows_per_day: int) -> None:
    """rows_per_day rows for each day, numbered from 1 in day order (the writer's own rows are numbered from
    10**8, above any seed)."""
    with psycopg.connect(dsn) as conn:
        for index, day in enumerate(sorted(days)):
            conn.execute(
                SEED_DAY,
                {
                    "day": datetime(day.year, day.month, day.day).isoformat() + "+00:00",
                    "rows": rows_per_day,
                    "first": 1 + index * rows_per_day,
                },
            )
