"""`make bench`: moving one DataVault day, side by side, and a backfill end to end through Dagster.

Every contender runs as its own process, several times (BENCH_DAY_REPEATS, default 5, for the 1M-row day;
BENCH_REPEATS, default 3, for the 10M-row day, the drift scan and the backfill), in interleaved rounds so that
whatever else the machine does falls on all of them alike; the table shows medians, and the highest peak RSS
of any run.
Peak RSS is the kernel's high-water mark for the process (wait4's ru_maxrss).

Contenders, all reading the same rows with the same SELECT (the stage step's, from the catalog):
- psql: `\\copy (SELECT ...) TO '/dev/null' (FORMAT binary)`: PostgreSQL's own binary COPY, the reference.
- stage step -> file://: `S3StageIOManager.stage_day`, the pipeline's own code, to a local folder.
- stage step -> S3: the same, to the moto S3 emulator running as its own process.
- dlt: `sql_table` with backend connectorx and `return_type="arrow_stream"` to a local filesystem
  destination as Parquet (dlt 1.31's fastest configuration).
- stage step at 10x: the stage step on a 10M-row day, for the growth of its memory.
- fingerprints: the checks' content fingerprint of the 1M-row day (loaded into the Snowflake emulator
  once), on each side, as computed now and as computed before December 2026 (`--before`).
- drift scan: the drift sensor's cheap tier (per-day row count and latest updated_at over the whole
  history, bench/contenders/drift_scan.py) on each side, and its content tier for the 1M-row day, with the
  PostgreSQL CPU each costs and the longest any of its transactions stayed open around its statement.
- backfill: 30 days x 100k rows through Dagster (`dagster asset materialize --partition-range`, one
  process per run of BENCH_DAYS_PER_RUN days, default 31) from PostgreSQL to the S3 emulator to the
  Snowflake emulator (fakesnow, its own process). Its overhead is 1 - (the per-day stage and load
  seconds the run logs) / (the wall time of the Dagster processes).

The benchmark's data lives in its own database (`datavault_bench`) in a PostgreSQL 15 cluster under
bench/.work (kept, so the 10M-row day is seeded once), or at BENCH_PG_DSN if that is set.
Writes bench/results.md; the last line printed is the `bench:` summary.
"""

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench import code_location
from bench import types as bench_types
from bench.common import (
    BACKFILL,
    BENCH_DATABASE,
    DAY_1M,
    DAY_10M,
    QUIET_WAIT_SECONDS,
    ROOT,
    S3_ENV,
    WORK,
    Measurement,
    burst_arguments,
    ensure_seeded,
    find_psql,
    log,
    run_process,
    run_psql,
    run_stage,
    stage_select,
    start_launcher,
    start_postgres,
    stop_launcher,
)
from bench.contenders.drift_scan import postgres_cpu_seconds
from bench.contenders.hot_path import INGEST_OWNER, percentile
from bench.cpu_isolation import Isolation, postgres_on_its_own_cpu


def _records_spec():
    from datavault_analytics.components.datavault_table import configured_table

    return configured_table("records").spec


REPEATS = int(os.getenv("BENCH_REPEATS", "3"))
# The hot path with every CPU shared as well (about 6 more minutes): a database without a CPU to spare.
SHARED_PHASES = os.getenv("BENCH_SHARED_PHASES") == "1"
DAY_REPEATS = int(os.getenv("BENCH_DAY_REPEATS", "5"))  # short runs, and the ratios': more steady the medians
BUSY_LIMIT = 0.5  # cores other work may use before a run for its time to count as measured on a quiet machine
DAYS_PER_RUN = int(os.getenv("BENCH_DAYS_PER_RUN", "31"))
BUCKET = "datavault-bench"
RESULTS = ROOT / "bench" / "results.md"

_STAGED = re.compile(r"Staged (\d{4}-\d{2}-\d{2}) \(\d+/\d+ days\): ([\d,]+) rows .*?, ([\d.]+)s \(")
_LOADED = re.compile(r"Loaded (\d{4}-\d{2}-\d{2}) \(\d+/\d+ days\): ([\d,]+) rows .* in ([\d.]+)s")
_READ_BY_LOAD = re.compile(r"Read PostgreSQL's fingerprints of (\d+) day\(s\) .*?; waited ([\d.]+)s")
_STEP = re.compile(r'Finished execution of step "([^"]+)" in (?:(\d+)h)?(?:(\d+)m(?=\d))?(?:([\d.]+)(ms|s))?')


# -- servers ---------------------------------------------------------------------------------------


class ServerProcess:
    """A local-stack server module run as its own process (`python -m ...`), stopped on exit."""

    def __init__(self, name: str, module_args: list[str], port: int):
        from datavault_analytics.local_stack.processes import port_answers, wait_until

        self.name, self.port = name, port
        log_path = WORK / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *module_args],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
            )
        wait_until(
            lambda: port_answers(port),
            part=name,
            address=f"127.0.0.1:{port}",
            log_path=log_path,
            timeout=90,
            process=self.process,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        from datavault_analytics.local_stack.processes import terminate_pid

        terminate_pid(self.process.pid, timeout=30)


def start_moto() -> ServerProcess:
    from datavault_analytics.local_stack.processes import free_port

    port = free_port()
    return ServerProcess("s3", ["datavault_analytics.local_stack.s3_server", "--port", str(port)], port)


def start_snowflake(s3_endpoint: str) -> tuple[ServerProcess, int]:
    """The Snowflake emulator on a fresh warehouse under bench/.work, and its port."""
    from datavault_analytics.local_stack.processes import free_port

    port = free_port()
    shutil.rmtree(WORK / "snowflake", ignore_errors=True)  # a fresh warehouse every time
    command = ["datavault_analytics.local_stack.snowflake_server", "--port", str(port)]
    command += ["--db-path", str(WORK / "snowflake"), "--s3-endpoint", s3_endpoint]
    return ServerProcess("snowflake", command, port), port


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )


def empty_bucket(client) -> None:
    """moto holds objects in memory: drop each run's files before the next."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


# -- contenders ------------------------------------------------------------------------------------


def run_dlt(dsn: str, day: str, out: Path) -> Measurement:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        return run_process(
            "dlt",
            [
                sys.executable,
                "-m",
                "bench.contenders.dlt_sql_table",
                "--dsn",
                dsn,
                "--day",
                day,
                "--out",
                str(out),
            ],
            log_name="dlt",
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_fingerprint(
    label: str, side: str, dsn: str, day: str, snowflake_port: int, before: bool
) -> Measurement:
    command = [
        sys.executable,
        "-m",
        "bench.contenders.fingerprint",
        "--side",
        side,
        "--dsn",
        dsn,
        "--day",
        day,
        "--snowflake-port",
        str(snowflake_port),
    ] + (["--before"] if before else [])
    return run_process(label, command, log_name="fingerprint")


def md5_floor(dsn: str, day: str) -> dict:
    """The least any per-row MD5 fingerprint of the day can cost: hashing its canonical text (the bytes both
    sides hash), at this machine's MD5 speed, on every core. Building the text and reading the rows are
    extra."""
    import hashlib

    from datavault_analytics.identifiers import quote_postgres
    from datavault_analytics.postgres.resource import PostgresResource
    from datavault_analytics.table.day_window import DayWindow
    from datavault_analytics.verification.fingerprint import _message

    postgres = PostgresResource(table_spec=_records_spec(), dsn=dsn)
    columns = [(c.name, c.mapping.canonical) for c in postgres.source_columns()]
    window = DayWindow.for_key(day)
    with postgres.connect() as conn:
        (text_bytes,) = conn.execute(
            f"SELECT sum(octet_length({_message(columns, 0, quote_postgres)})) FROM records "  # noqa: S608
            "WHERE created_at >= %s AND created_at < %s",
            (window.start, window.end),
        ).fetchone()
    block = os.urandom(64 << 20)
    rates = []
    for _ in range(5):
        started = time.perf_counter()
        hashlib.md5(block).digest()  # noqa: S324 - a speed measurement
        rates.append(len(block) / (time.perf_counter() - started))
    cores = os.cpu_count() or 1
    rate = max(rates)
    return {
        "text_bytes": int(text_bytes),
        "md5_bytes_per_s": rate,
        "cores": cores,
        "seconds_both_sides": 2 * int(text_bytes) / (rate * cores),
    }


def scanned_history() -> tuple[str, str]:
    from datavault_analytics.components.datavault_table import configured_table
    from datavault_analytics.drift.scan import scanned_days

    days = scanned_days(configured_table("records"))
    return days[0], days[-1]


def run_drift(
    tier: str,
    side: str,
    dsn: str,
    history: tuple[str, str],
    day: str,
    snowflake_port: int,
    postmaster: int | None,
    sample: bool,
    max_burst_ms: float | None = None,
    alone_burst_ms: float | None = None,
) -> Measurement:
    command = [
        sys.executable,
        "-m",
        "bench.contenders.drift_scan",
        *burst_arguments(max_burst_ms, alone_burst_ms),
        "--tier",
        tier,
        "--side",
        side,
        "--dsn",
        dsn,
    ]
    command += [
        "--first",
        history[0],
        "--last",
        history[1],
        "--day",
        day,
        "--snowflake-port",
        str(snowflake_port),
    ]
    if postmaster and side == "postgres" and not sample:
        command += ["--postmaster-pid", str(postmaster)]
    if sample:
        command.append("--sample-transactions")
    return run_process(f"drift {tier} {side}", command, log_name="drift")


def drift_figures(drift: dict) -> dict:
    """Medians per tier and side, and the worst transaction figures of the sampling runs."""
    figures = {}
    for (tier, side, sample), reports in drift.items():
        if sample:
            continue
        sampled = drift.get((tier, side, True), [])
        figures[f"{tier} {side}"] = {
            "rows": reports[0]["rows"],
            "days": reports[0]["days"],
            "seconds": median(r["seconds"] for r in reports),
            "mrows_per_s": median(r["rows"] / r["seconds"] / 1e6 for r in reports),
            "postgres_cpu_seconds": median(r["postgres_cpu_seconds"] for r in reports)
            if reports[0]["postgres_cpu_seconds"] is not None
            else None,
            "open_before_statement_s": max((r["open_before_statement_s"] for r in sampled), default=None),
            "idle_in_transaction_s": max((r["idle_in_transaction_s"] for r in sampled), default=None),
        }
    return figures


def load_fingerprint_day(dsn: str, day: str, s3_endpoint: str, snowflake_port: int) -> None:
    """The 1M-row day, staged to the S3 emulator and loaded into the Snowflake emulator's FINGERPRINT schema."""
    from dagster_aws.s3 import S3Resource
    from dagster_snowflake import SnowflakeResource

    from datavault_analytics.snowflake.loader import SnowflakeLoader
    from datavault_analytics.stage.resource import S3Stage

    stage_uri = f"s3://{BUCKET}/fingerprint"
    staged = run_stage("fingerprint day", dsn, day, stage_uri, s3_endpoint)
    if staged.report.get("rows") != DAY_1M.rows_per_day:
        raise RuntimeError(f"staging the fingerprint day staged {staged.report.get('rows')} rows")
    stage = S3Stage(
        s3=S3Resource(
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ),
        stage_uri=stage_uri,
    ).for_table(_records_spec())
    snowflake = SnowflakeResource(
        account="fakesnow",
        user="bench",
        password="bench",
        database="DATAVAULT_BENCH",
        schema="FINGERPRINT",
        additional_snowflake_connection_args={
            "host": "127.0.0.1",
            "port": snowflake_port,
            "protocol": "http",
        },
    )
    result = (
        SnowflakeLoader(snowflake=snowflake, stage=stage)
        .for_table(_records_spec())
        .load_partition(stage.read_manifest(stage.storage(), day))
    )
    log(f"  loaded the fingerprint day into Snowflake: {result.rows_loaded:,} rows in {result.seconds:.1f} s")


def run_backfill(
    number: int | str, dsn: str, s3_endpoint: str, snowflake_port: int, extra_env: dict | None = None
) -> dict:
    """One 30-day backfill through Dagster into a fresh stage prefix and Snowflake schema."""
    home = WORK / f"dagster_home_{number}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **S3_ENV,
        "DAGSTER_HOME": str(home),
        "DATAVAULT_ENV": "prod",
        "DATAVAULT_PG_DSN": dsn,
        "DATAVAULT_STAGE_URI": f"s3://{BUCKET}/backfill-{number}",
        "DATAVAULT_S3_ENDPOINT_URL": s3_endpoint,
        "SNOWFLAKE_ACCOUNT": "fakesnow",
        "SNOWFLAKE_USER": "bench",
        "SNOWFLAKE_PASSWORD": "bench",
        "SNOWFLAKE_ROLE": "BENCH",
        "SNOWFLAKE_WAREHOUSE": "BENCH_WH",
        "SNOWFLAKE_DATABASE": "DATAVAULT_BENCH",
        "SNOWFLAKE_SCHEMA": f"BACKFILL_{number}",
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": str(snowflake_port),
        "SNOWFLAKE_PROTOCOL": "http",
        "DATAVAULT_MAX_RETRIES": "0",  # a failure fails the benchmark, rather than waiting out retries
        **(extra_env or {}),
    }
    dg = str(Path(sys.executable).with_name("dg"))
    selection = "s3/datavault/records,snowflake/datavault/records"
    days = list(BACKFILL.days)
    wall = moving = 0.0
    steps: dict[str, float] = {}
    rows_loaded = rows_staged = days_staged = days_loaded = 0
    stage_seconds = 0.0
    peak = 0.0
    read_by_load = read_wait = 0.0
    for first in range(0, len(days), DAYS_PER_RUN):
        chunk = days[first : first + DAYS_PER_RUN]
        log_path = WORK / "logs" / f"backfill_{number}_{chunk[0]}.log"
        log_path.unlink(missing_ok=True)
        measured = run_process(
            "backfill",
            [dg, "launch", "-m", "datavault_analytics.definitions", "--assets", selection]
            + ["--partition-range", f"{chunk[0]}...{chunk[-1]}"],
            env=env,
            log_name=f"backfill_{number}_{chunk[0]}",
            wait_quiet=extra_env is None,
        )
        wall += measured.process_seconds
        peak = max(peak, measured.peak_rss_mb)
        text = log_path.read_text(errors="replace")
        for step, hours, minutes, value, unit in _STEP.findall(text):  # Dagster writes 450ms, 39.2s, 1m38s
            seconds = (
                float(value or 0) / (1000 if unit == "ms" else 1)
                + 60 * int(minutes or 0)
                + 3600 * int(hours or 0)
            )
            steps[step] = steps.get(step, 0.0) + seconds
        for _day, rows, seconds in _STAGED.findall(text):
            moving += float(seconds)
            stage_seconds += float(seconds)
            rows_staged += int(rows.replace(",", ""))
            days_staged += 1
        for days_read, waited in _READ_BY_LOAD.findall(text):
            read_by_load += int(days_read)
            read_wait += float(waited)
        for _day, rows, seconds in _LOADED.findall(text):
            moving += float(seconds)
            days_loaded += 1
            rows_loaded += int(rows.replace(",", ""))
    expected_rows = len(days) * BACKFILL.rows_per_day
    if days_staged != len(days) or days_loaded != len(days) or rows_loaded != expected_rows:
        raise RuntimeError(
            f"backfill {number}: the run logs show {days_staged} days staged, {days_loaded} loaded, "
            f"{rows_loaded:,} rows; expected {len(days)} days and {expected_rows:,} rows (see "
            f"{WORK / 'logs'})"
        )
    shutil.rmtree(home, ignore_errors=True)
    return {
        "wall": wall,
        "moving": moving,
        "overhead": 1 - moving / wall,
        "peak_rss_mb": peak,
        "rows": rows_loaded,
        "runs": -(-len(days) // DAYS_PER_RUN),
        "steps": steps,
        "extract_rows_per_s": rows_staged / stage_seconds if stage_seconds else 0.0,
        "days_read_by_load": read_by_load,
        "read_wait": read_wait,
    }


# -- DataVault's hot path while the pipeline runs -------------------------------------------------

HOT_PATH_IDLE_SECONDS = float(os.getenv("BENCH_HOT_PATH_SECONDS", "30"))
HOT_PATH_OWNER = INGEST_OWNER  # the rows the workload inserts
# Quiet seconds under the workload before and after each phase's work. This machine's latency when nothing
# runs drifts by more than the pipeline's effect within an hour, so each phase is compared with its own.
QUIET_BESIDE_SECONDS = float(os.getenv("BENCH_QUIET_BESIDE_SECONDS", "10"))


@contextmanager
def hot_path_workload(
    dsn: str, phase: str, results: dict, isolation: Isolation | None = None
) -> Iterator[Path]:
    """DataVault's Retrieve and ingest (bench/contenders/hot_path.py) for the duration of the block.

    With `isolation`, the clients run on PostgreSQL's CPU at real-time priority (SCHED_FIFO), where only the
    database's own work can delay them, as on the machines of their own they have in production
    (bench/cpu_isolation.py says why not on the pipeline's CPU). They sleep between queries, so they take
    little of that CPU. Yields the file that each Retrieve's [monotonic end, ms] is written to at the end."""

    def beside_postgres() -> None:  # in the child, before it starts: no moment on the pipeline's CPU
        os.sched_setaffinity(0, isolation.postgres)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))

    log_path = WORK / "logs" / f"hot_path_{re.sub(r'[^A-Za-z0-9]+', '_', phase)}.log"
    latencies_path = log_path.with_suffix(".latencies.json")
    with open(log_path, "w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.contenders.hot_path",
                "--dsn",
                dsn,
                "--latencies",
                str(latencies_path),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=ROOT,
            preexec_fn=beside_postgres if isolation else None,
        )
        if isolation:
            isolation.beside_postgres(process.pid)
        try:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the hot-path workload did not start; see {log_path}")
            yield latencies_path
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
    results[phase] = json.loads(output.strip().splitlines()[-1])


def arrow_bytes_per_row(dsn: str, day: str) -> float:
    """The extract's Arrow bytes per row on the 1M-row day: the unit of DATAVAULT_PG_MAX_MB_PER_SECOND."""
    from datavault_analytics.postgres.resource import PostgresResource
    from datavault_analytics.table.day_window import DayWindow

    postgres = PostgresResource(table_spec=_records_spec(), dsn=dsn)
    with postgres.stream_day(postgres.source_columns(), DayWindow.for_key(day)) as batches:
        rows = read = 0
        for batch in batches:
            rows, read = rows + batch.num_rows, read + batch.nbytes
    return read / rows


ISOLATED = ", PostgreSQL on its own CPU"


STAGE_BURSTS_MS = (0.0, None)  # the stage step with whole statements and with the shipped default
WHOLE = 0.0  # max_burst_ms: every read one statement, as before bursts


def burst_label(max_burst_ms: float | None) -> str:
    """A phase's name suffix: none for the shipped default."""
    if max_burst_ms is None:
        return ""
    return ", whole statements" if max_burst_ms == WHOLE else f", bursts of {max_burst_ms:g} ms"


DRIFT_PHASE = "drift scan (cheap tier over history, then content)"
BURSTS_ONLY_SIDE = "postgres, bursts only"  # alone_burst_ms=0: as while another application works
WHOLE_SIDE = "postgres, whole statements"
DRIFT_VARIANTS = ((BURSTS_ONLY_SIDE, {"alone_burst_ms": 0}), (WHOLE_SIDE, {"max_burst_ms": 0.0}))


def split_latencies(latencies: list[list[float]], started: float, ended: float) -> dict:
    """Retrieve's percentiles while the phase's work ran, and its p99 in the quiet seconds beside it."""
    during = [ms for at, ms in latencies if started <= at <= ended]
    beside = [ms for at, ms in latencies if not started <= at <= ended]
    figures = {
        f"p{name}_ms": percentile(during, q) for name, q in (("50", 0.5), ("99", 0.99), ("999", 0.999))
    }
    if beside:
        figures["quiet_beside_p99_ms"] = percentile(beside, 0.99)
    return figures


def run_hot_path_phases(
    dsn: str,
    day: str,
    s3_endpoint: str,
    snowflake_port: int,
    postmaster: int | None,
    phases: dict,
    isolation: Isolation | None,
) -> None:
    """idle, the stage step in a loop, a backfill and (isolated only) the drift scan in a loop, each under
    the hot-path workload. With `isolation`, each phase also records that the CPUs held, read back at its
    end, while the workload's backends are alive."""
    suffix = ISOLATED if isolation else ""

    @contextmanager
    def phase(name: str, quiet_beside: float = QUIET_BESIDE_SECONDS) -> Iterator[None]:
        with hot_path_workload(dsn, name + suffix, phases, isolation) as latencies_path:
            time.sleep(quiet_beside)
            cpu = postgres_cpu_seconds(postmaster) if postmaster else None  # after the workload's warm-up
            started = time.monotonic()
            yield
            ended = time.monotonic()
            if cpu is not None:
                cpu = postgres_cpu_seconds(postmaster) - cpu
            held = isolation.held() if isolation else None
            time.sleep(quiet_beside)
        figures = phases[name + suffix]
        if quiet_beside:
            figures.update(split_latencies(json.loads(latencies_path.read_text()), started, ended))
        figures["seconds"] = ended - started
        if cpu is not None:
            figures["postgres_cpu_seconds"] = cpu
        if held is not None:
            figures["isolation"] = held

    with phase("idle", quiet_beside=0):
        time.sleep(HOT_PATH_IDLE_SECONDS)
    # Isolated, the curve: each read as one statement, then in bursts of 3 ms, 1 ms and the shipped length.
    for bursts in STAGE_BURSTS_MS if isolation else (None,):
        name = "stage step (1M-row day)" + burst_label(bursts)
        stage_runs = []
        with phase(name):
            ends = time.monotonic() + HOT_PATH_IDLE_SECONDS
            while time.monotonic() < ends:
                shutil.rmtree(WORK / "stage", ignore_errors=True)
                stage_runs.append(
                    run_stage(
                        "hot path",
                        dsn,
                        day,
                        f"file://{WORK / 'stage'}",
                        wait_quiet=False,
                        max_burst_ms=bursts,
                    )
                )
        shutil.rmtree(WORK / "stage", ignore_errors=True)
        seconds = median(m.seconds for m in stage_runs)
        phases[name + suffix]["extract_rows_per_s"] = DAY_1M.rows_per_day / seconds
        phases[name + suffix]["stage_seconds"] = seconds
        phases[name + suffix]["rows"] = DAY_1M.rows_per_day * len(stage_runs)
    # Isolated, the backfill and the drift scan with whole statements (before), then with the shipped bursts.
    for bursts in (WHOLE, None) if isolation else (None,):
        name = "backfill" + burst_label(bursts)
        with phase(name):
            backfill = run_backfill(
                "HOT" + ("_isolated" if isolation else "") + ("_whole" if bursts == WHOLE else ""),
                dsn,
                s3_endpoint,
                snowflake_port,
                {} if bursts is None else {"DATAVAULT_PG_MAX_BURST_MS": str(bursts)},
            )
        phases[name + suffix]["extract_rows_per_s"] = backfill["extract_rows_per_s"]
        phases[name + suffix]["rows"] = BACKFILL.rows_per_day * len(BACKFILL.days)
    if isolation:
        history = scanned_history()
        for bursts in (WHOLE, None):
            name = DRIFT_PHASE + burst_label(bursts)
            scans = []
            with phase(name):
                ends = time.monotonic() + HOT_PATH_IDLE_SECONDS
                while time.monotonic() < ends:
                    for tier in ("cheap", "content"):
                        scans.append(
                            run_drift(
                                tier, "postgres", dsn, history, day, snowflake_port, None, False, bursts
                            )
                        )
            phases[name + suffix]["scans"] = len(scans)
            phases[name + suffix]["scan_seconds"] = sum(m.seconds for m in scans)


def run_hot_path(
    dsn: str, day: str, s3_endpoint: str, snowflake_port: int, postmaster: int | None, shared: bool = True
) -> dict:
    """Retrieve latency and ingest rate in phases: first with PostgreSQL on a CPU of its own (idle, the stage
    step, a backfill, the drift scan), as in production; then sharing every CPU with the rest (idle, the
    stage step, a backfill, and the backfill with its extract throttled to half the speed it reached)."""
    phases: dict = {}
    if postmaster is not None:
        with postgres_on_its_own_cpu(postmaster) as isolation:
            run_hot_path_phases(dsn, day, s3_endpoint, snowflake_port, postmaster, phases, isolation)
    if not shared:  # the isolated phases alone (bench/hot_path.py)
        return phases
    run_hot_path_phases(dsn, day, s3_endpoint, snowflake_port, postmaster, phases, None)
    half = phases["backfill"]["extract_rows_per_s"] * arrow_bytes_per_row(dsn, day) / 2 / 1e6
    with hot_path_workload(dsn, f"backfill, extract throttled to {half:.0f} MB/s", phases):
        throttled = run_backfill(
            "hot_throttled",
            dsn,
            s3_endpoint,
            snowflake_port,
            extra_env={"DATAVAULT_PG_MAX_MB_PER_SECOND": f"{half:.2f}"},
        )
    phases[f"backfill, extract throttled to {half:.0f} MB/s"]["extract_rows_per_s"] = throttled[
        "extract_rows_per_s"
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:  # the workload's own rows go again
        conn.execute("DELETE FROM records WHERE owner_id = %s", (HOT_PATH_OWNER,))
        # and their dead tuples, so that the next run starts on a settled table (see ensure_seeded)
        conn.execute("VACUUM records")
        conn.execute("VACUUM records")
    return phases


# -- reporting -------------------------------------------------------------------------------------


def median(values) -> float:
    return statistics.median(values)


def summarize(runs: list[Measurement], rows: int, data_bytes: int) -> dict:
    seconds = median(m.seconds for m in runs)
    file_mb = runs[0].report.get("file_mb") or []
    return {
        "seconds": seconds,
        "spread": (min(m.seconds for m in runs), max(m.seconds for m in runs)),
        "process_seconds": median(m.process_seconds for m in runs),
        "rows": rows,
        "rows_per_s": rows / seconds if seconds else 0,
        "mb_per_s": data_bytes / 1e6 / seconds if seconds else 0,
        "peak_rss_mb": max(m.peak_rss_mb for m in runs),
        "files": runs[0].report.get("files"),
        "staged_mb": runs[0].report.get("staged_bytes", 0) / 1e6,
        "file_mb": (min(file_mb), max(file_mb)) if file_mb else None,
        "emulator_cpu": median(m.report["emulator_cpu"] for m in runs)
        if "emulator_cpu" in runs[0].report
        else None,
        "busy": median(m.report.get("busy_before", 0.0) for m in runs),
        "postgres_cpu": median(m.report["postgres_cpu"] for m in runs)
        if "postgres_cpu" in runs[0].report
        else None,
    }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for package in ("pyarrow", "adbc-driver-postgresql", "dagster", "dlt", "connectorx", "moto", "fakesnow"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:
            pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}; " + ", ".join(versions)
    )


def main() -> None:
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    start_launcher()  # first, while this process is small: see bench/launcher.py
    psql = find_psql()
    server = None
    if os.getenv("BENCH_PG_DSN"):
        dsn = os.environ["BENCH_PG_DSN"]
    else:
        log("starting the benchmark's PostgreSQL (bench/.work/postgres)")
        server = start_postgres()
        dsn = server.dsn(BENCH_DATABASE)

    moto = snowflake = None
    try:
        sizes = ensure_seeded(dsn)
        pg_version = subprocess.run(
            [psql, "-X", "-At", "-d", dsn, "-c", "SHOW server_version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        moto = start_moto()
        client = s3_client(moto.url)
        client.create_bucket(Bucket=BUCKET)

        day, day10 = DAY_1M.days[0].isoformat(), DAY_10M.days[0].isoformat()
        select, select10 = stage_select(dsn, _records_spec(), day), stage_select(dsn, _records_spec(), day10)
        file_stage = WORK / "stage"
        results: dict[str, list[Measurement]] = {}
        drift: dict[tuple, list[dict]] = {}

        def record(measurement: Measurement) -> None:
            results.setdefault(measurement.contender, []).append(measurement)
            extra = f", {measurement.report['rows']:,} rows" if "rows" in measurement.report else ""
            log(
                f"  {measurement.contender:<24} {measurement.seconds:6.2f} s  peak RSS "
                f"{measurement.peak_rss_mb:5.0f} MB{extra}"
            )

        log(f"1M-row day {day}: warming up (one unmeasured psql run)")
        run_psql(psql, dsn, select, "warm-up")
        for round_number in range(1, DAY_REPEATS + 1):
            log(f"1M-row day, round {round_number}/{DAY_REPEATS}")
            record(run_psql(psql, dsn, select, "psql"))
            shutil.rmtree(file_stage, ignore_errors=True)
            for name, bursts in (
                ("stage -> file://", {}),
                ("stage, bursts off", {"max_burst_ms": WHOLE}),
                ("stage, bursts only", {"alone_burst_ms": 0}),
            ):
                shutil.rmtree(file_stage, ignore_errors=True)
                cpu = postgres_cpu_seconds(server.pid()) if server is not None else None
                measured = run_stage(name, dsn, day, f"file://{file_stage}", **bursts)
                if cpu is not None:
                    time.sleep(0.3)  # the ended backend is reaped: its CPU moves to the postmaster's children
                    measured.report["postgres_cpu"] = postgres_cpu_seconds(server.pid()) - cpu
                record(measured)
            before = moto.cpu_seconds()
            measured = run_stage("stage -> S3 (moto)", dsn, day, f"s3://{BUCKET}/stage", moto.url)
            measured.report["emulator_cpu"] = moto.cpu_seconds() - before
            record(measured)
            empty_bucket(client)
            record(run_dlt(dsn, day, WORK / "dlt"))
        shutil.rmtree(file_stage, ignore_errors=True)

        log(f"10M-row day {day10}: warming up (one unmeasured psql run)")
        run_psql(psql, dsn, select10, "warm-up")
        for round_number in range(1, REPEATS + 1):
            log(f"10M-row day, round {round_number}/{REPEATS}")
            record(run_psql(psql, dsn, select10, "psql 10M"))
            shutil.rmtree(file_stage, ignore_errors=True)
            record(run_stage("stage -> file:// 10M", dsn, day10, f"file://{file_stage}"))
            shutil.rmtree(file_stage, ignore_errors=True)
            record(run_stage("stage, bursts off 10M", dsn, day10, f"file://{file_stage}", max_burst_ms=WHOLE))
        shutil.rmtree(file_stage, ignore_errors=True)
        types_figures = bench_types.measure(psql, dsn)  # its own table: not in `results`
        for measurement in results["stage -> file:// 10M"] + results["stage, bursts off 10M"]:
            if measurement.report.get("rows") != DAY_10M.rows_per_day:
                raise RuntimeError(f"the 10M-row stage step staged {measurement.report.get('rows')} rows")
        for name in (
            "stage -> file://",
            "stage, bursts off",
            "stage, bursts only",
            "stage -> S3 (moto)",
            "dlt",
        ):
            for measurement in results[name]:
                if measurement.report.get("rows") != DAY_1M.rows_per_day:
                    raise RuntimeError(f"{name} moved {measurement.report.get('rows')} rows, not 1,000,000")

        snowflake, snowflake_port = start_snowflake(moto.url)

        log(f"fingerprints of the 1M-row day {day}: loading it into the Snowflake emulator")
        load_fingerprint_day(dsn, day, moto.url, snowflake_port)
        empty_bucket(client)
        for round_number in range(1, REPEATS + 1):
            log(f"fingerprints, round {round_number}/{REPEATS}")
            for side in ("postgres", "snowflake"):
                record(run_fingerprint(f"fingerprint {side}", side, dsn, day, snowflake_port, before=False))
                record(
                    run_fingerprint(
                        f"fingerprint {side} (before)", side, dsn, day, snowflake_port, before=True
                    )
                )
        for side in ("postgres", "snowflake"):
            if {m.report.get("rows") for m in results[f"fingerprint {side}"]} != {DAY_1M.rows_per_day}:
                raise RuntimeError(
                    f"the {side} fingerprint counted {results[f'fingerprint {side}'][0].report}"
                )
        digests = {
            m.report["digest"] for side in ("postgres", "snowflake") for m in results[f"fingerprint {side}"]
        }
        if len(digests) != 1:
            raise RuntimeError(f"the two sides' fingerprints of the 1M-row day differ: {sorted(digests)}")

        floor = md5_floor(dsn, day)
        log(
            f"  MD5 floor: {floor['text_bytes'] / 1e6:.0f} MB of canonical text per side at "
            f"{floor['md5_bytes_per_s'] / 1e6:.0f} MB/s per core: {floor['seconds_both_sides']:.2f} s for both"
        )

        postmaster = server.pid() if server is not None else None
        history = scanned_history()
        log(f"drift scan over {history[0]} .. {history[1]} (the sensor's days), {REPEATS} rounds")
        for round_number in range(1, REPEATS + 2):
            sample = round_number > REPEATS  # the last round samples transactions, and is not timed
            for tier, side in (("cheap", "postgres"), ("cheap", "snowflake"), ("content", "postgres")):
                measured = run_drift(tier, side, dsn, history, day, snowflake_port, postmaster, sample)
                drift.setdefault((tier, side, sample), []).append(measured.report)
                log(f"  drift {tier} {side}{' (sampling)' if sample else ''}: {measured.report}")
            # as while Retrieve works (bursts throughout), and as before bursts (whole statements)
            for label, bursts in () if sample or round_number > REPEATS else DRIFT_VARIANTS:
                for tier in ("cheap", "content"):
                    measured = run_drift(
                        tier, "postgres", dsn, history, day, snowflake_port, postmaster, False, **bursts
                    )
                    drift.setdefault((tier, label, False), []).append(measured.report)
                    log(f"  drift {tier} {label}: {measured.report}")

        backfills = []
        for number in range(1, REPEATS + 1):
            log(
                f"backfill {number}/{REPEATS}: {len(BACKFILL.days)} days x {BACKFILL.rows_per_day:,} rows, "
                f"{DAYS_PER_RUN} days per run"
            )
            outcome = run_backfill(number, dsn, moto.url, snowflake_port)
            log(
                f"  wall {outcome['wall']:.1f} s, moving data {outcome['moving']:.1f} s, overhead "
                f"{outcome['overhead']:.0%}, peak RSS {outcome['peak_rss_mb']:.0f} MB"
            )
            backfills.append(outcome)
            empty_bucket(client)

        log(
            f"DataVault's hot path (Retrieve, ingest at 500 rows/s) in four phases of >= {HOT_PATH_IDLE_SECONDS:.0f} s"
        )
        hot_path = run_hot_path(
            dsn, day, moto.url, snowflake_port, server.pid() if server else None, shared=SHARED_PHASES
        )
        for phase, figures in hot_path.items():
            log(
                f"  {phase:<40} Retrieve p99 {figures['p99_ms']:.2f} ms, ingest {figures['ingest_achieved']:.0f}/s, "
                f"oldest snapshot {figures['snapshot_seconds_max']:.1f} s"
            )
        empty_bucket(client)
    finally:
        stop_launcher()
        for process in (snowflake, moto):
            if process is not None:
                process.stop()
        shutil.rmtree(WORK / "snowflake", ignore_errors=True)
        if server is not None:
            server.stop()

    code_location_figures = code_location.measure()
    one_day_bytes, ten_day_bytes = sizes[day]["bytes"], sizes[day10]["bytes"]
    table = {
        name: summarize(
            runs,
            *(
                (DAY_10M.rows_per_day, ten_day_bytes)
                if name.endswith("10M")
                else (DAY_1M.rows_per_day, one_day_bytes)
            ),
        )
        for name, runs in results.items()
    }
    psql_s, file_s = table["psql"]["seconds"], table["stage -> file://"]["seconds"]
    ratios = {
        "stage_vs_copy": file_s / psql_s,
        "stage_s3_vs_copy": table["stage -> S3 (moto)"]["seconds"] / psql_s,
        "dlt_vs_stage": table["dlt"]["seconds"] / file_s,
        "dlt_vs_stage_s3": table["dlt"]["seconds"] / table["stage -> S3 (moto)"]["seconds"],
        "peak_rss_mb": table["stage -> file://"]["peak_rss_mb"],
        "peak_rss_s3_mb": table["stage -> S3 (moto)"]["peak_rss_mb"],
        "rss_growth_10x": table["stage -> file:// 10M"]["peak_rss_mb"]
        / table["stage -> file://"]["peak_rss_mb"],
        "stage_vs_copy_10M": table["stage -> file:// 10M"]["seconds"] / table["psql 10M"]["seconds"],
        "stage_vs_copy_full": table["stage, bursts off"]["seconds"] / psql_s,
        "stage_vs_copy_10m_full": table["stage, bursts off 10M"]["seconds"] / table["psql 10M"]["seconds"],
        "backfill_overhead": median(b["overhead"] for b in backfills),
        "fingerprint_vs_stage": (
            table["fingerprint postgres"]["seconds"] + table["fingerprint snowflake"]["seconds"]
        )
        / file_s,
        "retrieve_p99_ratio": p99_ratio(hot_path, "backfill" + ISOLATED),
        "retrieve_p99_ratio_stage": p99_ratio(hot_path, "stage step (1M-row day)" + ISOLATED),
        "retrieve_p99_ratio_drift": p99_ratio(hot_path, DRIFT_PHASE + ISOLATED),
        "retrieve_p99_ratio_idle_phase": p99_ratio_to_idle_phase(hot_path, "backfill" + ISOLATED),
        "retrieve_p99_ratio_drift_idle_phase": p99_ratio_to_idle_phase(hot_path, DRIFT_PHASE + ISOLATED),
        "retrieve_p99_ratio_whole": p99_ratio(hot_path, "backfill" + burst_label(WHOLE) + ISOLATED),
        "retrieve_p99_ratio_drift_whole": p99_ratio(hot_path, DRIFT_PHASE + burst_label(WHOLE) + ISOLATED),
        "stage_seconds_1m": hot_path["stage step (1M-row day)" + ISOLATED]["stage_seconds"],
        "stage_seconds_1m_whole": hot_path["stage step (1M-row day)" + burst_label(WHOLE) + ISOLATED][
            "stage_seconds"
        ],
        "retrieve_p99_ratio_shared": p99_ratio(hot_path, "backfill") if SHARED_PHASES else None,
        "retrieve_p99_ratio_throttled": [v for k, v in hot_path.items() if "throttled" in k][0]["p99_ms"]
        / hot_path["idle"]["p99_ms"]
        if SHARED_PHASES
        else None,
        "ingest_ratio": hot_path["backfill" + ISOLATED]["ingest_achieved"]
        / hot_path["backfill" + ISOLATED]["ingest_target"],
        "fingerprint_floor_vs_stage": floor["seconds_both_sides"] / file_s,
        "fingerprint_before_vs_stage": (
            table["fingerprint postgres (before)"]["seconds"]
            + table["fingerprint snowflake (before)"]["seconds"]
        )
        / file_s,
    }
    ratios["stage_vs_copy_types"] = types_figures["stage_vs_copy_types"]
    ratios["types"] = types_figures
    ratios.update(code_location.ratios(code_location_figures))
    ratios["code_location"] = code_location_figures
    drift_table = drift_figures(drift)
    ratios["drift_scan_mrows_s"] = drift_table["cheap postgres"]["mrows_per_s"]
    ratios["daily_cpu"] = daily_cpu(table, drift_table)
    report = render(
        table,
        ratios,
        backfills,
        hot_path,
        drift_table,
        floor,
        machine() + f"; PostgreSQL {pg_version}",
        time.monotonic() - started,
    )
    RESULTS.write_text(report)
    (WORK / "results.json").write_text(
        json.dumps(
            {
                "table": table,
                "ratios": ratios,
                "backfills": backfills,
                "hot_path": hot_path,
                "drift": drift_table,
                "md5_floor": floor,
            },
            indent=1,
            default=str,
        )
    )
    print(report)
    print(
        summary_line(ratios),
        flush=True,
    )


def hot_path_table(hot_path: dict) -> list[str]:
    """The hot-path phases' table: Retrieve's percentiles, ingest, the extract's speed and the database's CPU."""
    return [
        "| phase | Retrieve p50 ms | p99 ms | p99.9 ms | quiet beside: p99 ms | p99 / quiet beside | "
        "p99 / idle phase | ingest rows/s (of 500) | extract rows/s | "
        "PostgreSQL CPU s (per 1M rows) | CPUs held (postgres; others) | oldest snapshot s (xid age) | "
        "dead tuples |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {phase} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['p999_ms']:.2f} | "
            + (
                f"{f['quiet_beside_p99_ms']:.2f} | {p99_ratio(hot_path, phase):.2f} | "
                if "quiet_beside_p99_ms" in f
                else "- | - | "
            )
            + f"{p99_ratio_to_idle_phase(hot_path, phase):.2f} | {f['ingest_achieved']:.0f} | "
            f"{f.get('extract_rows_per_s', 0) / 1e3:,.0f}k | {cpu_cell(f)} | {held_cell(f)} | "
            f"{f['snapshot_seconds_max']:.1f} ({f['xmin_age_max']}) | {f['dead_tuples_max']:,} |"
            for phase, f in hot_path.items()
        ),
    ]


def p99_ratio(hot_path: dict, phase: str) -> float:
    """A phase's Retrieve p99 over the p99 in the quiet seconds beside its work, or over the idle phase's."""
    figures = hot_path[phase]
    return figures["p99_ms"] / figures.get("quiet_beside_p99_ms", idle_phase(hot_path, phase)["p99_ms"])


def p99_ratio_to_idle_phase(hot_path: dict, phase: str) -> float:
    """A phase's Retrieve p99 over the idle phase's, with PostgreSQL on the same CPUs as in that phase."""
    return hot_path[phase]["p99_ms"] / idle_phase(hot_path, phase)["p99_ms"]


def idle_phase(hot_path: dict, phase: str) -> dict:
    return hot_path["idle" + (ISOLATED if phase.endswith(ISOLATED) else "")]


def summary_line(ratios: dict) -> str:
    return (
        f"bench: stage_vs_copy={ratios['stage_vs_copy']:.2f} dlt_vs_stage={ratios['dlt_vs_stage']:.2f} "
        f"peak_rss_mb={ratios['peak_rss_mb']:.0f} rss_growth_10x={ratios['rss_growth_10x']:.2f} "
        f"backfill_overhead={ratios['backfill_overhead']:.2f} "
        f"fingerprint_vs_stage={ratios['fingerprint_vs_stage']:.2f} "
        f"retrieve_p99_ratio={ratios['retrieve_p99_ratio']:.2f} "
        f"retrieve_p99_ratio_drift={ratios['retrieve_p99_ratio_drift']:.2f} "
        f"retrieve_p99_ratio_idle_phase={ratios['retrieve_p99_ratio_idle_phase']:.2f} "
        f"retrieve_p99_ratio_drift_idle_phase={ratios['retrieve_p99_ratio_drift_idle_phase']:.2f} "
        f"retrieve_p99_ratio_whole={ratios['retrieve_p99_ratio_whole']:.2f} "
        f"retrieve_p99_ratio_drift_whole={ratios['retrieve_p99_ratio_drift_whole']:.2f} "
        f"stage_seconds_1m={ratios['stage_seconds_1m']:.1f} "
        f"stage_seconds_1m_whole={ratios['stage_seconds_1m_whole']:.1f} "
        f"ingest_ratio={ratios['ingest_ratio']:.3f} "
        f"stage_vs_copy_10m={ratios['stage_vs_copy_10M']:.2f} "
        f"stage_vs_copy_full={ratios['stage_vs_copy_full']:.2f} "
        f"stage_vs_copy_10m_full={ratios['stage_vs_copy_10m_full']:.2f} "
        f"retrieve_p99_ratio_stage={ratios['retrieve_p99_ratio_stage']:.2f} "
        f"stage_vs_copy_types={ratios['stage_vs_copy_types']:.2f} "
        f"stage_vs_copy_types_whole={ratios['types']['stage_vs_copy_types_whole']:.2f} "
        f"drift_scan_mrows_s={ratios['drift_scan_mrows_s']:.1f} "
        + "".join(
            f"daily_cpu_min_{key}={ratios['daily_cpu'][way]['total'] / 60:.1f} "
            for key, way in (
                ("alone", "shipped, no other application at work"),
                ("at_work", "shipped, Retrieve at work (bursts throughout)"),
                ("whole", "whole statements (before bursts; a replica)"),
            )
            if way in ratios["daily_cpu"]
        )
        + f"defs_load_50_vs_1={ratios['defs_load_50_vs_1']:.2f} "
        f"dg_check_50_vs_1={ratios['dg_check_50_vs_1']:.2f} "
        f"sensor_tick_p90_s_50={ratios['sensor_tick_p90_s_50']:.3f}"
    )


def render(
    table: dict,
    ratios: dict,
    backfills: list[dict],
    hot_path: dict,
    drift: dict,
    floor: dict,
    machine_text: str,
    elapsed: float,
) -> str:
    def verdict(ok: bool, *timed: str) -> str:
        # A time ratio is only as good as its runs: if other work held the CPUs when either side ran, say so.
        busy = max((table[name]["busy"] for name in timed), default=0.0)
        if busy > BUSY_LIMIT:
            return (
                f"{'met' if ok else 'missed'}, but **disturbed**: other work used {busy:.1f} of 2 cores "
                "before those runs; re-run on a quiet machine"
            )
        return "met" if ok else "**missed**"

    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} in "
        f"{elapsed / 60:.1f} min.",
        f"Machine: {machine_text}.",
        "",
        f"Each contender ran as its own process, in interleaved rounds ({DAY_REPEATS} for the 1M-row day, "
        f"{REPEATS} for the 10M-row day and the backfill); medians shown, with the fastest and slowest run, "
        "and the highest peak RSS of any run. Seconds are the data movement as each contender timed it "
        "(process start-up and imports excluded; see 'process s'); psql's is its whole process. MB/s counts "
        f"the day's row data as PostgreSQL stores it ({DAY_1M.rows_per_day:,} rows = "
        f"{table['psql']['mb_per_s'] * table['psql']['seconds']:.0f} MB). Every contender reads the same "
        f"rows with the stage step's own SELECT. Each run waited (up to {QUIET_WAIT_SECONDS:.0f} s) for "
        "other work to leave the CPUs; 'busy' is the median number of cores other "
        "work used in the second before a run (of 2).",
        "",
        "| contender | seconds | (min - max) | process s | rows/s | MB/s | peak RSS MB | busy | files |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        files = "-"
        if row["files"]:
            files = f"{row['files']}: {row['staged_mb']:.0f} MB"
            if row["file_mb"]:
                files += f" ({row['file_mb'][0]:.0f}-{row['file_mb'][1]:.0f} MB each)"
        if row["emulator_cpu"] is not None:
            files += f"; moto used {row['emulator_cpu']:.1f} CPU s"
        lines.append(
            f"| {name} | {row['seconds']:.2f} | {row['spread'][0]:.2f} - {row['spread'][1]:.2f} | "
            f"{row['process_seconds']:.2f} | {row['rows_per_s'] / 1e3:,.0f}k | {row['mb_per_s']:.0f} | "
            f"{row['peak_rss_mb']:.0f} | {row['busy']:.2f} | {files} |"
        )
    overheads = ", ".join(f"{b['overhead']:.0%}" for b in backfills)
    step_names = sorted({name for b in backfills for name in b["steps"]})
    step_text = "; ".join(
        f"{name} {statistics.median(b['steps'].get(name, 0.0) for b in backfills):.1f} s"
        for name in step_names
    )
    outside = statistics.median(b["wall"] - sum(b["steps"].values()) for b in backfills)
    checks = [sum(v for k, v in b["steps"].items() if "check" in k) for b in backfills]
    without_checks = statistics.median(
        1 - b["moving"] / (b["wall"] - c) for b, c in zip(backfills, checks, strict=True)
    )
    walls = ", ".join(f"{b['wall']:.1f}" for b in backfills)
    movings = ", ".join(f"{b['moving']:.1f}" for b in backfills)
    b = backfills[len(backfills) // 2]
    lines += [
        "",
        f"Backfill, {len(BACKFILL.days)} days x {BACKFILL.rows_per_day:,} rows through Dagster ({b['runs']} "
        f"run(s) of up to {DAYS_PER_RUN} days; PostgreSQL -> moto S3 -> fakesnow): wall {walls} s; moving "
        f"data (per-day stage + load seconds from the run logs) {movings} s; overhead {overheads}; peak RSS "
        f"{max(x['peak_rss_mb'] for x in backfills):.0f} MB. Dagster's step durations (medians): "
        f"{step_text}; outside any step (process start-up, imports, run bookkeeping): {outside:.1f} s. Time "
        "not spent moving data counts as overhead, the asset checks' reconciliation included; without the "
        f"checks' step it would be {without_checks:.0%}. PostgreSQL's side of the checks was read by the load "
        f"step while the COPYs ran ({b['days_read_by_load']:.0f} of {len(BACKFILL.days)} days in the median "
        f"run; after its last COPY the step waited {b['read_wait']:.2f} s for it), so the checks' step "
        "reads only Snowflake.",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| speed: stage step (shipped default) >= 50 % of psql binary COPY's speed (<= 2 x its time), at 1M "
        f"and 10M rows | {ratios['stage_vs_copy']:.2f} x (file://), "
        f"{ratios['stage_s3_vs_copy']:.2f} x (S3 emulator), {ratios['stage_vs_copy_10M']:.2f} x at 10M rows "
        "| "
        f"{verdict(max(ratios['stage_vs_copy'], ratios['stage_vs_copy_10M']) <= 2, 'psql', 'stage -> file://')} |",
        f"| full speed: bursts off (a replica) <= 1.15 x psql, at 1M and 10M rows | "
        f"{ratios['stage_vs_copy_full']:.2f} x, {ratios['stage_vs_copy_10m_full']:.2f} x at 10M rows | "
        f"{verdict(max(ratios['stage_vs_copy_full'], ratios['stage_vs_copy_10m_full']) <= 1.15, 'psql', 'stage, bursts off')} |",
        bench_types.line(ratios["types"]),
        f"| speed: faster than dlt's fastest (shipped default) | {ratios['dlt_vs_stage']:.2f} x (file://), "
        f"{ratios['dlt_vs_stage_s3']:.2f} x (S3 emulator) | "
        f"{verdict(ratios['dlt_vs_stage'] > 1, 'dlt', 'stage -> file://')} |",
        f"| peak RSS <= 400 MB at 1M rows | {ratios['peak_rss_mb']:.0f} MB (file://), "
        f"{ratios['peak_rss_s3_mb']:.0f} MB (S3 emulator) | {verdict(ratios['peak_rss_mb'] <= 400)} |",
        f"| 10 x the rows, <= 1.2 x the memory | {ratios['rss_growth_10x']:.2f} x | "
        f"{verdict(ratios['rss_growth_10x'] <= 1.2)} |",
        f"| backfill overhead <= 25% of wall time (was 50%) | {ratios['backfill_overhead']:.0%} | "
        f"{verdict(ratios['backfill_overhead'] <= 0.25)} |",
        "| 1M-row day's fingerprint, both sides, <= 0.5 x the stage step | "
        f"{ratios['fingerprint_vs_stage']:.2f} x (before: {ratios['fingerprint_before_vs_stage']:.2f} x; the "
        f"MD5 alone of both sides' canonical text, {floor['text_bytes'] / 1e6:.0f} MB each at "
        f"{floor['md5_bytes_per_s'] / 1e6:.0f} MB/s per core on all {floor['cores']} cores: "
        f"{ratios['fingerprint_floor_vs_stage']:.2f} x) | "
        f"{verdict(ratios['fingerprint_vs_stage'] <= 0.5, 'fingerprint postgres', 'fingerprint snowflake')} "
        f"|",
        "",
        f"DataVault's hot path on the same PostgreSQL (bench/contenders/hot_path.py): 4 Retrieve clients, each "
        "selecting one record by a random id of the same 20,000 100 times a second, and ingest inserting "
        f"500 rows/s, for each phase (at least {HOT_PATH_IDLE_SECONDS:.0f} s). Before each phase the 20,000 "
        "records are read once, so that every phase starts with Retrieve's pages in memory (this machine pages "
        "out file pages unused for about a minute). The oldest snapshot is the longest-open "
        "transaction holding back vacuum, sampled each second; dead tuples are the table's, at most.",
        "",
        "First with PostgreSQL on a CPU of its own, as in production (bench/cpu_isolation.py: the postmaster "
        "and its backends on CPU 0 with the Retrieve and ingest clients at SCHED_FIFO, everything else on the others, "
        "the rest of the machine's threads that may move included, "
        "set with sched_setaffinity as `taskset` "
        "does, and read back from each process's /proc/<pid>/status at the end of the phase); with "
        "BENCH_SHARED_PHASES=1, then with every process sharing every CPU. PostgreSQL CPU is the cluster's backends' user + system seconds "
        "in the phase, the hot path's own included (its idle phase's figure). Each phase but idle runs its work "
        f"between {QUIET_BESIDE_SECONDS:.0f} quiet seconds before and after under the same workload; its "
        "percentiles are of the Retrieves that ended while the work ran, and 'p99 / quiet beside' compares them "
        "with the p99 of those quiet seconds, measured the same minute.",
        "",
        *hot_path_table(hot_path),
        "",
        "| hot-path target | measured | |",
        "|---|---|---|",
        f"| during a backfill, PostgreSQL on its own CPU, Retrieve p99 <= 1.5 x idle (the quiet seconds beside "
        f"it) | {ratios['retrieve_p99_ratio']:.2f} x (x the idle phase: "
        f"{ratios['retrieve_p99_ratio_idle_phase']:.2f}) | "
        f"{'met' if ratios['retrieve_p99_ratio'] <= 1.5 else '**missed**'} |",
        f"| during the drift scan, PostgreSQL on its own CPU, Retrieve p99 <= 1.5 x idle (the quiet seconds "
        f"beside it) | {ratios['retrieve_p99_ratio_drift']:.2f} x (x the idle phase: "
        f"{ratios['retrieve_p99_ratio_drift_idle_phase']:.2f}) | "
        f"{'met' if ratios['retrieve_p99_ratio_drift'] <= 1.5 else '**missed**'} |",
        f"| during the 1M-row day's stage step in a loop, PostgreSQL on its own CPU, Retrieve p99 <= 1.5 x idle "
        f"(the quiet seconds beside it) | {ratios['retrieve_p99_ratio_stage']:.2f} x | "
        f"{'met' if ratios['retrieve_p99_ratio_stage'] <= 1.5 else '**missed**'} |",
        f"| during a backfill, PostgreSQL on its own CPU, ingest >= 99% of its target | {ratios['ingest_ratio']:.1%} | "
        f"{'met' if ratios['ingest_ratio'] >= 0.99 else '**missed**'} |",
        *(
            [
                f"| (shared CPUs) during a backfill, Retrieve p99 <= 1.5 x idle | "
                f"{ratios['retrieve_p99_ratio_shared']:.2f} x | "
                f"{'met' if ratios['retrieve_p99_ratio_shared'] <= 1.5 else '**missed**'} |",
                f"| (shared CPUs) extract throttled to half speed, Retrieve p99 <= 1.2 x idle | "
                f"{ratios['retrieve_p99_ratio_throttled']:.2f} x | "
                f"{'met' if ratios['retrieve_p99_ratio_throttled'] <= 1.2 else '**missed**'} |",
            ]
            if SHARED_PHASES
            else []
        ),
        "",
        *drift_lines(drift),
        "",
        *daily_cpu_lines(ratios["daily_cpu"]),
        "",
        *code_location.lines(ratios["code_location"]),
        "",
        "```",
        summary_line(ratios),
        "```",
        "",
    ]
    return "\n".join(lines)


def cpu_cell(figures: dict) -> str:
    if "postgres_cpu_seconds" not in figures:
        return "-"
    cpu = figures["postgres_cpu_seconds"]
    rows = figures.get("rows")
    return f"{cpu:.1f}" + (f" ({cpu / rows * 1e6:.2f})" if rows else "")


def held_cell(figures: dict) -> str:
    held = figures.get("isolation")
    if not held:
        return "shared"
    return (
        f"{held['postgres_processes_on_their_cpu']}/{held['postgres_processes']} on CPU "
        f"{','.join(map(str, held['postgres_cpus']))}; {held['other_processes_off_it']}/{held['other_processes']} off it"
        f"; {held.get('machine_threads_moved', 0)} of the machine's other threads moved off it"
    )


def drift_lines(drift: dict) -> list[str]:
    cheap, content = drift["cheap postgres"], drift["content postgres"]
    year = 365e6 / (cheap["mrows_per_s"] * 1e6)
    worst_open = max(f["open_before_statement_s"] or 0 for f in drift.values())
    worst_idle = max(f["idle_in_transaction_s"] or 0 for f in drift.values())

    def cpu(f: dict) -> str:
        return "-" if f["postgres_cpu_seconds"] is None else f"{f['postgres_cpu_seconds']:.2f}"

    whole = drift.get("cheap postgres, whole statements")
    whole_cheap = f"; one whole statement, the same run: {whole['mrows_per_s']:.1f}M rows/s" if whole else ""

    return [
        "The drift scan (datavault_analytics/drift.py), each tier as the sensor runs it, medians of "
        f"{REPEATS} runs. The cheap tier reads every day of the sensor's history on PostgreSQL "
        f"({cheap['days']} days with rows) and the days loaded into the Snowflake emulator (the 1M-row day); "
        "the content tier is one day's full fingerprint. PostgreSQL CPU is every backend's, parallel workers "
        "included. A separate run per tier sampled pg_stat_activity every 5 ms.",
        "",
        "| tier | side | rows | seconds | M rows/s | PostgreSQL CPU s | open before its statement, max s | "
        "idle in transaction, max s |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {name.split(' ', 1)[0]} | {name.split(' ', 1)[1]} | {f['rows']:,} | {f['seconds']:.3f} | "
            f"{f['mrows_per_s']:.1f} | {cpu(f)} | {f['open_before_statement_s'] or 0:.3f} | "
            f"{f['idle_in_transaction_s'] or 0:.3f} |"
            for name, f in drift.items()
        ),
        "",
        "| drift target | measured | |",
        "|---|---|---|",
        f"| cheap tier >= 10M rows/s of history on PostgreSQL (a year at 1M rows a day in < 40 s) | "
        f"{cheap['mrows_per_s']:.1f}M rows/s (a year: {year:.0f} s){whole_cheap} | "
        f"{'met' if cheap['mrows_per_s'] >= 10 else '**missed**'} |",
        f"| no transaction outlives one day's read, none waits idle in it (> 100 ms) | idle in a transaction "
        f"{worst_idle * 1000:.0f} ms at most; a day's read in pieces (one snapshot: its slices, or FETCHes from "
        f"its cursor) kept its transaction open {worst_open * 1000:.0f} ms at most before its last piece | "
        f"{'met' if worst_idle < 0.1 else '**missed**'} |",
        f"| content tier, one 1M-row day | {content['seconds']:.2f} s on PostgreSQL, {cpu(content)} CPU s | - |",
    ]


def daily_cpu(table: dict, drift: dict) -> dict:
    """DataVault's database CPU seconds a day at 1 year x 1M rows a day with the shipped drift defaults
    (docs/costs.md): the day's extract, its load-time fingerprint, 4 cheap-tier scans of 365 days and 56
    content-verified days; per way of reading, from the runs above."""
    ways = {
        "shipped, no other application at work": ("stage -> file://", ""),
        "shipped, Retrieve at work (bursts throughout)": ("stage, bursts only", ", bursts only"),
        "whole statements (before bursts; a replica)": ("stage, bursts off", ", whole statements"),
    }
    found = {}
    for way, (stage, side) in ways.items():
        cheap, content = drift[f"cheap postgres{side}"], drift[f"content postgres{side}"]
        if None in (
            table[stage]["postgres_cpu"],
            cheap["postgres_cpu_seconds"],
            content["postgres_cpu_seconds"],
        ):
            continue
        parts = {
            "extract": table[stage]["postgres_cpu"],
            "fingerprint": content["postgres_cpu_seconds"],
            "cheap tier": 4 * 365 * cheap["postgres_cpu_seconds"] / (cheap["rows"] / 1e6),
            "content tier": 56 * content["postgres_cpu_seconds"],
        }
        found[way] = {**parts, "total": sum(parts.values())}
    return found


def daily_cpu_lines(costs: dict) -> list[str]:
    if not costs:
        return []
    return [
        "What DataVault's database pays a day at 1 year x 1M rows a day with the shipped drift defaults "
        "(docs/costs.md), from the PostgreSQL CPU of the runs above: the day's extract (the stage step's), its "
        "load-time fingerprint (as the content tier's one day), 4 cheap-tier scans of 365 days (the cheap "
        "tier's CPU per 1M rows of history), 56 content-verified days.",
        "",
        "| way of reading | extract s | fingerprint s | cheap tier s | content tier s | total a day | <= 10 CPU min |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {way} | {c['extract']:.1f} | {c['fingerprint']:.1f} | {c['cheap tier']:.0f} | "
            f"{c['content tier']:.0f} | {c['total'] / 60:.1f} min | "
            f"{'met' if c['total'] <= 600 else '**missed**'} |"
            for way, c in costs.items()
        ),
    ]


if __name__ == "__main__":
    main()
