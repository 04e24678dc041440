"""The type matrix's day: the stage step of a wide table of every mapped type beside psql's binary `\\copy` of
the same rows (the stage's own SELECT, casts included). Key `stage_vs_copy_types`, goal <= 1.5.

    python -m bench.types    # this part alone: its own PostgreSQL under bench/.work (or BENCH_PG_DSN), minutes

`make bench` runs it too, between the 10M-row day and the fingerprints.
"""

import os
import shutil
import statistics

import psycopg

from bench.common import (
    WORK,
    Measurement,
    find_psql,
    log,
    run_psql,
    run_stage,
    stage_select,
    start_launcher,
    start_postgres,
    stop_launcher,
)

ROWS = int(os.getenv("BENCH_TYPES_ROWS", "500000"))
REPEATS = int(os.getenv("BENCH_TYPES_REPEATS", "3"))
DAY = "2025-07-01"
TABLE = "public.bench_types"

SCHEMA = """
DO $$ BEGIN CREATE TYPE bench_mood AS ENUM ('sad', 'ok', 'happy'); EXCEPTION WHEN duplicate_object THEN END $$;
DO $$ BEGIN CREATE DOMAIN bench_qty AS integer CHECK (VALUE >= 0); EXCEPTION WHEN duplicate_object THEN END $$;
CREATE TABLE IF NOT EXISTS public.bench_types (
    id bigint PRIMARY KEY, created_at timestamptz NOT NULL, amount numeric(12,2), free numeric, code char(8),
    label varchar(40), t time, ttz timetz, span interval, tags text[], grid integer[], feeling bench_mood,
    qty bench_qty, addr inet, mac macaddr, flags bit(8), price money, payload jsonb, d date, ts timestamp,
    r real, f double precision, b boolean, u uuid, bin bytea, s smallint
);
CREATE INDEX IF NOT EXISTS bench_types_created_at ON public.bench_types (created_at);
"""
SEED = f"""
INSERT INTO public.bench_types SELECT n, TIMESTAMPTZ '{DAY} 00:00:00+00' + n * (INTERVAL '86399 s' / %(rows)s),
    (n %% 100000) / 100.0 - 500, n / 7.0, 'c' || (n %% 1000), 'label ' || n, TIME '00:00' + n * INTERVAL '1 ms',
    TIME WITH TIME ZONE '12:00+02' + n * INTERVAL '1 s', n * INTERVAL '1 minute' + (n %% 13) * INTERVAL '1 month',
    ARRAY['a' || n, NULL, 'b'], ARRAY[n, n + 1, n %% 7], (ARRAY['sad','ok','happy'])[1 + n %% 3]::bench_mood,
    n %% 500, ('10.' || (n %% 250) || '.' || (n %% 200) || '.1')::inet, '08:00:2b:01:02:03'::macaddr,
    (n %% 256)::bit(8), (n %% 100000)::numeric::money, jsonb_build_object('n', n, 'tags', ARRAY['x', 'y']),
    DATE '{DAY}' - (n %% 3650), TIMESTAMP '{DAY} 00:00' - n * INTERVAL '1 s', n / 3.0, n / 7.0, n %% 2 = 0,
    md5(n::text)::uuid, decode(md5(n::text), 'hex'), (n %% 32000)::smallint
FROM generate_series(1, %(rows)s) AS n
"""  # noqa: S608 - constants only


def ensure_seeded(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        (rows,) = conn.execute("SELECT count(*) FROM public.bench_types").fetchone()
        if rows != ROWS:
            log(f"seeding {ROWS:,} rows of every mapped type into {TABLE}")
            conn.execute("TRUNCATE public.bench_types")
            conn.execute(SEED, {"rows": ROWS})
            conn.execute("VACUUM ANALYZE public.bench_types")


def _spec():
    from datavault_analytics.table.spec import TableSpec

    return TableSpec(
        postgres_schema="public",
        postgres_table="bench_types",
        snowflake_table="BENCH_TYPES",
        partition_column="created_at",
        primary_key=["id"],
    )


def measure(psql: str, dsn: str) -> dict:
    """Median seconds of each side over REPEATS rounds, and their ratio."""
    ensure_seeded(dsn)
    select = stage_select(dsn, _spec(), DAY)
    stage = WORK / "stage-types"
    run_psql(psql, dsn, select, "warm-up")
    runs: dict[str, list[Measurement]] = {"psql types": [], "stage types": [], "stage types (whole)": []}
    for round_number in range(1, REPEATS + 1):
        log(
            f"type matrix day ({ROWS:,} rows, {select.count(' AS ')} columns), round {round_number}/{REPEATS}"
        )
        for name, run in (
            ("psql types", lambda: run_psql(psql, dsn, select, "psql types")),
            ("stage types", lambda: _stage(dsn, stage)),
            ("stage types (whole)", lambda: _stage(dsn, stage, max_burst_ms=0)),
        ):
            measured = run()
            runs[name].append(measured)
            log(f"  {name:<24} {measured.seconds:6.2f} s  peak RSS {measured.peak_rss_mb:5.0f} MB")
    shutil.rmtree(stage, ignore_errors=True)
    for measured in runs["stage types"] + runs["stage types (whole)"]:
        if measured.report.get("rows") != ROWS:
            raise RuntimeError(
                f"the type matrix's stage step staged {measured.report.get('rows')} rows, not {ROWS}"
            )
    psql_s = statistics.median(m.seconds for m in runs["psql types"])
    stage_s = statistics.median(m.seconds for m in runs["stage types"])
    whole_s = statistics.median(m.seconds for m in runs["stage types (whole)"])
    return {
        "rows": ROWS,
        "psql_seconds": psql_s,
        "stage_seconds": stage_s,
        "stage_seconds_whole": whole_s,
        "stage_vs_copy_types": stage_s / psql_s,
        "stage_vs_copy_types_whole": whole_s / psql_s,
    }


def _stage(dsn: str, stage, max_burst_ms: float | None = None) -> Measurement:
    shutil.rmtree(stage, ignore_errors=True)
    return run_stage(
        "stage types",
        dsn,
        DAY,
        f"file://{stage}",
        max_burst_ms=max_burst_ms,
        table=["--table", TABLE, "--partition-column", "created_at", "--primary-key", "id"],
    )


def line(figures: dict) -> str:
    return (
        f"| type matrix day ({figures['rows']:,} rows): stage step <= 1.5 x psql binary COPY | "
        f"{figures['stage_vs_copy_types']:.2f} x in bursts, the shipped default ({figures['stage_seconds']:.2f} s / "
        f"{figures['psql_seconds']:.2f} s); {figures['stage_vs_copy_types_whole']:.2f} x as one statement "
        f"({figures['stage_seconds_whole']:.2f} s) | "
        f"{'met' if figures['stage_vs_copy_types'] <= 1.5 else 'missed'} |"
    )


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    start_launcher()
    server = None
    try:
        if os.getenv("BENCH_PG_DSN"):
            dsn = os.environ["BENCH_PG_DSN"]
        else:
            server = start_postgres()
            from bench.common import BENCH_DATABASE

            dsn = server.dsn(BENCH_DATABASE)
        figures = measure(find_psql(), dsn)
    finally:
        stop_launcher()
        if server is not None:
            server.stop()
    print(line(figures))
    print(
        f"bench: stage_vs_copy_types={figures['stage_vs_copy_types']:.2f} "
        f"stage_vs_copy_types_whole={figures['stage_vs_copy_types_whole']:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
