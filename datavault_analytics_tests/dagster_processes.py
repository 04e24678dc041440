"""Dagster's own processes for the end-to-end tests: an instance stored in the test cluster, the code
server as the image runs it, the daemon and the webserver, each started and stopped as a process group."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from datavault_analytics.local_stack.processes import free_port, port_answers
from datavault_analytics_tests.dagster_internals import (
    RUNLESS_JOB_NAME,
    RUNLESS_RUN_ID,
    StepMaterializationData,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def instance_in_postgres(pg_server, folder: Path) -> dict[str, str]:
    """A new Dagster instance (the local stack's dagster.yaml) in its own database: its variables."""
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(database)
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "datavault_analytics" / "local_stack" / "dagster.yaml", home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": pg_server.dsn(database).replace("postgresql://", "postgresql+psycopg2://"),
    }


def production_instance_variables(pg_server, s3_endpoint: str) -> dict[str, str]:
    """What deploy/dagster.yaml reads from the environment, for a new database of its own in the test cluster
    and a new compute-log bucket in the S3 emulator."""
    import boto3

    database = f"dagster_prod_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(database)
    bucket = f"compute-logs-{uuid.uuid4().hex[:8]}"
    credentials = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=bucket)
    host, port = pg_server.address.split(":")
    return {
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": port,
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_DB": database,
        "DAGSTER_COMPUTE_LOGS_BUCKET": bucket,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        **credentials,
    }


def wait_for(condition: Callable[[], object], what: str, timeout: float, logs: list[Path] = ()) -> object:
    """Poll until condition() returns something truthy; on the deadline, fail with the processes' logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {p.name}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:])
                for p in logs
                if p.exists()
            )
            raise AssertionError(f"Gave up waiting for {what} after {timeout:.0f} s.\n{tails}")
        time.sleep(1)


def start(command: list[str], log: Path, env: dict, cwd: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        # Own process group: the daemon's run workers and the servers' children stop with them.
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)


def settled(instance: dg.DagsterInstance) -> bool:
    """No run queued or in progress."""
    busy = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    return not instance.get_runs(filters=dg.RunsFilter(statuses=busy))


def code_server_command(port: int) -> list[str]:
    """The Dockerfile's CMD, on a free port: the tests run the code location as the image does."""
    [cmd] = [
        json.loads(line.split(None, 1)[1])
        for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines()
        if line.startswith("CMD ")
    ]
    cmd[cmd.index("-p") + 1] = str(port)
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    return [str(BIN / cmd[0]), *cmd[1:]]


def serve_code_location(folder: Path, env: dict, log: Path, location_name: str) -> subprocess.Popen:
    """The code server on a free port, once it answers, and `folder/workspace.yaml` pointing at it."""
    port = free_port()
    process = start(code_server_command(port), log, env, folder)
    try:
        wait_for(lambda: port_answers(port), "the code server", 120, [log])
    except BaseException:
        stop(process)
        raise
    workspace = {"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": location_name}}
    (folder / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [workspace]}))
    return process


def start_sensors(folder: Path, env: dict, *names: str) -> None:
    """`dagster sensor start` against `folder/workspace.yaml`, as the README tells a local user: the named
    sensors, or all of them if none is named."""
    started = subprocess.run(
        [str(BIN / "dagster"), "sensor", "start", *(names or ["--start-all"]), "-w", "workspace.yaml"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr


def daemon_command() -> list[str]:
    return [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]


@dataclass
class LocalDagster:
    """Real Dagster processes in `folder`, on a new instance in the test cluster, and the variables they share
    (set through `patch`, so the test's own process sees the same instance and settings)."""

    folder: Path
    patch: pytest.MonkeyPatch
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    instance: dg.DagsterInstance | None = None

    def setenv(self, variables: dict[str, str]) -> None:
        for name, value in variables.items():
            self.patch.setenv(name, value)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def open_instance(self) -> dg.DagsterInstance:
        self.instance = dg.DagsterInstance.get()
        return self.instance

    def serve_code_location(self, location_name: str) -> None:
        self.logs.append(self.folder / "code-server.log")
        self.processes.append(serve_code_location(self.folder, self.env, self.logs[-1], location_name))

    def start(self, name: str, command: list[str]) -> None:
        self.logs.append(self.folder / f"{name}.log")
        self.processes.append(start(command, self.logs[-1], self.env, self.folder))

    def start_sensors(self, *names: str) -> None:
        start_sensors(self.folder, self.env, *names)

    def wait(self, condition: Callable[[], object], what: str, timeout: float = 120) -> object:
        return wait_for(condition, what, timeout, self.logs)


@contextmanager
def local_dagster(pg_server, folder: Path) -> Iterator[LocalDagster]:
    """A LocalDagster whose processes are stopped (in reverse order), instance disposed and variables undone
    when the block ends, however it ends."""
    running = LocalDagster(folder, pytest.MonkeyPatch())
    try:
        running.setenv({**instance_in_postgres(pg_server, folder), "PYTHONUNBUFFERED": "1"})
        yield running
    finally:
        for process in reversed(running.processes):
            stop(process)
        if running.instance is not None:
            running.instance.dispose()
        running.patch.undo()


def report_old_load(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str, days_ago: int) -> None:
    """An earlier load of `partition`, days ago: the state before today's run, for the freshness policy."""
    event = dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=RUNLESS_JOB_NAME,
        event_specific_data=StepMaterializationData(dg.AssetMaterialization(key, partition=partition)),
    )
    instance.report_dagster_event(
        event, run_id=RUNLESS_RUN_ID, timestamp=(datetime.now(UTC) - timedelta(days=days_ago)).timestamp()
    )
