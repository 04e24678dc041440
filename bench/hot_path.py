"""One part of the benchmark alone: DataVault's hot path while the pipeline reads its database, with PostgreSQL
on a CPU of its own (`make bench PART=hot_path`, about 12 minutes).

The isolated phases of bench/run.py (idle; the 1M-row day's stage step with whole statements, 3 ms, 1 ms and
the shipped bursts; a 30-day backfill and the drift scan, each with whole statements and with the shipped
bursts), then psql's binary `\\copy` of the same day on the same CPUs, three times, for the stage step's
speed against it. Prints the phases' table and a `bench:` line; writes bench/.work/hot_path.json.
"""

import json
import shutil
import statistics
import time

from bench.common import (
    BENCH_DATABASE,
    DAY_1M,
    WORK,
    ensure_seeded,
    find_psql,
    log,
    run_psql,
    stage_select,
    start_launcher,
    start_postgres,
    stop_launcher,
)
from bench.cpu_isolation import postgres_on_its_own_cpu
from bench.run import (
    BUCKET,
    DRIFT_PHASE,
    ISOLATED,
    WHOLE,
    _records_spec,
    burst_label,
    hot_path_table,
    p99_ratio,
    run_hot_path,
    s3_client,
    start_moto,
    start_snowflake,
)

STAGE = "stage step (1M-row day)"


def main() -> None:
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    start_launcher()
    psql = find_psql()
    server = start_postgres()
    dsn = server.dsn(BENCH_DATABASE)
    moto = snowflake = None
    try:
        ensure_seeded(dsn)
        moto = start_moto()
        s3_client(moto.url).create_bucket(Bucket=BUCKET)
        snowflake, snowflake_port = start_snowflake(moto.url)
        day = DAY_1M.days[0].isoformat()
        log("DataVault's hot path, PostgreSQL on its own CPU: idle, stage step, backfill, drift scan")
        hot_path = run_hot_path(dsn, day, moto.url, snowflake_port, server.pid(), shared=False)
        select = stage_select(dsn, _records_spec(), day)
        with postgres_on_its_own_cpu(server.pid()):
            psql_seconds = statistics.median(
                run_psql(psql, dsn, select, "psql, isolated").seconds for _ in range(3)
            )
    finally:
        stop_launcher()
        for process in (snowflake, moto):
            if process is not None:
                process.stop()
        shutil.rmtree(WORK / "snowflake", ignore_errors=True)
        server.stop()

    stage = hot_path[STAGE + ISOLATED]["stage_seconds"]
    figures = {
        "retrieve_p99_ratio": p99_ratio(hot_path, "backfill" + ISOLATED),
        "retrieve_p99_ratio_drift": p99_ratio(hot_path, DRIFT_PHASE + ISOLATED),
        "retrieve_p99_ratio_stage": p99_ratio(hot_path, STAGE + ISOLATED),
        "retrieve_p99_ratio_whole": p99_ratio(hot_path, "backfill" + burst_label(WHOLE) + ISOLATED),
        "stage_seconds_1m": stage,
        "stage_seconds_1m_whole": hot_path[STAGE + burst_label(WHOLE) + ISOLATED]["stage_seconds"],
        "psql_seconds_1m": psql_seconds,
        # under the Retrieve workload, in a loop: the speed the goal of >= 50 % of psql's is about
        "copy_speed_share": psql_seconds / stage,
    }
    (WORK / "hot_path.json").write_text(json.dumps({"hot_path": hot_path, "figures": figures}, indent=1))
    print("\n".join(hot_path_table(hot_path)))
    print(f"\n(in {(time.monotonic() - started) / 60:.1f} min)")
    print("bench: " + " ".join(f"{name}={value:.2f}" for name, value in figures.items()), flush=True)


if __name__ == "__main__":
    main()
