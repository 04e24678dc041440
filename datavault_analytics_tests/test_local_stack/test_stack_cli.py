"""`datavault-analytics stack ...` end to end: the real CLI, real servers, a temporary folder, free ports."""

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
import pytest
import snowflake.connector

from datavault_analytics.local_stack.processes import free_port, pid_is_alive, port_answers, terminate_pid
from datavault_analytics.local_stack.stack import PARTS, STAGE_BUCKET

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_NAMES = {
    "DATAVAULT_ENV",
    "DATAVAULT_PG_DSN",
    "DAGSTER_PG_URL",
    "DAGSTER_HOME",
    "DATAVAULT_STAGE_URI",
    "DATAVAULT_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_USER",
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_ROLE",
    "SNOWFLAKE_WAREHOUSE",
    "SNOWFLAKE_DATABASE",
    "SNOWFLAKE_SCHEMA",
    "SNOWFLAKE_HOST",
    "SNOWFLAKE_PORT",
    "SNOWFLAKE_PROTOCOL",
}


@dataclass
class StackFolder:
    """A working folder for the stack and the environment that gives it non-default free ports."""

    path: Path
    environ: dict[str, str]
    ports: dict[str, int]

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "datavault_analytics.cli", *args],
            cwd=self.path,
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"{args}: {result.stderr}"
        return result

    def state(self) -> dict:
        return json.loads((self.path / ".datavault" / "stack.json").read_text())

    def pids(self) -> dict[str, int]:
        return {part.name: self.state()[part.name]["pid"] for part in PARTS}

    def shell_env(self) -> dict[str, str]:
        """The variables after `eval "$(datavault-analytics stack env)"` in a real shell."""
        script = f'eval "$({sys.executable} -m datavault_analytics.cli stack env)" && env -0'
        output = subprocess.run(
            ["bash", "-c", script],
            cwd=self.path,
            env=self.environ,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        return dict(item.split("=", 1) for item in output.decode().split("\0") if "=" in item)


def _environ_with_ports(ports: dict[str, int]) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "SNOWFLAKE_", "DAGSTER_"))
    }
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), environ.get("PYTHONPATH", "")) if p)
    environ["DATAVAULT_STACK_PG_PORT"] = str(ports["postgres"])
    environ["DATAVAULT_STACK_S3_PORT"] = str(ports["s3"])
    environ["DATAVAULT_STACK_SNOWFLAKE_PORT"] = str(ports["snowflake"])
    return environ


def _distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def stack_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFolder]:
    ports = dict(zip(("postgres", "s3", "snowflake"), _distinct_free_ports(3), strict=True))
    folder = StackFolder(tmp_path_factory.mktemp("stack"), _environ_with_ports(ports), ports)
    try:
        yield folder
    finally:
        folder.cli("stack", "down", check=False)
        # Whatever `down` missed must not outlive the tests.
        state_file = folder.path / ".datavault" / "stack.json"
        if state_file.exists():
            for part in PARTS:
                pid = json.loads(state_file.read_text()).get(part.name, {}).get("pid")
                if pid:
                    terminate_pid(pid, timeout=10)


def test_up_starts_every_part_then_a_second_up_reuses_them(stack_folder: StackFolder) -> None:
    first = stack_folder.cli("stack", "up")
    pids = stack_folder.pids()
    for part in PARTS:
        assert pid_is_alive(pids[part.name]), part.name
        assert port_answers(stack_folder.ports[part.name]), part.name
        assert re.search(
            rf"^{part.name}\s+running\s+\S+:{stack_folder.ports[part.name]}\s+pid \d+", first.stdout, re.M
        )
    assert (stack_folder.path / ".datavault" / "logs" / "snowflake.log").exists()
    assert (stack_folder.path / ".datavault" / "dagster_home" / "dagster.yaml").exists()

    second = stack_folder.cli("stack", "up")
    assert stack_folder.pids() == pids
    assert second.stdout.count("(reused)") == 3


def test_status_shows_each_part_running_with_address_and_pid(stack_folder: StackFolder) -> None:
    stack_folder.cli("stack", "up")
    pids = stack_folder.pids()
    lines = stack_folder.cli("stack", "status").stdout.strip().splitlines()
    assert len(lines) == 3
    for line, part in zip(lines, PARTS, strict=True):
        name, state, address, _, pid = line.split()
        assert (name, state, pid) == (part.name, "running", str(pids[part.name]))
        assert address.endswith(f"127.0.0.1:{stack_folder.ports[part.name]}")


def test_env_is_evalable_and_every_variable_reaches_a_live_server(stack_folder: StackFolder) -> None:
    stack_folder.cli("stack", "up")
    printed = stack_folder.cli("stack", "env").stdout.strip().splitlines()
    assert all(line.startswith("export ") for line in printed)
    env = stack_folder.shell_env()
    assert EXPECTED_NAMES <= env.keys()
    ports = stack_folder.ports
    assert env["DATAVAULT_ENV"] == "local"
    assert env["DATAVAULT_PG_DSN"] == f"postgresql://postgres@127.0.0.1:{ports['postgres']}/datavault"
    assert env["DAGSTER_HOME"] == str(stack_folder.path / ".datavault" / "dagster_home")
    assert env["DATAVAULT_STAGE_URI"] == f"s3://{STAGE_BUCKET}/analytics"
    assert env["SNOWFLAKE_PORT"] == str(ports["snowflake"])

    with psycopg.connect(env["DATAVAULT_PG_DSN"], connect_timeout=5) as conn:
        assert conn.execute("select count(*) from public.records").fetchone() is not None

    s3 = boto3.client(
        "s3",
        endpoint_url=env["DATAVAULT_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    s3.head_bucket(Bucket=STAGE_BUCKET)

    with _snowflake_from_env(env) as conn:
        assert conn.cursor().execute("select 41 + 1").fetchone() == (42,)

    # dagster.yaml + DAGSTER_PG_URL give an instance whose storage is the stack's PostgreSQL.
    probe = (
        "from dagster import DagsterInstance; i = DagsterInstance.get(); print(type(i.run_storage).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=stack_folder.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "PostgresRunStorage"


def test_data_survives_down_and_up(stack_folder: StackFolder) -> None:
    stack_folder.cli("stack", "up")
    env = stack_folder.shell_env()
    marker = uuid.uuid4()
    with psycopg.connect(env["DATAVAULT_PG_DSN"]) as conn:
        conn.execute(
            "insert into records (id, owner_id, key, ciphertext, nonce) values (%s, 1, 'k', %s, %s)",
            (marker, b"\x00\x01", b"\x02" * 12),
        )
    with _snowflake_from_env(env) as conn:
        conn.cursor().execute("create or replace table survivors (id varchar, payload binary)")
        conn.cursor().execute("insert into survivors values (%s, to_binary('00ff', 'HEX'))", (str(marker),))

    stack_folder.cli("stack", "down")
    stack_folder.cli("stack", "up")

    with psycopg.connect(env["DATAVAULT_PG_DSN"]) as conn:
        assert conn.execute("select key from records where id = %s", (marker,)).fetchone() == ("k",)
    with _snowflake_from_env(env) as conn:
        rows = conn.cursor().execute("select id, payload from survivors").fetchall()
    assert [(row[0], bytes(row[1])) for row in rows] == [(str(marker), b"\x00\xff")]
    # moto is in memory only: the bucket is there again because `up` recreated it.
    boto3.client(
        "s3",
        endpoint_url=env["DATAVAULT_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    ).head_bucket(Bucket=STAGE_BUCKET)


def test_down_leaves_no_process_running_and_is_idempotent(stack_folder: StackFolder) -> None:
    stack_folder.cli("stack", "up")
    pids = stack_folder.pids()
    postgres_children = _children_of(pids["postgres"])
    assert postgres_children, "PostgreSQL runs background processes under its postmaster"

    stack_folder.cli("stack", "down")
    for part in PARTS:
        assert not pid_is_alive(pids[part.name]), part.name
        assert not port_answers(stack_folder.ports[part.name]), part.name
    assert not any(pid_is_alive(pid) for pid in postgres_children)
    status = stack_folder.cli("stack", "status").stdout
    assert status.count("stopped") == 3 and "running" not in status

    again = stack_folder.cli("stack", "down")
    assert again.stdout.count("stopped") == 3


def test_up_fails_in_one_line_when_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = dict(zip(("postgres", "snowflake"), _distinct_free_ports(2), strict=True), s3=port)
        folder = StackFolder(tmp_path, _environ_with_ports(ports), ports)
        result = folder.cli("stack", "up", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(port) in result.stderr and "DATAVAULT_STACK_S3_PORT" in result.stderr
    folder.cli("stack", "down")


def _snowflake_from_env(env: dict[str, str]) -> snowflake.connector.SnowflakeConnection:
    return snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"],
        user=env["SNOWFLAKE_USER"],
        password=env["SNOWFLAKE_PASSWORD"],
        role=env["SNOWFLAKE_ROLE"],
        warehouse=env["SNOWFLAKE_WAREHOUSE"],
        database=env["SNOWFLAKE_DATABASE"],
        schema=env["SNOWFLAKE_SCHEMA"],
        host=env["SNOWFLAKE_HOST"],
        port=int(env["SNOWFLAKE_PORT"]),
        protocol=env["SNOWFLAKE_PROTOCOL"],
        network_timeout=15,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    )


def _children_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []
