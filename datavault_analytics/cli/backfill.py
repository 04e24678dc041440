"""Backfill a range of days through Dagster, with progress, then reconcile every day.

`datavault-analytics backfill START END` (and `make demo`) runs `dg launch --partition-range` per chunk of
`days_per_run` days against the configured Dagster instance, printing each day as it lands.
"""

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.stage.manifest import StageError
from datavault_analytics.table.day_window import day_windows
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.verification.reconciliation import DayReconciliation, reconcile

_LOADED = re.compile(r"Loaded (\d{4}-\d{2}-\d{2}) \(\d+/\d+ days\): ([\d,]+) rows")
_STAGED = re.compile(r"Staged (\d{4}-\d{2}-\d{2}) \(\d+/\d+ days\): ([\d,]+) rows")
# Our errors end with the step that raised them (errors.py): the line to show when a run retries or fails.
_OUR_ERROR = re.compile(r"(\w+(?:Error|Failure)): (.+\[step: [^\]]+\])")


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
    done, rows, started = 0, 0, time.monotonic()
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
        with open(log_path, "w") as log:
            # `dg launch` takes a range only from single-run assets; this command chunks the range itself.
            env = {**os.environ, "DATAVAULT_BACKFILL_DAYS_PER_RUN": "0"}
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
            last_error, retrying = None, False
            for line in process.stdout:
                log.write(line)
                if error := _OUR_ERROR.search(line):
                    last_error = f"{error[1]}: {error[2]}"
                    if retrying:  # Dagster logs the retry first, then the error it retries after
                        say(f"  retrying: {last_error[:300]}")
                        retrying = False
                if "STEP_UP_FOR_RETRY" in line:
                    retrying = True
                elif staged := _STAGED.search(line):
                    say(f"  staged {staged[1]}: {staged[2]} rows")
                elif loaded := _LOADED.search(line):
                    done += 1
                    rows += int(loaded[2].replace(",", ""))
                    elapsed = time.monotonic() - started
                    say(
                        f"  [{done}/{len(days)} days] loaded {loaded[1]}: {loaded[2]} rows "
                        f"({rows / elapsed:,.0f} rows/s overall)"
                    )
            code = process.wait()
        if code != 0:
            if last_error is None:
                errors = [
                    line.strip()
                    for line in log_path.read_text().splitlines()
                    if "Failure" in line or "Error" in line
                ]
                last_error = errors[-1] if errors else "see the log"
            raise BackfillError(
                f"The run for {chunk[0]} .. {chunk[-1]} failed: {last_error[:800]}\nLog: {log_path}"
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
