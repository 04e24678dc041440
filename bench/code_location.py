"""How the code location grows with tables: loading it, `dg check defs`, and the daemon's sensor ticks,
with 1, 10 and 50 generated tables (the daemon with 1 and 50). Part of `make bench`; alone:

    python -m bench.code_location
"""

import json
import subprocess
import sys
from statistics import median

from bench.common import log

TABLES = (1, 10, 50)
REPEATS = 3
SENSOR_SECONDS = 100  # three ticks of every sensor at the shipped 30 s interval
TICK_TABLES = (50,)  # a daemon per size takes 2.5 min: the largest only (with 1 table: a tick every 30.0 s)


def contender(module: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.contenders.{module}", *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.contenders.{module} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure() -> dict:
    """Medians of REPEATS fresh processes per size, the sizes interleaved so that the machine's noise falls
    on all of them alike; then one daemon per size."""
    loads: dict[int, list[dict]] = {n: [] for n in TABLES}
    checks: dict[int, list[float]] = {n: [] for n in TABLES}
    for round_number in range(1, REPEATS + 1):
        for tables in TABLES:
            loads[tables].append(contender("defs_load", "--tables", str(tables)))
            checks[tables].append(contender("dg_check", "--tables", str(tables))["seconds"])
        log(
            f"code location, round {round_number}/{REPEATS}: "
            + ", ".join(
                f"{n} tables: load {loads[n][-1]['total_seconds']:.1f} s, dg check {checks[n][-1]:.1f} s"
                for n in TABLES
            )
        )
    ticks = {}
    for tables in TICK_TABLES:
        ticks[tables] = contender("sensor_ticks", "--tables", str(tables), "--seconds", str(SENSOR_SECONDS))
        log(f"daemon with {tables} drift sensors: {ticks[tables]}")
    return {
        "load": {
            n: {
                key: median(r[key] for r in runs)
                for key in ("import_seconds", "build_seconds", "total_seconds")
            }
            for n, runs in loads.items()
        },
        "dg_check_seconds": {n: median(seconds) for n, seconds in checks.items()},
        "sensor_ticks": ticks,
    }


def ratios(figures: dict) -> dict:
    load = figures["load"]
    return {
        "defs_load_50_vs_1": load[50]["total_seconds"] / load[1]["total_seconds"],
        "defs_build_50_vs_1": load[50]["build_seconds"] / load[1]["build_seconds"],
        "dg_check_50_vs_1": figures["dg_check_seconds"][50] / figures["dg_check_seconds"][1],
        "sensor_tick_p90_s_50": figures["sensor_ticks"][50]["tick_seconds_p90"],
    }


def lines(figures: dict) -> list[str]:
    load, check, ticks, ratio = (
        figures["load"],
        figures["dg_check_seconds"],
        figures["sensor_ticks"],
        ratios(figures),
    )
    return [
        "## The code location with many tables",
        "",
        "N generated tables (copies of retrieval_log's `defs.yaml`). Loading the code location in a fresh "
        "process as a code server does (`bench/contenders/defs_load.py`) and `dg check defs` on a copy of the "
        f"project (`bench/contenders/dg_check.py`): medians of {REPEATS}. The daemon evaluating every table's "
        f"drift sensor for {SENSOR_SECONDS} s with the shipped settings (`bench/contenders/sensor_ticks.py`; "
        "each sensor's scan run waits in the queue, so a tick is the sensor's state between scans):",
        "",
        "| tables | import s | build and resolve s | load total s | `dg check defs` s | ticks | failed | "
        "tick p50 s | tick p90 s | gap between a sensor's ticks p50 / p90 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {n} | {load[n]['import_seconds']:.2f} | {load[n]['build_seconds']:.2f} | "
            f"{load[n]['total_seconds']:.2f} | {check[n]:.2f} | {tick_cells(ticks.get(n))} |"
            for n in TABLES
        ),
        "",
        f"defs_load_50_vs_1 = {ratio['defs_load_50_vs_1']:.2f} (goal: at most 3; "
        f"{'met' if ratio['defs_load_50_vs_1'] <= 3 else '**missed**'}). Building the definitions alone grows "
        f"{ratio['defs_build_50_vs_1']:.1f} x from 1 to 50 tables; the imports (Dagster, dagster-snowflake's "
        "snowflake.core) are paid once, whatever the number of tables. `dg check defs` grows "
        f"{ratio['dg_check_50_vs_1']:.2f} x. The daemon evaluates sensors one at a time: with 50 tables a tick "
        f"takes {ticks[50]['tick_seconds_p50'] * 1000:.0f} ms (p90 {ticks[50]['tick_seconds_p90'] * 1000:.0f} ms), "
        f"and a sensor is evaluated every {ticks[50]['gap_seconds_p50']:.0f} s for its "
        f"{ticks[50]['interval_seconds']} s interval (30.0 s with one table in the runs of 2026-12-07, which "
        "no longer measure it: the rest is the daemon's own loop, not the number of sensors).",
    ]


def tick_cells(ticks: dict | None) -> str:
    if ticks is None:
        return "- | - | - | - | -"  # no daemon run for this size (TICK_TABLES)
    return (
        f"{ticks['ticks']} | {ticks['failed_ticks']} | {ticks['tick_seconds_p50']:.3f} | "
        f"{ticks['tick_seconds_p90']:.3f} | {ticks['gap_seconds_p50']:.1f} / {ticks['gap_seconds_p90']:.1f}"
    )


if __name__ == "__main__":
    figures = measure()
    print("\n".join(lines(figures)))
    print(" ".join(f"{k}={v:.2f}" for k, v in ratios(figures).items()))
