"""`local_environment()`: the mapping the pipeline's environment.py applies when DATAVAULT_ENV is local."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from datavault_analytics.local_stack import local_environment
from datavault_analytics.local_stack.stack import StackPaths, write_state

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_without_a_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATAVAULT_STACK_PG_PORT", "DATAVAULT_STACK_S3_PORT", "DATAVAULT_STACK_SNOWFLAKE_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert local_environment(tmp_path) == {
        "DATAVAULT_ENV": "local",
        "DATAVAULT_PG_DSN": "postgresql://postgres@127.0.0.1:55432/datavault",
        "DAGSTER_PG_URL": "postgresql+psycopg2://postgres@127.0.0.1:55432/dagster",
        "DAGSTER_HOME": str(tmp_path / ".datavault" / "dagster_home"),
        "DATAVAULT_STAGE_URI": "s3://datavault-stage/analytics",
        "DATAVAULT_S3_ENDPOINT_URL": "http://127.0.0.1:55433",
        "AWS_ACCESS_KEY_ID": "local-access-key",
        "AWS_SECRET_ACCESS_KEY": "local-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SNOWFLAKE_ACCOUNT": "fakesnow",
        "SNOWFLAKE_USER": "datavault",
        "SNOWFLAKE_PASSWORD": "local-password",
        "SNOWFLAKE_ROLE": "DATAVAULT_LOADER",
        "SNOWFLAKE_WAREHOUSE": "ANALYTICS_WH",
        "SNOWFLAKE_DATABASE": "DATAVAULT",
        "SNOWFLAKE_SCHEMA": "RAW",
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": "55434",
        "SNOWFLAKE_PROTOCOL": "http",
    }
    assert not (tmp_path / ".datavault").exists(), "no side effects"


def test_port_overrides_apply_while_the_stack_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAVAULT_STACK_PG_PORT", "6001")
    monkeypatch.setenv("DATAVAULT_STACK_S3_PORT", "6002")
    monkeypatch.setenv("DATAVAULT_STACK_SNOWFLAKE_PORT", "6003")
    # Recorded, but the process is gone: the overrides win.
    write_state(StackPaths.at(tmp_path), {"postgres": {"pid": None, "port": 7001}})
    env = local_environment(tmp_path)
    assert env["DATAVAULT_PG_DSN"] == "postgresql://postgres@127.0.0.1:6001/datavault"
    assert env["DATAVAULT_S3_ENDPOINT_URL"] == "http://127.0.0.1:6002"
    assert env["SNOWFLAKE_PORT"] == "6003"


def test_recorded_ports_apply_while_their_process_is_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAVAULT_STACK_PG_PORT", "6001")
    alive = os.getpid()
    write_state(
        StackPaths.at(tmp_path),
        {"postgres": {"pid": alive, "port": 7001}, "s3": {"pid": alive, "port": 7002}},
    )
    env = local_environment(tmp_path)
    assert env["DAGSTER_PG_URL"] == "postgresql+psycopg2://postgres@127.0.0.1:7001/dagster"
    assert env["DATAVAULT_S3_ENDPOINT_URL"] == "http://127.0.0.1:7002"


def test_a_damaged_state_file_falls_back_to_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATAVAULT_STACK_SNOWFLAKE_PORT", raising=False)
    (tmp_path / ".datavault").mkdir()
    (tmp_path / ".datavault" / "stack.json").write_text("{not json")
    assert local_environment(tmp_path)["SNOWFLAKE_PORT"] == "55434"
    (tmp_path / ".datavault" / "stack.json").write_text(json.dumps({"s3": {"pid": "x", "port": "y"}}))
    assert local_environment(tmp_path)["DATAVAULT_S3_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def test_stack_env_prints_shell_quoted_exports_of_exactly_that_mapping(tmp_path: Path) -> None:
    folder = tmp_path / "it's a folder"  # a quote in the path must survive eval
    folder.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_STACK_")}
    environ["PYTHONPATH"] = str(REPO_ROOT)
    printed = subprocess.run(
        [sys.executable, "-m", "datavault_analytics.cli", "stack", "env"],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    exported = {}
    for line in printed.splitlines():
        keyword, assignment = shlex.split(line)
        assert keyword == "export"
        name, value = assignment.split("=", 1)
        exported[name] = value
    assert exported == local_environment(folder)


def test_the_partitions_start_at_the_first_day_seeded_into_the_stack(pg_server, tmp_path: Path) -> None:
    """`seed` into the stack records its first day; the stack's environment starts the tables there, so
    the UI does not list every day since 2024-01-01 as missing. A later, shorter seed keeps the start."""
    from datetime import UTC, datetime, timedelta

    from datavault_analytics.local_stack.stack import SOURCE_DATABASE

    pg_server.create_database(SOURCE_DATABASE)
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DAGSTER_", "SNOWFLAKE_"))
    }
    environ |= {"PYTHONPATH": str(REPO_ROOT), "DATAVAULT_STACK_PG_PORT": str(pg_server.port)}
    assert "DATAVAULT_START_DATE" not in local_environment(tmp_path)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for days in (3, 1):
        seeded = subprocess.run(
            [
                sys.executable,
                "-m",
                "datavault_analytics.cli",
                "seed",
                "--days",
                str(days),
                "--rows-per-day",
                "5",
            ],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert seeded.returncode == 0, seeded.stderr
        assert local_environment(tmp_path)["DATAVAULT_START_DATE"] == str(yesterday - timedelta(days=2))
