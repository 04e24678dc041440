"""Contender: one tier of the drift scan, on one side, as the drift sensor runs it.

    python -m bench.contenders.drift_scan --tier cheap --side postgres --dsn DSN --first D --last D
    python -m bench.contenders.drift_scan --tier cheap --side snowflake --dsn DSN --snowflake-port P ...
    python -m bench.contenders.drift_scan --tier content --side postgres --dsn DSN --day D

`--postmaster-pid` adds the PostgreSQL CPU seconds the tier cost: the live backends' CPU plus what the
postmaster has reaped from backends that ended. `--sample-transactions` (in runs of its own, since its
session costs CPU too) samples pg_stat_activity every 5 ms for our sessions' transactions: how long one was
open before its current statement began, and the longest it sat idle in a transaction. Prints one JSON line.
"""

import argparse
import json
import os
import threading
import time

import psycopg

from bench.contenders.fingerprint import loader
from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.stage.manifest import staged_columns
from datavault_analytics.table.day_window import DayWindow

RECORDS_SPEC = configured_table("records").spec  # the table the bench reads and loads

CLOCK = os.sysconf("SC_CLK_TCK")
# A statement that began after its transaction did ran after another statement of that transaction.
# COMMIT and ROLLBACK are left out: they end a transaction, whatever ran in it.
SAMPLE = (
    "SELECT max(extract(epoch FROM query_start - xact_start)) FILTER (WHERE state = 'active' AND query !~* "
    "'^\\s*(COMMIT|ROLLBACK)'), max(extract(epoch FROM now() - state_change)) FILTER (WHERE state = "
    "'idle in transaction') FROM pg_stat_activity WHERE application_name LIKE 'datavault-analytics %'"
)


def postgres_cpu_seconds(postmaster: int) -> float:
    """The cluster's backends' CPU so far: the live ones', and the ended ones' the postmaster reaped."""

    def fields(pid: int) -> list[str]:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()

    own = fields(postmaster)
    total = int(own[13]) + int(own[14])  # cutime, cstime: children that ended
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                child = fields(int(entry))
            except OSError:
                continue
            if int(child[1]) == postmaster:  # ppid
                total += int(child[11]) + int(child[12])  # utime, stime
    return total / CLOCK


class TransactionSampler(threading.Thread):
    """Samples our sessions in pg_stat_activity until stopped."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn, self.stopped = dsn, threading.Event()
        self.open_before_statement = self.idle_in_transaction = 0.0
        self.samples = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stopped.is_set():
                before, idle = conn.execute(SAMPLE).fetchone()
                self.open_before_statement = max(self.open_before_statement, float(before or 0))
                self.idle_in_transaction = max(self.idle_in_transaction, float(idle or 0))
                self.samples += 1
                time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tier", choices=("cheap", "content"), required=True)
    parser.add_argument("--side", choices=("postgres", "snowflake"), required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--first")
    parser.add_argument("--last")
    parser.add_argument("--day")
    parser.add_argument("--snowflake-port", type=int)
    parser.add_argument("--schema", default="FINGERPRINT")
    parser.add_argument("--postmaster-pid", type=int)
    parser.add_argument("--sample-transactions", action="store_true")
    parser.add_argument(
        "--max-burst-ms", type=float, help="PostgresResource.max_burst_ms; unset: the default"
    )
    parser.add_argument(
        "--alone-burst-ms", type=float, help="PostgresResource.alone_burst_ms; unset: the default"
    )
    args = parser.parse_args()

    bursts = {
        name: value
        for name, value in (("max_burst_ms", args.max_burst_ms), ("alone_burst_ms", args.alone_burst_ms))
        if value is not None
    }
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=args.dsn, **bursts)
    sampler = TransactionSampler(args.dsn)
    if args.sample_transactions:
        sampler.start()
        time.sleep(0.1)
    cpu_before = postgres_cpu_seconds(args.postmaster_pid) if args.postmaster_pid else None
    started = time.perf_counter()
    if args.tier == "cheap":
        first, last = DayWindow.for_key(args.first), DayWindow.for_key(args.last)
        side = postgres if args.side == "postgres" else loader(args)
        summaries = side.day_summaries(first, last)
        rows, days = sum(s.rows for s in summaries.values()), len(summaries)
    else:
        window = DayWindow.for_key(args.day)
        columns = postgres.source_columns()
        started = time.perf_counter()
        if args.side == "postgres":
            fingerprint = postgres.fingerprints([window], columns)[args.day]
        else:
            fingerprint, _ = loader(args).fingerprints([window], staged_columns(columns))[args.day]
        rows, days = fingerprint.rows, 1
    seconds = time.perf_counter() - started
    time.sleep(0.3)  # the ended backend is reaped, and the sampler's last look is taken
    cpu = postgres_cpu_seconds(args.postmaster_pid) - cpu_before if args.postmaster_pid else None
    if args.sample_transactions:
        sampler.stopped.set()
        sampler.join()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": rows,
                "days": days,
                "postgres_cpu_seconds": cpu,
                "open_before_statement_s": sampler.open_before_statement,
                "idle_in_transaction_s": sampler.idle_in_transaction,
                "samples": sampler.samples,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
