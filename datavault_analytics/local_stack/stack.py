"""`datavault-analytics stack up|down|status|env`: the embedded servers as detached processes.

State in `.datavault/` under the current folder; `up` reuses what runs and starts what is down.
`local_environment()` maps the stack to the pipeline's variables without contacting a server.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datavault_analytics.local_stack.credentials import (
    LOCAL_S3_CREDENTIALS,
    LOCAL_SNOWFLAKE_ACCOUNT,
    LOCAL_SNOWFLAKE_PASSWORD,
    LOCAL_SNOWFLAKE_USER,
)
from datavault_analytics.local_stack.errors import LocalStackError, PortInUseError
from datavault_analytics.local_stack.processes import (
    LOCALHOST,
    pid_is_alive,
    port_answers,
    terminate_pid,
    wait_until,
)

if TYPE_CHECKING:
    from datavault_analytics.local_stack.postgres_server import PostgresServer

STATE_DIR_NAME = ".datavault"
SOURCE_DATABASE = "datavault"
DAGSTER_DATABASE = "dagster"
STAGE_BUCKET = "datavault-stage"
STAGE_PREFIX = "analytics"
DAGSTER_YAML_TEMPLATE = Path(__file__).resolve().parent / "dagster.yaml"
PACKAGE_PARENT = Path(__file__).resolve().parents[2]

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": LOCAL_S3_CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": LOCAL_S3_CREDENTIALS["aws_secret_access_key"],
    "AWS_DEFAULT_REGION": LOCAL_S3_CREDENTIALS["region_name"],
    "SNOWFLAKE_ACCOUNT": LOCAL_SNOWFLAKE_ACCOUNT,
    "SNOWFLAKE_USER": LOCAL_SNOWFLAKE_USER,
    "SNOWFLAKE_PASSWORD": LOCAL_SNOWFLAKE_PASSWORD,
}
SNOWFLAKE_SETTINGS = {
    "SNOWFLAKE_ROLE": "DATAVAULT_LOADER",
    "SNOWFLAKE_WAREHOUSE": "ANALYTICS_WH",
    "SNOWFLAKE_DATABASE": "DATAVAULT",
    "SNOWFLAKE_SCHEMA": "RAW",
}


@dataclass(frozen=True)
class Part:
    name: str
    label: str
    default_port: int
    port_variable: str
    url_scheme: str = ""

    def address(self, port: int) -> str:
        host_port = f"{LOCALHOST}:{port}"
        return f"{self.url_scheme}://{host_port}" if self.url_scheme else host_port


POSTGRES = Part("postgres", "PostgreSQL", 55432, "DATAVAULT_STACK_PG_PORT")
S3 = Part("s3", "S3 (moto)", 55433, "DATAVAULT_STACK_S3_PORT", "http")
SNOWFLAKE = Part("snowflake", "Snowflake (fakesnow)", 55434, "DATAVAULT_STACK_SNOWFLAKE_PORT", "http")
PARTS = (POSTGRES, S3, SNOWFLAKE)


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its state, under root (the current folder by default)."""

    root: Path

    @classmethod
    def at(cls, root: Path | None = None) -> "StackPaths":
        return cls(Path(root or Path.cwd()).absolute())

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def postgres_data(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def snowflake_data(self) -> Path:
        return self.state_dir / "snowflake"

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster_home"

    def log(self, part: Part) -> Path:
        return self.logs_dir / f"{part.name}.log"


@dataclass(frozen=True)
class PartStatus:
    part: Part
    running: bool
    port: int
    pid: int | None
    action: str = ""  # what `up` did: "started" or "reused"

    @property
    def address(self) -> str:
        return self.part.address(self.port)

    def line(self) -> str:
        state = "running" if self.running else "stopped"
        pid = f"pid {self.pid}" if self.pid else "pid -"
        action = f"  ({self.action})" if self.action else ""
        return f"{self.part.name:<10} {state:<8} {self.address:<24} {pid}{action}"


def configured_port(part: Part, environ: Mapping[str, str] | None = None) -> int:
    """The part's port: its override variable if set, else its default."""
    value = (os.environ if environ is None else environ).get(part.port_variable, "").strip()
    if not value:
        return part.default_port
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise LocalStackError(f"{part.port_variable}={value!r} is not a TCP port number")
    return int(value)


def read_state(paths: StackPaths) -> dict[str, dict[str, Any]]:
    """The recorded pids and ports; empty when the stack never ran here (or the file is damaged)."""
    try:
        state = json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(paths: StackPaths, state: dict[str, dict[str, Any]]) -> None:
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    temporary = paths.state_file.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    temporary.replace(paths.state_file)


def record_first_day(first_day: date, root: Path | None = None) -> None:
    """Remember the earliest day seeded into the stack's tables: their partitions start there (see
    local_environment), so the UI does not count the empty days since 2024-01-01 as missing."""
    paths = StackPaths.at(root)
    state = read_state(paths)
    known = (state.get("data") or {}).get("first_day")
    if known is None or str(first_day) < known:
        state["data"] = {"first_day": str(first_day)}
        write_state(paths, state)


def _recorded_pid_and_port(state: Mapping[str, Any], part: Part) -> tuple[int | None, int | None]:
    record = state.get(part.name) or {}
    pid, port = record.get("pid"), record.get("port")
    return (pid if isinstance(pid, int) else None, port if isinstance(port, int) else None)


def _is_running(state: Mapping[str, Any], part: Part) -> bool:
    pid, port = _recorded_pid_and_port(state, part)
    return pid_is_alive(pid) and port is not None and port_answers(port)


def local_environment(root: Path | None = None) -> dict[str, str]:
    """Every variable the pipeline reads, pointing at the local stack under root (default: cwd).

    Ports are the recorded ones while a part's process is alive, else the override variables or the
    defaults. Reads one small JSON file and checks pids; contacts no server, starts nothing.
    """
    paths = StackPaths.at(root)
    state = read_state(paths)
    ports: dict[str, int] = {}
    for part in PARTS:
        pid, port = _recorded_pid_and_port(state, part)
        ports[part.name] = port if port is not None and pid_is_alive(pid) else configured_port(part)
    postgres_base = f"postgresql://postgres@{LOCALHOST}:{ports[POSTGRES.name]}"
    first_day = (state.get("data") or {}).get("first_day")
    return {
        # Where the seeded rows start (the tables' defs.yaml read it); unseeded, their own default.
        **({"DATAVAULT_START_DATE": first_day} if first_day else {}),
        "DATAVAULT_ENV": "local",
        "DATAVAULT_PG_DSN": f"{postgres_base}/{SOURCE_DATABASE}",
        # dagster-postgres sends `NOTIFY channel, %(id)s`, which needs psycopg2's client-side binding;
        # SQLAlchemy 2.1 would otherwise pick psycopg 3 for a bare postgresql:// URL.
        "DAGSTER_PG_URL": f"postgresql+psycopg2://postgres@{LOCALHOST}:{ports[POSTGRES.name]}/{DAGSTER_DATABASE}",
        "DAGSTER_HOME": str(paths.dagster_home),
        "DATAVAULT_STAGE_URI": f"s3://{STAGE_BUCKET}/{STAGE_PREFIX}",
        "DATAVAULT_S3_ENDPOINT_URL": S3.address(ports[S3.name]),
        **LOCAL_CREDENTIALS,
        **SNOWFLAKE_SETTINGS,
        "SNOWFLAKE_HOST": LOCALHOST,
        "SNOWFLAKE_PORT": str(ports[SNOWFLAKE.name]),
        "SNOWFLAKE_PROTOCOL": "http",
    }


def stack_status(root: Path | None = None) -> list[PartStatus]:
    """One PartStatus per part, from the recorded state and a look at each pid and port."""
    paths = StackPaths.at(root)
    state = read_state(paths)
    statuses = []
    for part in PARTS:
        pid, port = _recorded_pid_and_port(state, part)
        running = _is_running(state, part)
        statuses.append(PartStatus(part, running, port or configured_port(part), pid if running else None))
    return statuses


def stack_up(root: Path | None = None, timeout: float = 90.0) -> list[PartStatus]:
    """Start whatever part is down, wait until all answer, then create databases, bucket and dagster.yaml."""
    paths = StackPaths.at(root)
    for folder in (paths.logs_dir, paths.snowflake_data, paths.dagster_home):
        folder.mkdir(parents=True, exist_ok=True)
    state = read_state(paths)
    actions: dict[str, str] = {}
    launched: dict[str, subprocess.Popen] = {}

    def record(part: Part, pid: int, port: int, **extra: Any) -> None:
        state[part.name] = {"pid": pid, "port": port, **extra}
        write_state(paths, state)

    try:
        # S3 and Snowflake first: they take a second to import, PostgreSQL starts meanwhile.
        if _is_running(state, S3):
            actions[S3.name] = "reused"
        else:
            _stop_recorded_process(state, S3)  # alive but not answering: replace it
            s3_port = _free_port_for(S3)
            launched[S3.name] = _launch(
                paths, S3, ["datavault_analytics.local_stack.s3_server", "--port", str(s3_port)]
            )
            record(S3, launched[S3.name].pid, s3_port)
            actions[S3.name] = "started"
        s3_endpoint = S3.address(state[S3.name]["port"])

        if _is_running(state, SNOWFLAKE) and state[SNOWFLAKE.name].get("s3_endpoint") == s3_endpoint:
            actions[SNOWFLAKE.name] = "reused"
        else:
            _stop_recorded_process(state, SNOWFLAKE)  # running against an S3 endpoint that moved
            snowflake_port = _free_port_for(SNOWFLAKE)
            module_args = ["datavault_analytics.local_stack.snowflake_server", "--port", str(snowflake_port)]
            module_args += ["--db-path", str(paths.snowflake_data), "--s3-endpoint", s3_endpoint]
            launched[SNOWFLAKE.name] = _launch(paths, SNOWFLAKE, module_args)
            record(SNOWFLAKE, launched[SNOWFLAKE.name].pid, snowflake_port, s3_endpoint=s3_endpoint)
            actions[SNOWFLAKE.name] = "started"

        postgres = _postgres_server(paths)
        if postgres.is_running():
            actions[POSTGRES.name] = "reused"
        else:
            postgres.port = _free_port_for(POSTGRES)
            postgres.start(timeout=timeout)
            actions[POSTGRES.name] = "started"
        record(POSTGRES, postgres.pid() or 0, postgres.port)

        for part in (S3, SNOWFLAKE):
            if part.name in launched:
                _wait_for_http(paths, part, state[part.name]["port"], launched[part.name], timeout)
    except BaseException:
        for name, process in launched.items():
            terminate_pid(process.pid, timeout=10)
            state.pop(name, None)
        write_state(paths, state)
        raise

    postgres.create_database(SOURCE_DATABASE)
    postgres.create_database(DAGSTER_DATABASE)
    from datavault_analytics.local_stack.seed import SOURCE_DDL

    for ddl in SOURCE_DDL:
        postgres.execute_sql_file(SOURCE_DATABASE, ddl)
    ensure_bucket(s3_endpoint, STAGE_BUCKET)
    shutil.copyfile(DAGSTER_YAML_TEMPLATE, paths.dagster_home / "dagster.yaml")
    state["started_at"] = {"utc": datetime.now(UTC).isoformat(timespec="seconds")}
    write_state(paths, state)
    return [
        PartStatus(part, True, state[part.name]["port"], state[part.name]["pid"], actions[part.name])
        for part in PARTS
    ]


def stack_down(root: Path | None = None, timeout: float = 60.0) -> list[PartStatus]:
    """Stop every part (Snowflake first, so it checkpoints; PostgreSQL by pg_ctl); safe to repeat."""
    paths = StackPaths.at(root)
    state = read_state(paths)
    _stop_recorded_process(state, SNOWFLAKE, timeout)
    _stop_recorded_process(state, S3, timeout)
    if (paths.postgres_data / "PG_VERSION").exists():
        # Stopped through its data folder, so a PostgreSQL whose state file was lost stops too.
        _postgres_server(paths).stop(timeout=timeout)
    for part in PARTS:
        if part.name in state:
            state[part.name]["pid"] = None
    if state:
        write_state(paths, state)
    return stack_status(root)


def ensure_bucket(endpoint_url: str, bucket: str) -> None:
    """Create bucket on the S3 endpoint unless it exists."""
    import boto3
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
    client = boto3.client("s3", endpoint_url=endpoint_url, config=config, **LOCAL_S3_CREDENTIALS)
    try:
        client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError:
        client.create_bucket(Bucket=bucket)


def _postgres_server(paths: StackPaths) -> "PostgresServer":
    """The stack's PostgreSQL; on the port it runs on if it is running, else on the configured one."""
    from datavault_analytics.local_stack.postgres_server import PostgresServer

    server = PostgresServer(paths.postgres_data, configured_port(POSTGRES), log_path=paths.log(POSTGRES))
    running_port = server.running_port()
    if running_port is not None:
        server.port = running_port
    return server


def _free_port_for(part: Part) -> int:
    port = configured_port(part)
    if port_answers(port):
        raise PortInUseError(part.label, port, f"set {part.port_variable} to a free port")
    return port


def _launch(paths: StackPaths, part: Part, module_args: list[str]) -> subprocess.Popen:
    """Start `python -m <module_args>` detached (own session), its output appended to the part's log."""
    log_path = paths.log(part)
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    # The children import this package even when it is not installed (run from a source tree).
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_PARENT), environment.get("PYTHONPATH", "")) if p
    )
    with log_path.open("ab") as log:
        log.write(f"--- {datetime.now(UTC).isoformat(timespec='seconds')} starting {part.label}\n".encode())
        log.flush()
        return subprocess.Popen(
            [sys.executable, "-m", *module_args],
            cwd=paths.root,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_http(
    paths: StackPaths, part: Part, port: int, process: subprocess.Popen, timeout: float
) -> None:
    wait_until(
        lambda: _http_answers(port),
        part=part.label,
        address=part.address(port),
        log_path=paths.log(part),
        timeout=timeout,
        process=process,
    )


def _http_answers(port: int) -> bool:
    """Whether an HTTP server answers on the port, whatever the status (the servers need no auth here)."""
    connection = http.client.HTTPConnection(LOCALHOST, port, timeout=2)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _stop_recorded_process(state: dict[str, Any], part: Part, timeout: float = 30.0) -> None:
    pid, _ = _recorded_pid_and_port(state, part)
    if pid is not None:
        terminate_pid(pid, timeout=timeout)
        state[part.name]["pid"] = None
