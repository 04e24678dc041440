"""`make soak [SEED=S] [MINUTES=M]`: the whole system under a workload and a seeded nemesis, then checked.

Prints the seed first, every fault and heal as it happens, any violation, and last:
`soak: seed=S minutes=M faults=N kinds=K runs=R failed=F retried=T violations=V converged_s=C`.
Exits 1 on any violation. The same seed replays the same fault schedule (soak/nemesis.py).
"""

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from datavault_analytics.environment import Settings, build_resources
from datavault_analytics.local_stack.seed import seed_records
from soak.checker import Checker
from soak.nemesis import Nemesis, schedule
from soak.system import System
from soak.workload import Engineer, SourceWriter, history_days

HISTORY_DAYS = (
    16  # days of data; the newest LATE_ROW_DAYS + 1 are the daily schedule's, the rest the drift sensor's
)
LATE_ROW_DAYS = 2  # the shipped default (DATAVAULT_LATE_ROW_DAYS)
ROWS_PER_DAY = 40
CONVERGE_WITHIN_SECONDS = 300  # liveness: after the final heal, everything settles within this


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: a new random seed, printed first")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long the nemesis acts")
    parser.add_argument("--keep", action="store_true", help="keep the soak's folder (logs, data) afterwards")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    print(
        f"soak: seed={seed} minutes={args.minutes:g} (replay: make soak SEED={seed} MINUTES={args.minutes:g})",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix=f"datavault-soak-{seed}-"))
    try:
        return soak(seed, args.minutes, root)
    finally:
        if args.keep:
            print(f"soak: kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def soak(seed: int, minutes: float, root: Path) -> int:
    rng = random.Random(f"workload-{seed}")
    today = datetime.now(UTC).date()
    days = history_days(today, HISTORY_DAYS)
    drift_days = days[: -(LATE_ROW_DAYS + 1)]  # what the drift sensor scans; the rest is the schedule's
    canary = f"canary-{secrets.token_hex(12)}"
    system = System(root, canary, first_day=days[0])
    nemesis = None
    try:
        started = time.monotonic()
        system.start()
        print(f"soak: system up in {time.monotonic() - started:.0f} s ({root})", flush=True)
        os.environ.update(system.checker_env())  # the checker's resources read their secrets from here
        resources = build_resources(Settings.from_environment(environ=system.checker_env()))
        with dg.build_resources({k: resources[k] for k in ("postgres", "snowflake_loader")}) as checked:
            seed_records(
                system.source_dsn, [datetime.fromisoformat(d).date() for d in days], ROWS_PER_DAY, seed=seed
            )
            writer = SourceWriter(system.source_dsn, checked.postgres, drift_days, rng)
            writer.record_current(days)
            checker = Checker(checked.postgres, checked.snowflake_loader, writer, days)
            instance = dg.DagsterInstance.get()
            engineer = Engineer(
                f"http://127.0.0.1:{system.webserver_port}",
                system.pipeline_env(),
                root,
                system.logs,
                drift_days,
                random.Random(f"engineer-{seed}"),
            )
            nemesis = Nemesis(system, instance, engineer.running_cli)
            plan = schedule(seed, minutes * 60)
            print(f"soak: {len(plan)} faults planned over {minutes:g} min", flush=True)

            stop_at = time.monotonic() + minutes * 60
            checker.start_sampling()
            workers = [
                threading.Thread(
                    target=_every, args=(2.0, stop_at, writer.step, nemesis.say, "workload"), daemon=True
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
            healed = time.monotonic()
            engineer.wait_for_cli(CONVERGE_WITHIN_SECONDS)
            waited = time.monotonic() - healed
            converged = checker.wait_for_convergence(instance, drift_days, CONVERGE_WITHIN_SECONDS - waited)
            converged = None if converged is None else waited + converged  # seconds from the final heal
            checker.sample()
            checker.scan_for_secret(canary, [root], system.dagster_dsn)
            checker.stop_sampling()
            runs = instance.get_runs()
            failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            retried = [r for r in runs if "dagster/retry_number" in r.tags]
            print(
                f"soak: workload {dict(writer.done)} ({writer.failed} failed), engineer {dict(engineer.launched)}, "
                f"{checker.samples} safety samples",
                flush=True,
            )
            instance.dispose()
        system.stop()
        return _summary(seed, minutes, nemesis, runs, failed, retried, checker, converged)
    finally:
        system.stop()
        left = system.leftovers()
        if left:
            print("soak: processes left behind: " + "; ".join(left), flush=True)


def _every(seconds: float, stop_at: float, action, say, name: str) -> None:
    while time.monotonic() < stop_at:
        try:
            say(f"{name}: {action()}")
        except Exception as error:  # the workload goes on whatever one step met
            say(f"{name}: {type(error).__name__}: {str(error)[:200]}")
        time.sleep(seconds)


def _summary(seed, minutes, nemesis, runs, failed, retried, checker, converged) -> int:
    print("soak: faults:", flush=True)
    for line in nemesis.log:
        if " inject " in line or "heal" in line:
            print("  " + line, flush=True)
    for violation in checker.violations:
        print(f"soak: VIOLATION {violation}", flush=True)
    print(
        f"soak: seed={seed} minutes={minutes:g} faults={len(nemesis.injected)} kinds={len(set(nemesis.injected))} "
        f"runs={len(runs)} failed={len(failed)} retried={len(retried)} violations={len(checker.violations)} "
        f"converged_s={'never' if converged is None else f'{converged:.0f}'}",
        flush=True,
    )
    return 1 if checker.violations else 0


if __name__ == "__main__":
    sys.exit(main())
