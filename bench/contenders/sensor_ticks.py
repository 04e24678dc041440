"""Contender: the real daemon evaluating the drift sensors of N generated tables.

    python -m bench.contenders.sensor_ticks --tables 50 --seconds 90

A copy of this project with N tables is served by a code server as the image runs it; a daemon on a fresh
instance evaluates every table's drift sensor (started as a local user does) for the given seconds, with the
shipped settings (a tick every 30 s). Scan runs are requested but stay queued (the instance admits no run), so after its first tick
each sensor finds its scan in progress: the steady state of a sensor between scans. Prints one JSON line:
the ticks' durations (as the daemon records them) and the gap between two ticks of one sensor, which grows
past the interval when the daemon cannot evaluate every sensor in time (it evaluates them one by one).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.contenders.generated_tables import project_with_tables
from datavault_analytics.local_stack.processes import free_port, port_answers

BIN = Path(sys.executable).parent
INTERVAL_SECONDS = 30  # the drift sensor's minimum interval with the shipped scan_seconds (900)
INSTANCE = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 0
telemetry:
  enabled: false
"""
# A run request is checked against its job's config, which reads these; the queued runs never connect.
PLACEHOLDER_CONNECTIONS = {
    "DATAVAULT_PG_DSN": "postgresql://bench@127.0.0.1:9/bench",
    "DATAVAULT_STAGE_URI": "s3://bench/stage",
    **{
        f"SNOWFLAKE_{name}": "bench"
        for name in ("ACCOUNT", "USER", "PASSWORD", "ROLE", "WAREHOUSE", "DATABASE", "SCHEMA")
    },
}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_until(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=90)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        project = project_with_tables(Path(root), args.tables)
        home = Path(root) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(INSTANCE)
        env = {
            **os.environ,
            **PLACEHOLDER_CONNECTIONS,
            "PYTHONPATH": str(project),
            "DAGSTER_HOME": str(home),
            "DATAVAULT_ENV": "local",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        port = free_port()
        (project / "workspace.yaml").write_text(
            f"load_from:\n  - grpc_server: {{host: 127.0.0.1, port: {port}, location_name: bench}}\n"
        )
        logs = (Path(root) / "code-server.log").open("wb"), (Path(root) / "daemon.log").open("wb")
        processes = []
        try:
            processes.append(
                subprocess.Popen(
                    [str(BIN / "dagster"), "api", "grpc", "-m", "datavault_analytics.definitions"]
                    + ["-h", "127.0.0.1", "-p", str(port)],
                    cwd=project,
                    env=env,
                    stdout=logs[0],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            wait_until(lambda: port_answers(port), "the code server", 300)
            processes.append(
                subprocess.Popen(
                    [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                    cwd=project,
                    env=env,
                    stdout=logs[1],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            subprocess.run(
                [str(BIN / "dagster"), "sensor", "start", "--start-all", "-w", "workspace.yaml"],
                cwd=project,
                env=env,
                capture_output=True,
                check=True,
                timeout=300,
            )
            time.sleep(args.seconds)
        finally:
            for process in reversed(processes):
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a code server busy answering the daemon may not stop
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)
        os.environ["DAGSTER_HOME"] = str(home)
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            sensors = [s for s in instance.all_instigator_state() if s.instigator_type.value == "SENSOR"]
            durations, gaps, failures, ticking, errors = [], [], 0, 0, []
            for sensor in sensors:
                ticks = sorted(
                    (t for t in instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id)),
                    key=lambda t: t.timestamp,
                )
                ticking += bool(ticks)
                failures += sum(t.is_failure for t in ticks)
                errors += [t.error.to_string()[-1500:] for t in ticks if t.is_failure and t.error]
                durations += [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
                gaps += [b.timestamp - a.timestamp for a, b in zip(ticks, ticks[1:], strict=False)]
    if errors:
        print(f"{failures} ticks failed; the first:\n{errors[0]}", file=sys.stderr)
    if not durations or not gaps:
        sys.exit(f"the daemon recorded too few ticks for {args.tables} tables in {args.seconds} s")
    print(
        json.dumps(
            {
                "tables": args.tables,
                "sensors": len(sensors),
                "sensors_ticking": ticking,
                "ticks": len(durations),
                "failed_ticks": failures,
                "tick_seconds_p50": round(quantile(durations, 0.5), 3),
                "tick_seconds_p90": round(quantile(durations, 0.9), 3),
                "interval_seconds": INTERVAL_SECONDS,
                "gap_seconds_p50": round(quantile(gaps, 0.5), 2),
                "gap_seconds_p90": round(quantile(gaps, 0.9), 2),
                "first_error": errors[0] if errors else None,
            }
        )
    )


if __name__ == "__main__":
    main()
