"""The commands of the embedded local stack: `stack up|down|status|env` and `seed`.

The local stack is not in the production image (pyproject's package exclusion): there these commands say so.
"""

import argparse
import os
import shlex
import time

from datavault_analytics.cli.common import (
    PROG,
    CommandError,
    SubParsers,
    local_stack,
    non_negative_int,
    positive_int,
)


def add_stack_commands(subparsers: SubParsers) -> None:
    stack = subparsers.add_parser(
        "stack",
        help="the embedded local stack: PostgreSQL, S3 (moto), Snowflake (fakesnow) on 127.0.0.1",
        description="State lives in .datavault/ under the current folder. Ports: DATAVAULT_STACK_PG_PORT, "
        "DATAVAULT_STACK_S3_PORT, DATAVAULT_STACK_SNOWFLAKE_PORT (defaults 55432, 55433, 55434).",
    )
    actions = stack.add_subparsers(dest="stack_action", required=True, metavar="ACTION")
    actions.add_parser("up", help="start what is not running, reuse the rest").set_defaults(handler=stack_up)
    actions.add_parser("down", help="stop every part, keeping PostgreSQL and Snowflake data").set_defaults(
        handler=stack_down
    )
    actions.add_parser("status", help="one line per part").set_defaults(handler=stack_status)
    actions.add_parser(
        "env", help='variables for the pipeline: eval "$(datavault-analytics stack env)"'
    ).set_defaults(handler=stack_env)


def add_seed_commands(subparsers: SubParsers) -> None:
    seed = subparsers.add_parser(
        "seed",
        help="append realistic rows to DataVault's tables: encrypted records, and their retrieval log",
        description="Appends rows for the last N full UTC days, ending yesterday. Payloads are encrypted "
        "with a key made for this run and never kept.",
    )
    seed.add_argument(
        "--days", type=positive_int, required=True, help="how many full UTC days, ending yesterday"
    )
    seed.add_argument("--rows-per-day", type=non_negative_int, required=True)
    seed.add_argument("--dsn", help="PostgreSQL DSN (default: $DATAVAULT_PG_DSN, else the local stack's)")
    seed.add_argument(
        "--seed", type=int, help="make the rows reproducible (seeding twice then collides on id)"
    )
    seed.set_defaults(handler=seed_command)


def stack_up(args: argparse.Namespace) -> int:
    stack = local_stack("stack")

    started = time.monotonic()
    for status in stack.stack_up():
        print(status.line())
    paths = stack.StackPaths.at()
    print(f"stack up in {time.monotonic() - started:.1f} s; state and logs in {paths.state_dir}")
    print(f'use it with: eval "$({PROG} stack env)"')
    return 0


def stack_down(args: argparse.Namespace) -> int:
    stack = local_stack("stack")

    for status in stack.stack_down():
        print(status.line())
    return 0


def stack_status(args: argparse.Namespace) -> int:
    stack = local_stack("stack")

    for status in stack.stack_status():
        print(status.line())
    return 0


def stack_env(args: argparse.Namespace) -> int:
    local_environment = local_stack("stack").local_environment

    for name, value in local_environment().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def seed_command(args: argparse.Namespace) -> int:
    import psycopg

    seed = local_stack("seed")
    seed_records, seed_retrieval_log = seed.seed_records, seed.seed_retrieval_log
    local_environment, record_first_day = (
        local_stack("stack").local_environment,
        local_stack("stack").record_first_day,
    )
    from datavault_analytics.redaction import dsn_location

    dsn = args.dsn or os.environ.get("DATAVAULT_PG_DSN")
    hint = ""
    local = local_environment()["DATAVAULT_PG_DSN"]
    if not dsn:
        dsn = local
        hint = f" (is the local stack up? `{PROG} stack up`)"
    where = f"PostgreSQL at {dsn_location(dsn)}"
    started = time.monotonic()
    try:
        results = {
            "records": seed_records(dsn, args.days, args.rows_per_day, seed=args.seed),
            "retrieval_log": seed_retrieval_log(dsn, args.days, args.rows_per_day, seed=args.seed),
        }
    except psycopg.Error as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CommandError(f"seeding {where} failed: {first_line}{hint}") from error
    seeded_days = [day for r in results.values() for day, rows in r.rows_per_day.items() if rows]
    if dsn == local and seeded_days:
        record_first_day(min(seeded_days))
    for table, result in results.items():
        days = sorted(result.rows_per_day)
        print(
            f"seeded {result.total_rows:,} rows into {table} ({args.rows_per_day:,} per day, {days[0]} to "
            f"{days[-1]} UTC) at {where}"
        )
    print(f"seeded in {time.monotonic() - started:.1f} s")
    return 0
