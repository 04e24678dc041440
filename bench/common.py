"""What the benchmark shares: its PostgreSQL, its data set, and running one contender as its own process."""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"  # git-ignored: the cluster, stages, logs
BENCH_DATABASE = "datavault_bench"
QUIET_WAIT_SECONDS = float(os.getenv("BENCH_QUIET_WAIT_SECONDS", "20"))


@dataclass(frozen=True)
class Dataset:
    """Days of DataVault rows in the benchmark database; a fixed seed gives the same rows every time."""

    name: str
    days: tuple[date, ...]
    rows_per_day: int
    seed: int


# Fixed past days, so a cached database matches from one run to the next.
DAY_1M = Dataset("1M", (date(2025, 6, 2),), 1_000_000, seed=101)
DAY_10M = Dataset("10M", (date(2025, 6, 4),), 10_000_000, seed=102)
BACKFILL = Dataset(
    "backfill", tuple(date(2025, 7, 1) + timedelta(days=n) for n in range(30)), 100_000, seed=103
)
DATASETS = (DAY_1M, DAY_10M, BACKFILL)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- PostgreSQL ----------------------------------------------------------------------------------


def start_postgres():
    """The benchmark's own PostgreSQL cluster under bench/.work, kept across runs so the seed is cached."""
    from datavault_analytics.local_stack.postgres_server import PostgresServer
    from datavault_analytics.local_stack.processes import free_port

    server = PostgresServer(WORK / "postgres", free_port(), log_path=WORK / "postgres.log", durable=False)
    server.port = server.running_port() or server.port  # left running by an interrupted run: reuse it
    server.start()
    server.create_database(BENCH_DATABASE)
    return server


def window_sql(day: date) -> str:
    return (
        f"created_at >= '{day.isoformat()}T00:00:00+00:00'::timestamptz AND created_at < "
        f"'{(day + timedelta(days=1)).isoformat()}T00:00:00+00:00'::timestamptz"
    )


def ensure_seeded(dsn: str) -> dict[str, dict]:
    """Seed each data set unless the database already holds exactly its rows; returns per-day sizes."""
    import psycopg

    from datavault_analytics.local_stack.seed import RECORDS_SQL, seed_records

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RECORDS_SQL.read_text())
        counts = dict(
            conn.execute(
                "SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM records GROUP BY 1"
            ).fetchall()
        )
    seeded = False
    for dataset in DATASETS:
        if all(counts.get(day) == dataset.rows_per_day for day in dataset.days):
            log(
                f"data set {dataset.name}: cached ({len(dataset.days)} day(s) x {dataset.rows_per_day:,} "
                "rows)"
            )
            continue
        log(
            f"data set {dataset.name}: seeding {len(dataset.days)} day(s) x {dataset.rows_per_day:,} rows ..."
        )
        started = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for day in dataset.days:
                conn.execute(f"DELETE FROM records WHERE {window_sql(day)}")  # noqa: S608
        seed_records(dsn, list(dataset.days), dataset.rows_per_day, seed=dataset.seed)
        log(f"data set {dataset.name}: seeded in {time.monotonic() - started:.0f} s")
        seeded = True
    sizes_file = WORK / "sizes.json"
    sizes = json.loads(sizes_file.read_text()) if sizes_file.exists() and not seeded else {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        if seeded:
            log("VACUUM ANALYZE records (sets hint bits and the visibility map, as on a settled table)")
            conn.execute("VACUUM ANALYZE records")
            conn.execute(
                "VACUUM records"
            )  # the first pass leaves pages of just-committed rows not all-visible
            conn.execute("CHECKPOINT")
        for dataset in (DAY_1M, DAY_10M):
            day = dataset.days[0].isoformat()
            if day not in sizes:
                # Row data as PostgreSQL stores it: the "MB" that MB/s refers to.
                sizes[day] = {
                    "rows": dataset.rows_per_day,
                    "bytes": conn.execute(
                        f"SELECT sum(pg_column_size(r.*)) FROM records r WHERE {window_sql(dataset.days[0])}"  # noqa: S608
                    ).fetchone()[0],
                }
    sizes_file.write_text(json.dumps(sizes, indent=1))
    return sizes


# -- one contender, one process ------------------------------------------------------------------


@dataclass
class Measurement:
    """One run of a contender: its own figures (JSON on its last stdout line) and the process's."""

    contender: str
    process_seconds: float
    peak_rss_mb: float
    report: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """The contender's data-moving time: what it reported, else the whole process's."""
        return float(self.report.get("seconds", self.process_seconds))


_launcher: subprocess.Popen | None = None


def start_launcher() -> None:
    """Start bench/launcher.py while this process is still small (see its docstring). Call it first."""
    global _launcher
    _launcher = subprocess.Popen(
        [sys.executable, "-m", "bench.launcher"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )


def stop_launcher() -> None:
    if _launcher is not None:
        _launcher.stdin.close()
        _launcher.wait(timeout=30)


def cpu_busy(seconds: float = 1.0) -> float:
    """How many cores were busy over the last `seconds`, machine-wide (/proc/stat)."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    total = total1 - total0
    return (total - (idle1 - idle0)) / total * (os.cpu_count() or 1) if total else 0.0


def wait_for_quiet(max_wait: float = QUIET_WAIT_SECONDS, threshold: float = 0.3) -> float:
    """Wait (at most max_wait) until other work leaves the CPUs; returns the cores it still used."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def run_process(
    contender: str,
    command: list[str],
    env: dict | None = None,
    log_name: str | None = None,
    timeout: float = 1800,
    wait_quiet: bool = True,
) -> Measurement:
    """Run command as its own process; its peak RSS is the kernel's high-water mark from wait4().

    Each run starts once the machine is quiet (or after QUIET_WAIT_SECONDS); `busy_before` in its report
    says how many cores other work used in the second before it started.
    """
    if _launcher is None:
        raise RuntimeError("call bench.common.start_launcher() before any run_process()")
    busy_before = wait_for_quiet() if wait_quiet else cpu_busy()  # the hot-path phases run alongside a load
    log_path = WORK / "logs" / f"{log_name or contender}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), environment.get("PYTHONPATH", "")) if p
    )
    with open(log_path, "ab") as stderr:
        stderr.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
    request = {
        "command": command,
        "env": environment,
        "cwd": str(ROOT),
        "log_path": str(log_path),
        "timeout": timeout,
    }
    _launcher.stdin.write(json.dumps(request) + "\n")
    _launcher.stdin.flush()
    answer = json.loads(_launcher.stdout.readline())
    stdout = answer["stdout"]
    if answer["returncode"] != 0:
        raise RuntimeError(
            f"{contender} failed (exit {answer['returncode']}); see {log_path}: {stdout[-500:]}"
        )
    report = {}
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if lines:
        report = json.loads(lines[-1])
    report["busy_before"] = busy_before
    return Measurement(contender, answer["elapsed"], answer["maxrss_kb"] / 1024, report)


def find_psql() -> str:
    for candidate in (shutil.which("psql"), "/usr/lib/postgresql/15/bin/psql"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit(
        "bench: psql not found (apt-get install postgresql-client-15); it is the reference contender"
    )


# -- the stage step and its reference ---------------------------------------------------------------

S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def stage_select(dsn: str, spec, day: str) -> str:
    """The SELECT the stage step runs for `spec`'s day (a TableSpec), from the same catalog lookup it makes."""
    from datavault_analytics.postgres.resource import PostgresResource
    from datavault_analytics.table.day_window import DayWindow

    postgres = PostgresResource(table_spec=spec, dsn=dsn)
    window = DayWindow.for_key(day)
    return postgres._rows_between(postgres.source_columns(), window.start, window.end)


def run_psql(psql: str, dsn: str, select: str, label: str) -> Measurement:
    """psql's binary `\\copy` of `select` to /dev/null: the reference every stage step is compared with."""
    return run_process(
        label,
        [
            psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dsn,
            "-c",
            f"\\copy ({select}) TO '/dev/null' (FORMAT binary)",
        ],
        log_name="psql",
    )


def burst_arguments(max_burst_ms: float | None, alone_burst_ms: float | None = None) -> list[str]:
    """A contender's --max-burst-ms and --alone-burst-ms; none for the shipped defaults."""
    return [
        *([] if max_burst_ms is None else ["--max-burst-ms", str(max_burst_ms)]),
        *([] if alone_burst_ms is None else ["--alone-burst-ms", str(alone_burst_ms)]),
    ]


def run_stage(
    label: str,
    dsn: str,
    day: str,
    stage_uri: str,
    s3_endpoint: str | None = None,
    wait_quiet: bool = True,
    max_burst_ms: float | None = None,
    table: list[str] = (),
    alone_burst_ms: float | None = None,
) -> Measurement:
    """The stage step's contender for a day of records, or of the table `table` names (its --table arguments)."""
    command = [
        sys.executable,
        "-m",
        "bench.contenders.stage_step",
        "--dsn",
        dsn,
        "--day",
        day,
        "--stage-uri",
        stage_uri,
        *burst_arguments(max_burst_ms, alone_burst_ms),
        *table,
    ]
    if s3_endpoint:
        command += ["--s3-endpoint", s3_endpoint]
    return run_process(label, command, env=S3_ENV, log_name="stage_step", wait_quiet=wait_quiet)
