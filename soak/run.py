"""`make soak [SEED=S] [MINUTES=M]`: the whole system under a workload and a seeded nemesis, then checked.

Prints the seed first, every fault and heal as it happens, any violation, and last:
`soak: seed=S minutes=M faults=N kinds=K runs=R failed=F retried=T alerted=A/E violations=V converged_s=C`
(A "run failed" alerts received for E keys of runs that failed for good).
Exits 1 on any violation. The same seed replays the same fault schedule (soak/nemesis.py).
"""

import argparse
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from datavault_analytics.components.datavault_table import DEFS_FOLDER, configured_table
from datavault_analytics.local_stack.seed import seed_records, seed_retrieval_log
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from soak import types_table
from soak.checker import CheckedTable, Checker
from soak.nemesis import Nemesis, schedule
from soak.system import System
from soak.workload import Engineer, SourceWriter, Workload, history_days

HISTORY_DAYS = (
    16  # days of data; the newest LATE_ROW_DAYS + 1 are the daily schedule's, the rest the drift sensor's
)
ROWS_PER_DAY = 40
# Liveness: after the final heal, everything settles within this (three tables on 2 cores; 300 s with one).
CONVERGE_WITHIN_SECONDS = 420
# The tables the workload writes and the checker checks: the shipped two and the soak's table of the new types,
# which its own code location adds (soak/code_location.py), each with the defs folder it is configured in.
SOAK_TABLES = {
    "records": DEFS_FOLDER,
    "retrieval_log": DEFS_FOLDER,
    types_table.TABLE: types_table.SOAK_DEFS_FOLDER,
}
ALERTED_WITHIN_SECONDS = 120  # then every run that failed for good is alerted (the sensor ticks every 30 s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: a new random seed, printed first")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long the nemesis acts")
    parser.add_argument("--keep", action="store_true", help="keep the soak's folder (logs, data) afterwards")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    signal.signal(signal.SIGTERM, _interrupted)  # a SIGTERM (`timeout`, CI) tears down like Ctrl-C
    print(
        f"soak: seed={seed} minutes={args.minutes:g} (replay: make soak SEED={seed} MINUTES={args.minutes:g})",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix=f"datavault-soak-{seed}-"))
    if args.keep:
        print(f"soak: the soak's folder (logs, data) stays at {root}", flush=True)
    try:
        return soak(seed, args.minutes, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Outcome:
    runs: int = 0
    failed: int = 0
    retried: int = 0
    alerts: tuple[int, int] = (0, 0)  # failed for good (by alert key), "run failed" alerts received
    converged_s: float | None = None
    violations: list[str] = field(default_factory=list)


def soak(seed: int, minutes: float, root: Path) -> int:
    rng = random.Random(f"workload-{seed}")
    days = history_days(datetime.now(UTC).date(), HISTORY_DAYS)
    canary = f"canary-{secrets.token_hex(12)}"
    system = System(root, canary, first_day=days[0])
    outcome, nemesis = Outcome(), None
    try:
        started = time.monotonic()
        system.start()
        system.wait_for_alert_sensor()
        print(f"soak: system up in {time.monotonic() - started:.0f} s ({root})", flush=True)
        os.environ.update(system.checker_env())  # the checker's resources read their secrets from here
        resources = build_resources(Settings.from_environment(environ=system.checker_env()))
        with dg.build_resources({k: resources[k] for k in ("postgres", "snowflake_loader")}) as resolved:
            # Every configured table, bound once resolved, as the assets bind them.
            seed_records(system.source_dsn, [date.fromisoformat(d) for d in days], ROWS_PER_DAY, seed=seed)
            seed_retrieval_log(
                system.source_dsn, [date.fromisoformat(d) for d in days], ROWS_PER_DAY, seed=seed
            )
            types_table.seed(system.source_dsn, [date.fromisoformat(d) for d in days], ROWS_PER_DAY)
            tables = []
            for name, defs_folder in SOAK_TABLES.items():
                spec = configured_table(name, defs_folder=defs_folder).spec
                postgres = resolved.postgres.for_table(spec)
                writer = SourceWriter(system.source_dsn, postgres, days, random.Random(f"{name}-{seed}"))
                writer.record_current(days)
                tables.append(CheckedTable(postgres, resolved.snowflake_loader.for_table(spec), writer))
            checker = Checker(tables, days)
            writers = [t.writer for t in tables]
            instance = dg.DagsterInstance.get()
            engineer = Engineer(
                f"http://127.0.0.1:{system.webserver_port}",
                system.pipeline_env(),
                root,
                system.logs,
                days,
                random.Random(f"engineer-{seed}"),
            )
            nemesis = Nemesis(system, instance, engineer.running_cli)
            plan = schedule(seed, minutes * 60)
            print(f"soak: {len(plan)} faults planned over {minutes:g} min", flush=True)
            _run_with_faults(nemesis, plan, minutes, checker, Workload(writers, rng), engineer)

            healed = time.monotonic()
            # The workload ends with the faults: the every-minute schedule stops, so that what is left
            # to converge is the system's own repair, which must then go quiet.
            try:
                print(f"soak: schedules stopped: {', '.join(system.stop_schedules())}", flush=True)
            except Exception as error:
                checker.violations.append(f"could not stop the schedules after the final heal: {error}")
            engineer.wait_for_cli(CONVERGE_WITHIN_SECONDS)
            waited = time.monotonic() - healed
            converged = checker.wait_for_convergence(instance, days, CONVERGE_WITHIN_SECONDS - waited)
            outcome.converged_s = None if converged is None else waited + converged  # from the final heal
            outcome.alerts = checker.check_alerts(
                instance, system.alerts, "kill daemon" in nemesis.injected, ALERTED_WITHIN_SECONDS
            )
            checker.sample()
            checker.stop_sampling()
            checker.scan_for_secret(canary, [root], system.dagster_dsn)
            runs = instance.get_runs()
            outcome.runs = len(runs)
            outcome.failed = sum(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
            outcome.retried = sum("dagster/retry_number" in r.tags for r in runs)
            for run in runs:
                if run.status == dg.DagsterRunStatus.FAILURE:
                    print(f"soak: failed run {_describe(run)}{_first_error(instance, run)}", flush=True)
            outcome.violations = checker.violations
            print(
                f"soak: workload {dict(sum((Counter(w.done) for w in writers), Counter()))} "
                f"({sum(w.failed for w in writers)} failed), engineer "
                f"{dict(engineer.launched)}, {checker.samples} safety samples",
                flush=True,
            )
            instance.dispose()
    finally:
        # Whatever ended the soak (an error, Ctrl-C, a SIGTERM), tear down everything, undisturbed.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        system.stop()
        left = system.leftovers()
        if left:
            outcome.violations.append("processes left behind: " + "; ".join(left))
    return _summary(seed, minutes, nemesis, outcome)


def _run_with_faults(nemesis, plan, minutes, checker, workload, engineer) -> None:
    """The workload, the engineer and the checker's sampling while the nemesis acts; then its final heal."""
    stop_at = time.monotonic() + minutes * 60
    checker.start_sampling()
    workers = [
        threading.Thread(
            target=_every, args=(2.0, stop_at, workload.step, nemesis.say, "workload"), daemon=True
        ),
        threading.Thread(
            target=_every, args=(25.0, stop_at, engineer.act, nemesis.say, "engineer"), daemon=True
        ),
    ]
    for worker in workers:
        worker.start()
    nemesis.run(plan, stop_at)
    nemesis.final_heal()
    for worker in workers:
        worker.join(60)


def _first_error(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The run's first step failure, in one line: what a failed run says, without opening the UI."""
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error
        while error is not None and error.cause is not None:  # Dagster's wrapper, then what it wraps
            error = error.cause
        if error is not None:
            return f": {entry.step_key}: {' '.join(error.message.split())[:300]}"
    return ""


def _describe(run: dg.DagsterRun) -> str:
    """A failed run in one line: what launched it, why it failed, and whether Dagster retries it."""
    tags = run.tags
    trigger = (
        tags.get("datavault/trigger")
        or ("backfill " + tags["dagster/backfill"] if "dagster/backfill" in tags else None)
        or ("retry of " + run.parent_run_id[:8] if run.parent_run_id else None)
        or "dg launch"
    )
    days = f"{tags.get('dagster/asset_partition_range_start') or tags.get('dagster/partition')}.."
    days += tags.get("dagster/asset_partition_range_end", "")
    return (
        f"{run.run_id[:8]} ({trigger}, {days}): reason {tags.get('dagster/failure_reason', '-')}, "
        f"will retry {tags.get('dagster/will_retry', '-')}"
    )


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _every(seconds: float, stop_at: float, action, say, name: str) -> None:
    while time.monotonic() < stop_at:
        try:
            say(f"{name}: {action()}")
        except Exception as error:  # the workload goes on whatever one step met
            say(f"{name}: {type(error).__name__}: {str(error)[:200]}")
        time.sleep(seconds)


def _summary(seed: int, minutes: float, nemesis: Nemesis | None, outcome: Outcome) -> int:
    injected = nemesis.injected if nemesis else []
    if nemesis:
        print("soak: faults:", flush=True)
        for line in nemesis.log:
            if " inject " in line or "heal" in line:
                print("  " + line, flush=True)
    for violation in outcome.violations:
        print(f"soak: VIOLATION {violation}", flush=True)
    converged = "never" if outcome.converged_s is None else f"{outcome.converged_s:.0f}"
    print(
        f"soak: seed={seed} minutes={minutes:g} faults={len(injected)} kinds={len(set(injected))} "
        f"runs={outcome.runs} failed={outcome.failed} retried={outcome.retried} "
        f"alerted={outcome.alerts[1]}/{outcome.alerts[0]} "
        f"violations={len(outcome.violations)} converged_s={converged}",
        flush=True,
    )
    return 1 if outcome.violations or outcome.converged_s is None else 0


if __name__ == "__main__":
    sys.exit(main())
