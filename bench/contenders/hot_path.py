"""Contender: DataVault's own work on its PostgreSQL while the pipeline runs: Retrieve and ingest.

Retrieve: `--threads` clients, each selecting one record by a random existing id `--rate` times a second, as
the gRPC handler does. The ids are a fixed sample (`--sample-seed`), read once before the clients start.
With `--latencies`, each Retrieve's latency is also written with the time it ended, so that the bench can
tell the ones during the pipeline's work from the ones in the quiet seconds beside it. Ingest: rows inserted
at `--ingest-rows-per-second`, in batches of ten. Until SIGTERM; then prints one JSON line: latencies, the
ingest rate achieved, and the oldest snapshot and dead tuples seen.
"""

import argparse
import json
import os
import random
import signal
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg

BATCH = 10
INGEST_OWNER = -4242  # marks the rows this workload inserts, so that they can be removed afterwards


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def retrieve(
    dsn: str, ids: list, rate: float, stop: threading.Event, timed: list[tuple[float, float]]
) -> None:
    with psycopg.connect(dsn, autocommit=True, application_name="datavault retrieve (bench)") as conn:
        interval, next_at = 1 / rate, time.perf_counter()
        while not stop.is_set():
            started = time.perf_counter()
            conn.execute(
                "SELECT ciphertext, nonce FROM records WHERE id = %s", (random.choice(ids),)
            ).fetchone()
            latency_ms = (time.perf_counter() - started) * 1000
            timed.append((time.monotonic(), latency_ms))  # the clock the bench marks its phases with
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))


def ingest(dsn: str, rows_per_second: float, stop: threading.Event, counts: dict) -> None:
    with psycopg.connect(dsn, autocommit=True, application_name="datavault ingest (bench)") as conn:
        interval, next_at = BATCH / rows_per_second, time.perf_counter()
        while not stop.is_set():
            now = datetime.now(UTC)
            rows = [
                (uuid.uuid4(), INGEST_OWNER, "bench", os.urandom(300), os.urandom(12), now)
                for _ in range(BATCH)
            ]
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO records (id, owner_id, key, ciphertext, nonce, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    rows,
                )
            counts["rows"] += BATCH
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))


def sample(dsn: str, stop: threading.Event, samples: list[dict]) -> None:
    """Each second: the oldest snapshot another session holds (xid age, seconds) and the table's dead tuples."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.wait(1.0):
            age, seconds = conn.execute(
                "SELECT max(age(backend_xmin)), max(extract(epoch FROM now() - xact_start)) "
                "FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() "
                "AND application_name NOT LIKE '%(bench)'"
            ).fetchone()
            [dead] = conn.execute(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'records'"
            ).fetchone()
            samples.append(
                {"xmin_age": int(age or 0), "snapshot_seconds": float(seconds or 0), "dead": int(dead)}
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100, help="Retrieve calls per second, per thread")
    parser.add_argument("--ingest-rows-per-second", type=float, default=500)
    parser.add_argument("--sample-seed", type=int, default=20, help="which records Retrieve reads")
    parser.add_argument("--latencies", help="also write each Retrieve's [monotonic end, ms] here, as JSON")
    args = parser.parse_args()

    # The same ids in every phase, each read once before the phase starts: every phase begins with Retrieve's
    # pages in memory, so it measures what the pipeline costs, not what the page cache lost since the phase
    # before (this machine's proactive reclaim pages out file pages unused for about a minute).
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM records TABLESAMPLE SYSTEM (1) REPEATABLE (%s) LIMIT 20000",
                (args.sample_seed,),
            )
        ]
        warm_started = time.perf_counter()
        for chosen in ids:
            conn.execute("SELECT ciphertext, nonce FROM records WHERE id = %s", (chosen,)).fetchone()
        warm_seconds = time.perf_counter() - warm_started
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    timed: list[tuple[float, float]] = []  # each Retrieve's end and latency in ms
    counts = {"rows": 0}
    samples: list[dict] = []
    threads = [
        threading.Thread(target=retrieve, args=(args.dsn, ids, args.rate, stop, timed), daemon=True)
        for _ in range(args.threads)
    ]
    threads += [
        threading.Thread(
            target=ingest, args=(args.dsn, args.ingest_rows_per_second, stop, counts), daemon=True
        ),
        threading.Thread(target=sample, args=(args.dsn, stop, samples), daemon=True),
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    while not stop.wait(0.2):
        pass
    seconds = time.perf_counter() - started
    for thread in threads:
        thread.join(timeout=10)
    if args.latencies:
        with open(args.latencies, "w") as out:
            json.dump(sorted(timed), out)
    latencies = [ms for _, ms in timed]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "warm_up_seconds": warm_seconds,
                "retrievals": len(latencies),
                "p50_ms": percentile(latencies, 0.50),
                "p99_ms": percentile(latencies, 0.99),
                "p999_ms": percentile(latencies, 0.999),
                "ingest_target": args.ingest_rows_per_second,
                "ingest_achieved": counts["rows"] / seconds,
                "xmin_age_max": max((s["xmin_age"] for s in samples), default=0),
                "snapshot_seconds_max": max((s["snapshot_seconds"] for s in samples), default=0.0),
                "dead_tuples_max": max((s["dead"] for s in samples), default=0),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
