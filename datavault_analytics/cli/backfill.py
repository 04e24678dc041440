"""Backfill a range of days through Dagster, with progress, then reconcile every day.

`datavault-analytics backfill START END` (and `make demo`) runs `dg launch --partition-range` per chunk of
`days_per_run` days against the configured Dagster instance, printing each day as it lands: from the run's
tags and events in the instance (run_progress.py), not from its log.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from datavault_analytics.cli.run_progress import RunProgress
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.stage.manifest import StageError
from datavault_analytics.table.day_window import day_windows
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.verification.reconciliation import DayReconciliation, reconcile

POLL_SECONDS = 0.5  # how often the run is looked at


class BackfillError(RuntimeError):
    """A chunk of the backfill failed; the message points at its log."""


def days_between(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"The range ends ({last}) before it starts ({first}).")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _chunks(days: list[date], size: int) -> list[list[date]]:
    return [days[i : i + size] for i in range(0, len(days), size)]


def materialize_range(
    table: TablePipeline,
    first: date,
    last: date,
    *,
    days_per_run: int = 31,
    log_dir: Path,
    say: Callable[[str], None] = print,
) -> None:
    """Materialize the table's stage and Snowflake assets for [first, last], one Dagster run per chunk."""
    days = days_between(first, last)
    check_in_range(table, first, last)
    log_dir.mkdir(parents=True, exist_ok=True)
    selection = ",".join(key.to_user_string() for key in (table.stage_key, table.snowflake_key))
    if not os.environ.get("DAGSTER_HOME"):
        raise BackfillError(
            "DAGSTER_HOME is not set: the backfill records its runs in the Dagster instance there, and follows "
            "them from it. Set it to the instance's folder (the local stack's `stack env` does)."
        )
    done, rows, started = 0, 0, time.monotonic()
    with dg.DagsterInstance.get() as instance:
        for chunk in _chunks(days, days_per_run):
            log_path = log_dir / f"materialize-{table.name}-{chunk[0]}-{chunk[-1]}.log"
            command = [
                str(Path(sys.executable).with_name("dg")),
                "launch",
                "-m",
                "datavault_analytics.definitions",
                "--assets",
                selection,
                "--partition-range",
                f"{chunk[0]}...{chunk[-1]}",
            ]
            say(f"{table.name}: run {chunk[0]} .. {chunk[-1]} ({len(chunk)} days), log: {log_path}")
            progress = RunProgress(
                instance, chunk[0].isoformat(), chunk[-1].isoformat(), since=time.time() - 1
            )
            with open(log_path, "w") as log:
                # `dg launch` takes a range only from single-run assets; this command chunks the range itself.
                env = {**os.environ, "DATAVAULT_BACKFILL_DAYS_PER_RUN": "0"}
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                failure = None
                while True:
                    finished = process.poll() is not None
                    news = progress.poll()  # after the exit check: a finished run's last events are read
                    for error in news.retries:
                        say(f"  retrying: {error[:300]}")
                    failure = news.failure or failure
                    for day, day_rows in sorted(news.loaded.items()):
                        done, rows = done + 1, rows + day_rows
                        say(
                            f"  [{done}/{len(days)} days] loaded {day}: {day_rows:,} rows "
                            f"({rows / (time.monotonic() - started):,.0f} rows/s overall)"
                        )
                    if finished:
                        break
                    time.sleep(POLL_SECONDS)
            if process.returncode != 0:
                why = failure or (
                    "the run never started (see the log)" if progress.run_id is None else "see the log"
                )
                raise BackfillError(
                    f"The run for {chunk[0]} .. {chunk[-1]} failed: {why[:800]}\nLog: {log_path}"
                )


def check_in_range(table: TablePipeline, first: date, last: date) -> None:
    """Refuse days outside the table's partitions before launching anything, naming the valid range."""
    partitions = table.partitions
    start, end = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    if end is None or first.isoformat() < start or last.isoformat() > end:
        raise ValueError(
            f"{table.name} has days {start} .. {end} (its start_date, to the last complete UTC day); "
            f"{first} .. {last} reaches outside them."
        )


def reconciliation(
    settings: Settings, table: TablePipeline, first: date, last: date
) -> list[DayReconciliation]:
    """Per-day counts and hashes on both sides, with the staged files and bytes from the manifests."""
    keys = [d.isoformat() for d in days_between(first, last)]
    resources = build_resources(settings)
    with dg.build_resources({k: resources[k] for k in ("postgres", "s3_stage", "snowflake_loader")}) as r:
        stage = r.s3_stage.for_table(table.spec)
        staged: dict[str, tuple[int, int]] = {}
        storage = stage.storage()
        for key in keys:
            try:
                manifest = stage.read_manifest(storage, key)
                staged[key] = (len(manifest.files), manifest.bytes)
            except StageError:
                pass
        return reconcile(
            r.postgres.for_table(table.spec),
            r.snowflake_loader.for_table(table.spec),
            day_windows(keys),
            staged,
        )
