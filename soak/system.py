"""The whole running system the soak works on, each part a real process it can kill, pause and restart.

- DataVault's PostgreSQL (the source, and the partition locks) and, apart from it, Dagster's own
  PostgreSQL: production keeps Dagster's storage off DataVault's database, and the nemesis crashes only
  DataVault's.
- moto's S3 and the Snowflake emulator as processes, each behind a FaultProxy for the pipeline's traffic;
  the checker reads both directly. The day locks' sessions reach DataVault's PostgreSQL through a FaultProxy
  too (DATAVAULT_LOCK_DSN), which can lose them.
- A small tmpfs as the pipeline's TMPDIR and Dagster's compute-log folder.
- Dagster: the code server (the shipped code location and the soak's table of the new types,
  soak/code_location.py), the daemon and the webserver, on an instance made from the local stack's
  dagster.yaml with shorter monitoring intervals (`INSTANCE_OVERRIDES`).
- The alert receiver (soak/alerts.py), the webhook the alert sensor POSTs to.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datavault_analytics.local_stack.credentials import LOCAL_S3_CREDENTIALS
from datavault_analytics.local_stack.postgres_server import PostgresServer
from datavault_analytics.local_stack.processes import free_port, port_answers
from datavault_analytics.local_stack.seed import SOURCE_DDL
from datavault_analytics.local_stack.stack import (
    SNOWFLAKE_SETTINGS,
    STAGE_BUCKET,
    STAGE_PREFIX,
    ensure_bucket,
)
from datavault_analytics.names import ALERT_SENSOR_NAME
from soak import types_table
from soak.alerts import AlertReceiver
from soak.proxy import FaultProxy

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCAL_INSTANCE = REPO / "datavault_analytics" / "local_stack" / "dagster.yaml"
TMPFS_MB = 24
ORPHAN_GRACE_SECONDS = 45.0  # an orphaned gRPC code server exits 30 s after its parent dies
# The shipped local instance, with the daemon's loops shortened so that minutes of soak see what hours
# of production would: the nemesis acts every few seconds.
INSTANCE_OVERRIDES = {
    "run_monitoring": {
        "poll_interval_seconds": 5,
        "start_timeout_seconds": 90,
        "cancel_timeout_seconds": 60,
        "free_slots_after_run_end_seconds": 5,
    },
}
# The pipeline's settings for the soak, compressed in time the same way; everything else is shipped.
# The nemesis's migrations: each step of the cycle (System.migrate_source), by turns on each table.
MIGRATED_TABLES = ("records", "retrieval_log", types_table.TABLE)
MIGRATIONS = (
    ("ALTER TABLE {table} ADD COLUMN {column} integer", "added"),
    ("ALTER TABLE {table} ALTER COLUMN {column} TYPE bigint", "widened"),
    ("ALTER TABLE {table} DROP COLUMN {column}", "dropped"),
)
PIPELINE_SETTINGS = {
    "DATAVAULT_ENV": "local",
    "DATAVAULT_DRIFT_SCAN_SECONDS": "10",
    # The shipped budget (180 s an hour), compressed as the scan interval is (900 s to 10 s).
    "DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR": "16200",
    "DATAVAULT_RETRY_DELAY_SECONDS": "2",
    "DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS": "45",
    "DATAVAULT_LOCK_WAIT_SECONDS": "180",
    "DATAVAULT_BACKFILL_DAYS_PER_RUN": "4",
    "DATAVAULT_SCHEDULE_CRON": "* * * * *",
    "SNOWFLAKE_LOGIN_TIMEOUT": "20",
    "FRESHNESS_DAEMON_INTERVAL_SECONDS": "10",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class Process:
    """One long-running process of the system, restartable with the same command."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path
    popen: subprocess.Popen | None = None
    paused: bool = False

    def start(self) -> "Process":
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.paused = False
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, number: int) -> bool:
        """Send a signal to the process alone (its children, e.g. run workers, are left as they are)."""
        if not self.alive():
            return False
        os.kill(self.popen.pid, number)
        if number == signal.SIGKILL:
            self.popen.wait(10)
        self.paused = number == signal.SIGSTOP or (self.paused and number != signal.SIGCONT)
        return True

    def stop(self) -> None:
        """The process and its whole group, the run workers it started included."""
        if self.popen is None:
            return
        for number in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.killpg(self.popen.pid, number)
            except ProcessLookupError:
                break
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.popen.poll() is None:
            self.popen.wait(10)


@dataclass
class System:
    root: Path
    canary: str  # the Snowflake password and the AWS secret: must never appear where Dagster writes
    first_day: str
    source: PostgresServer = field(init=False)
    dagster_db: PostgresServer = field(init=False)
    moto: Process = field(init=False)
    snowflake: Process = field(init=False)
    s3_proxy: FaultProxy = field(init=False)
    snowflake_proxy: FaultProxy = field(init=False)
    lock_proxy: FaultProxy = field(init=False)  # the day locks' sessions to DataVault's PostgreSQL
    code_server: Process = field(init=False)
    daemon: Process = field(init=False)
    webserver: Process = field(init=False)
    alerts: AlertReceiver = field(init=False)
    tmp: Path = field(init=False)
    tmpfs_mounted: bool = False
    webserver_port: int = 0

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def source_dsn(self) -> str:
        return self.source.dsn("datavault")

    @property
    def dagster_dsn(self) -> str:
        return self.dagster_db.dsn("dagster")

    # -- bring-up ------------------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.source = PostgresServer(
            self.root / "pg-datavault", free_port(), log_path=self.logs / "pg-datavault.log"
        )
        self.dagster_db = PostgresServer(
            self.root / "pg-dagster", free_port(), log_path=self.logs / "pg-dagster.log"
        )
        for server, database in ((self.source, "datavault"), (self.dagster_db, "dagster")):
            server.start()
            server.create_database(database)
        for ddl in SOURCE_DDL:  # every table the shipped code location has
            self.source.execute_sql_file("datavault", ddl)
        types_table.create(self.source_dsn)  # and the soak's own (soak/code_location.py)

        s3_port, snowflake_port = free_port(), free_port()
        self.moto = Process(
            "moto",
            [sys.executable, "-m", "datavault_analytics.local_stack.s3_server", "--port", str(s3_port)],
            dict(os.environ),
            self.logs / "moto.log",
            REPO,
        ).start()
        self._wait(lambda: port_answers(s3_port), "moto")
        ensure_bucket(self.s3_direct, STAGE_BUCKET)
        self.snowflake = Process(
            "snowflake",
            [
                sys.executable,
                "-m",
                "datavault_analytics.local_stack.snowflake_server",
                "--port",
                str(snowflake_port),
                "--db-path",
                str(self.root / "snowflake"),
                "--s3-endpoint",
                self.s3_direct,
            ],
            dict(os.environ),
            self.logs / "snowflake.log",
            REPO,
        ).start()
        self._wait(lambda: port_answers(snowflake_port), "the Snowflake emulator")
        self.s3_proxy = FaultProxy("s3", s3_port).start()
        self.snowflake_proxy = FaultProxy("snowflake", snowflake_port).start()
        self.lock_proxy = FaultProxy("postgres locks", self.source.port).start()

        self.tmp = self.root / "tmp"
        self.tmp.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(self.tmp)], capture_output=True
        )
        self.tmpfs_mounted = mounted.returncode == 0
        self._write_instance()
        self.alerts = AlertReceiver(f"hooks/{self.canary}").start()
        env = self.pipeline_env()
        self.code_server = Process(
            "code server", self._code_server_command(), env, self.logs / "code-server.log", self.root
        )
        self.code_server.start()
        self._wait(lambda: port_answers(self._code_port), "the code server", 120)
        self.daemon = Process(
            "daemon",
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            env,
            self.logs / "daemon.log",
            self.root,
        ).start()
        self.webserver_port = free_port()
        self.webserver = Process(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.webserver_port),
                "-w",
                "workspace.yaml",
            ],
            env,
            self.logs / "webserver.log",
            self.root,
        ).start()
        self._wait(lambda: port_answers(self.webserver_port), "the webserver", 120)
        for kind in ("sensor", "schedule"):
            self._dagster(kind, "start", "--start-all")

    def wait_for_alert_sensor(self, timeout: float = 90) -> None:
        """Until the alert sensor has ticked once: it sends what fails after its first tick (a new alert sensor
        starts from then, not from the instance's history), so the faults start after it."""
        query = (
            "query ($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { sensorState "
            "{ ticks(limit: 1) { timestamp } } } } }"
        )
        selector = {
            "repositoryLocationName": "datavault_analytics",
            "repositoryName": "__repository__",
            "sensorName": ALERT_SENSOR_NAME,
        }

        def ticked() -> bool:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.webserver_port}/graphql",
                data=json.dumps({"query": query, "variables": {"s": selector}}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    sensor = json.loads(response.read())["data"]["sensorOrError"]
            except (OSError, KeyError, TypeError, ValueError):
                return False
            return bool(sensor.get("sensorState", {}).get("ticks"))

        self._wait(ticked, "the alert sensor's first tick", timeout)

    def stop_schedules(self) -> list[str]:
        """Stop every running schedule: after the final heal, the system must drain, not keep launching."""
        listed = self._dagster("schedule", "list", "--running", "--name")
        names = [line.strip() for line in listed.splitlines() if line.strip() and " " not in line.strip()]
        for name in names:
            self._dagster("schedule", "stop", name)
        return names

    def _dagster(self, *args: str) -> str:
        """One `dagster` CLI command against the workspace, through the webserver's environment."""
        done = subprocess.run(
            [str(BIN / "dagster"), *args, "-w", "workspace.yaml"],
            cwd=self.root,
            env=self.webserver.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dagster {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    @property
    def s3_direct(self) -> str:
        return f"http://127.0.0.1:{self.moto.command[-1]}"

    @property
    def snowflake_port(self) -> int:
        return int(self.snowflake.command[self.snowflake.command.index("--port") + 1])

    def pipeline_env(self) -> dict[str, str]:
        """What the code server, the daemon, their run workers and an engineer's CLI run with."""
        return {
            **os.environ,
            **PIPELINE_SETTINGS,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_PG_URL": self.dagster_dsn.replace("postgresql://", "postgresql+psycopg2://"),
            "DATAVAULT_PG_DSN": self.source_dsn,
            "DATAVAULT_LOCK_DSN": self.source_dsn.replace(
                f":{self.source.port}/", f":{self.lock_proxy.port}/"
            ),
            "DATAVAULT_START_DATE": self.first_day,
            "DATAVAULT_STAGE_URI": f"s3://{STAGE_BUCKET}/{STAGE_PREFIX}",
            "DATAVAULT_S3_ENDPOINT_URL": self.s3_proxy.url,
            "AWS_ACCESS_KEY_ID": LOCAL_S3_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.canary,
            "AWS_DEFAULT_REGION": LOCAL_S3_CREDENTIALS["region_name"],
            "SNOWFLAKE_ACCOUNT": "fakesnow",
            "SNOWFLAKE_USER": "datavault_loader",
            "SNOWFLAKE_PASSWORD": self.canary,
            **SNOWFLAKE_SETTINGS,
            "SNOWFLAKE_HOST": "127.0.0.1",
            "SNOWFLAKE_PORT": str(self.snowflake_proxy.port),
            "SNOWFLAKE_PROTOCOL": "http",
            "TMPDIR": str(self.tmp),
            "DATAVAULT_ALERT_WEBHOOK_URL": self.alerts.url,
        }

    def checker_env(self) -> dict[str, str]:
        """The same settings, straight to the servers (no proxy): what the checker reads with."""
        return {
            **self.pipeline_env(),
            "DATAVAULT_S3_ENDPOINT_URL": self.s3_direct,
            "SNOWFLAKE_PORT": str(self.snowflake_port),
            "AWS_SECRET_ACCESS_KEY": LOCAL_S3_CREDENTIALS["aws_secret_access_key"],
        }

    def _write_instance(self) -> None:
        self.dagster_home.mkdir()
        instance = yaml.safe_load(LOCAL_INSTANCE.read_text())
        for section, values in INSTANCE_OVERRIDES.items():
            instance[section] = {**instance.get(section, {}), **values}
        instance["compute_logs"] = {
            "module": "dagster.core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(self.tmp / "compute_logs")},
        }
        (self.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(instance))

    @property
    def _code_port(self) -> int:
        return int(self.code_server.command[self.code_server.command.index("-p") + 1])

    def _code_server_command(self) -> list[str]:
        port = free_port()
        command = [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port)]
        command += [
            "-m",
            "soak.code_location",
            "-d",
            str(REPO),
        ]  # soak/ is not installed: found from the repo
        workspace = {
            "grpc_server": {"host": "127.0.0.1", "port": port, "location_name": "datavault_analytics"}
        }
        (self.root / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [workspace]}))
        return command

    @staticmethod
    def _wait(condition, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
            time.sleep(0.2)

    # -- faults and heals ----------------------------------------------------------------------------

    def restart_process(self, process: Process, wait_port: int | None = None) -> None:
        if process.paused:
            process.signal(signal.SIGCONT)
        if not process.alive():
            process.start()
            if wait_port:
                self._wait(lambda: port_answers(wait_port), process.name, 120)

    def restart_code_server(self) -> None:
        self.restart_process(self.code_server, self._code_port)

    def crash_source(self) -> None:
        self.source.crash()

    def start_source(self) -> None:
        if self.source.pid() is None:
            self.source.start()

    def restart_moto(self) -> None:
        """moto keeps objects in memory: it comes back with an empty bucket, the stage lost."""
        self.moto.stop()
        self.moto.start()
        self._wait(lambda: port_answers(int(self.moto.command[-1])), "moto")
        ensure_bucket(self.s3_direct, STAGE_BUCKET)

    def kill_snowflake(self) -> None:
        self.snowflake.signal(signal.SIGKILL)

    def start_snowflake(self) -> None:
        if not self.snowflake.alive():
            self.snowflake.start()
            self._wait(lambda: port_answers(self.snowflake_port), "the Snowflake emulator", 120)

    def terminate_pipeline_sessions(self) -> int:
        import psycopg

        with psycopg.connect(self.source.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
            return len(
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'datavault%' AND pid <> pg_backend_pid()"
                ).fetchall()
            )

    def migrate_source(self, step: int) -> str:
        """DataVault's application migrating its tables: step `step` of a cycle that adds a column of the
        soak's own to a table, widens it, then drops it, table after table. The migration waits at most 5 s for
        its lock (a read of ours holds ACCESS SHARE), as careful migrations do, and fails otherwise."""
        import psycopg

        table, (template, what) = MIGRATED_TABLES[(step // 3) % len(MIGRATED_TABLES)], MIGRATIONS[step % 3]
        column = f"soak_col_{step // 3}"
        with psycopg.connect(self.source_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '5s'")
            conn.execute(template.format(table=table, column=column))
        return f"{what} {table}.{column}"

    def fill_tmp(self) -> None:
        if self.tmpfs_mounted:
            with open(self.tmp / "nemesis-fill", "wb") as out:
                try:
                    while True:
                        out.write(b"\0" * (1 << 20))
                except OSError:
                    pass

    def free_tmp(self) -> None:
        (self.tmp / "nemesis-fill").unlink(missing_ok=True)

    # -- tear-down -----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Everything the soak started, whatever state the nemesis left it in; one part that fails to stop
        does not keep the others running."""
        parts = [
            getattr(self, name, None) for name in ("webserver", "daemon", "code_server", "snowflake", "moto")
        ]
        parts += [
            getattr(self, name, None)
            for name in ("s3_proxy", "snowflake_proxy", "lock_proxy", "alerts", "source", "dagster_db")
        ]
        for part in parts:
            if part is None:
                continue
            try:
                if isinstance(part, PostgresServer):
                    if part.pid() is not None:
                        part.stop()
                else:
                    part.stop()
            except Exception as error:  # noqa: BLE001 - reported, and the rest still stops
                print(f"soak: could not stop {part}: {error}", flush=True)
        if self.tmpfs_mounted:
            subprocess.run(["umount", "-l", str(self.tmp)], capture_output=True)
            self.tmpfs_mounted = False

    def leftovers(self, grace_seconds: float = ORPHAN_GRACE_SECONDS) -> list[str]:
        """Processes still running from this soak's folder `grace_seconds` after the stop (none, once
        stopped). A gRPC code server whose parent was killed (an engineer's `dg launch`) is orphaned and
        exits once its heartbeat has been missing for 30 s (Dagster's --heartbeat-timeout): so the wait."""
        deadline = time.monotonic() + grace_seconds
        while (found := self._running()) and time.monotonic() < deadline:
            time.sleep(1)
        return found

    def _running(self) -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if str(self.root) in cmdline or cwd.startswith(str(self.root)):
                found.append(f"pid {entry.name}: {cmdline[:120]}")
        return found
