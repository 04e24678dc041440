"""`datavault-analytics`: the project's command line.

Each `add_*_commands` adds a group of commands whose handlers return the exit code; an expected failure
(EXPECTED_ERRORS) prints one line and exits 1. Heavy modules are imported inside handlers.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from datavault_analytics.cli.common import (
    PROG,
    CommandError,
    SubParsers,
    day,
    expected_errors,
    local_stack,
    positive_int,
)
from datavault_analytics.cli.local import add_seed_commands, add_stack_commands


def add_pipeline_commands(subparsers: SubParsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="materialize the last N days through Dagster and print the per-day reconciliation",
        description="The main job of `make demo`: runs the stage and Snowflake assets for the last N full UTC "
        "days (ending yesterday) and compares each day in PostgreSQL and Snowflake. Exit 0 only if every day "
        "matches.",
    )
    demo.add_argument("--days", type=positive_int, default=7)
    _add_tables_option(demo)
    demo.set_defaults(handler=demo_command)

    backfill = subparsers.add_parser(
        "backfill",
        help="materialize a range of days through Dagster, with progress, then reconcile",
        description="Runs `dg launch --partition-range` for each chunk of --days-per-run days, against the "
        "Dagster instance in $DAGSTER_HOME, printing each day as it lands. Exit 0 only if every day matches "
        "afterwards.",
    )
    backfill.add_argument("start", type=day, help="first day, YYYY-MM-DD")
    backfill.add_argument("end", type=day, help="last day, YYYY-MM-DD (inclusive)")
    backfill.add_argument("--days-per-run", type=positive_int, default=31)
    _add_tables_option(backfill)
    backfill.set_defaults(handler=backfill_command)

    report = subparsers.add_parser(
        "report", help="per-day reconciliation of PostgreSQL and Snowflake (counts and content hashes)"
    )
    report.add_argument("start", type=day)
    report.add_argument("end", type=day)
    _add_tables_option(report)
    report.set_defaults(handler=report_command)


def add_trace_command(subparsers: SubParsers) -> None:
    trace = subparsers.add_parser(
        "trace",
        help="where one record is present right now: PostgreSQL, the staged files, Snowflake",
        description="Looks the record up in PostgreSQL and in the Snowflake table, and scans the staged "
        "Parquet files of its day (from either side, or --day; if neither knows it, every day the stage "
        "still holds) for its id. Prints one line per place, and how long Snowflake's Time Travel keeps a "
        "deleted row. Prints no payload.",
    )
    trace.add_argument("record_id", help="the record's id (a UUID)")
    trace.add_argument(
        "--day", type=day, action="append", default=[], help="also scan this day's staged files (repeatable)"
    )
    trace.add_argument(
        "--expect-absent",
        action="store_true",
        help="exit 1 if the record is present anywhere: the proof of an erasure",
    )
    trace.add_argument(
        "--table", default="records", help="the configured table to look in (default: records)"
    )
    trace.set_defaults(handler=trace_command)


def add_snowflake_commands(subparsers: SubParsers) -> None:
    snowflake = subparsers.add_parser("snowflake", help="checks against the configured Snowflake account")
    actions = snowflake.add_subparsers(dest="snowflake_action", required=True, metavar="ACTION")
    preflight = actions.add_parser(
        "preflight",
        help="prove, without touching the target table, that a load will be exact",
        description="Checks the connection, role, warehouse, database and schema, the session parameters, the "
        "target table, the stage object and its listing, then COPYs a canary file of awkward rows with the "
        "production COPY into a TEMPORARY table and compares it. One line per check; exit 1 if any fails. "
        "Run it "
        "before the first load on a real account.",
    )
    preflight.add_argument(
        "--table", default="records", help="the configured table whose target is checked (default: records)"
    )
    preflight.set_defaults(handler=snowflake_preflight)


def add_tables_commands(subparsers: SubParsers) -> None:
    tables = subparsers.add_parser(
        "tables", help="the configured tables (datavault_analytics/defs/*/defs.yaml)"
    )
    actions = tables.add_subparsers(dest="tables_action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="connect and report every problem of every configured table at once",
        description="Reads PostgreSQL's catalog (no rows) for each table and prints what its first run would "
        "fail on (missing columns, unmapped types, a nullable or wrongly typed partition column) and what "
        "would make its runs slow or unchecked (no index led by the partition column, no unique index on the "
        "key), with each column's Snowflake type. Exit 1 if any table has a problem.",
    )
    check.add_argument("names", nargs="*", metavar="NAME", help="configured tables (default: every table)")
    check.set_defaults(handler=tables_check_command)


def tables_check_command(args: argparse.Namespace) -> int:
    from datavault_analytics.cli.tables import check_table

    reports = []
    with _configured_resources("postgres") as built:
        for table in _tables(args.names):
            report = check_table(table, built.postgres.for_table(table.spec))
            reports.append(report)
            for line in report.lines():
                print(line)
    failing = [r.table.name for r in reports if r.problems]
    print(
        f"{len(reports) - len(failing)} of {len(reports)} tables can be loaded"
        + (f"; fix {', '.join(failing)} first" if failing else "")
    )
    return 1 if failing else 0


def _add_tables_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table",
        dest="tables",
        action="append",
        default=[],
        metavar="TABLE",
        help="a configured table (datavault_analytics/defs/<TABLE>/defs.yaml); repeatable; default: every table",
    )


COMMAND_GROUPS: list[Callable[[SubParsers], None]] = [
    add_stack_commands,
    add_seed_commands,
    add_pipeline_commands,
    add_trace_command,
    add_snowflake_commands,
    add_tables_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="DataVault's PostgreSQL records -> S3 Parquet stage -> Snowflake, on Dagster."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except expected_errors() as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def demo_command(args: argparse.Namespace) -> int:
    last_full_days = local_stack("seed").last_full_days

    days = last_full_days(args.days)
    return _backfill_and_report(_tables(args.tables), days[0], days[-1], days_per_run=31)


def backfill_command(args: argparse.Namespace) -> int:
    return _backfill_and_report(_tables(args.tables), args.start, args.end, days_per_run=args.days_per_run)


def report_command(args: argparse.Namespace) -> int:
    return _print_reconciliation(_use_configured_environment(), _tables(args.tables), args.start, args.end)


def _tables(names: list[str]) -> list:
    """The configured tables named (default: all), each as its TablePipeline; an unknown name is an error."""
    from datavault_analytics.components.datavault_table import configured_table, configured_tables

    settings = _use_configured_environment()  # the tables' YAML reads the environment too
    try:
        return [configured_table(name, settings) for name in (names or configured_tables())]
    except ValueError as error:
        raise CommandError(str(error)) from None


def trace_command(args: argparse.Namespace) -> int:
    from datavault_analytics.cli.trace import InvalidRecordIdError, trace_record
    from datavault_analytics.errors import PermanentError, TransientError
    from datavault_analytics.redaction import redact_known_secrets

    [table] = _tables([args.table])
    with _configured_resources("postgres", "s3_stage", "snowflake_loader") as built:
        loader = built.snowflake_loader.for_table(table.spec)
        try:
            trace = trace_record(
                args.record_id,
                built.postgres.for_table(table.spec),
                loader,
                built.s3_stage.for_table(table.spec),
                [d.isoformat() for d in args.day],
            )
        except InvalidRecordIdError as error:
            raise CommandError(str(error)) from None
        except (PermanentError, TransientError) as error:
            raise CommandError(redact_known_secrets(f"tracing {args.record_id} failed: {error}")) from None
        for line in trace.lines(loader.qualified_table_name):
            print(line)
    return 1 if args.expect_absent and trace.places else 0


def snowflake_preflight(args: argparse.Namespace) -> int:
    from datavault_analytics.snowflake.preflight import Preflight

    [table] = _tables([args.table])
    with _configured_resources("s3_stage", "snowflake_loader") as built:
        preflight = Preflight(
            built.snowflake_loader.for_table(table.spec), built.s3_stage.for_table(table.spec)
        )
        for result in preflight.run():
            print(result.line(), flush=True)
    print(
        "preflight passed: loads into this account will be exact"
        if preflight.passed
        else "preflight FAILED: fix the lines marked FAIL, then run it again"
    )
    return 0 if preflight.passed else 1


@contextmanager
def _configured_resources(*keys: str):
    """The named resources of the configured environment, initialized; a setting that cannot work is a
    CommandError."""
    import dagster as dg

    settings = _use_configured_environment()
    from datavault_analytics.resources import build_resources

    try:
        resources = build_resources(settings)
    except ValueError as error:
        raise CommandError(str(error)) from None
    with dg.build_resources({k: resources[k] for k in keys}) as built:
        yield built


def _use_configured_environment():
    """The settings for this command and its child processes. DATAVAULT_ENV=local (the default): the local
    stack's variables fill in those unset. Then the settings are read, and checked."""
    if os.environ.get("DATAVAULT_ENV", "local").strip().lower() == "local":
        for name, value in local_stack("stack").local_environment().items():
            os.environ.setdefault(name, value)
    from datavault_analytics.settings import Settings

    try:
        settings = Settings.from_environment()
    except ValueError as error:
        raise CommandError(str(error)) from None
    if settings.missing_variables:
        raise CommandError(
            "DATAVAULT_ENV=prod needs these environment variables, which are unset: "
            + ", ".join(settings.missing_variables)
        )
    return settings


def _backfill_and_report(tables: list, first, last, days_per_run: int) -> int:
    settings = _use_configured_environment()
    from datavault_analytics.cli.backfill import BackfillError, materialize_range

    for table in tables:
        started = time.monotonic()
        try:
            materialize_range(
                table, first, last, days_per_run=days_per_run, log_dir=Path.cwd() / ".datavault" / "logs"
            )
        except (BackfillError, ValueError) as error:
            raise CommandError(str(error)) from None
        print(f"materialized {table.name} {first} .. {last} in {time.monotonic() - started:.1f} s")
    return _print_reconciliation(settings, tables, first, last)


def _print_reconciliation(settings, tables: list, first, last) -> int:
    """One row per (table, day); exit 1 if any day of any table differs."""
    from datavault_analytics.cli.backfill import reconciliation
    from datavault_analytics.verification.reconciliation import render_table

    total = matching = 0
    for table in tables:
        days = reconciliation(settings, table, first, last)
        print(f"{table.name} ({table.spec.source_name} -> {table.spec.snowflake_table}):")
        print(render_table(days))
        mismatched = [d for d in days if not d.matches]
        for differing in mismatched:
            print(f"MISMATCH {table.name} {differing.difference()}", file=sys.stderr)
        total, matching = total + len(days), matching + len(days) - len(mismatched)
    print(f"{matching} of {total} days match" + (f" across {len(tables)} tables" if len(tables) > 1 else ""))
    return 1 if matching < total else 0
