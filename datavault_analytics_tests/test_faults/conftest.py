"""Fixtures for the fault tests: a pipeline whose day was loaded once and has changed since, and runs in
processes of their own that a test can kill."""

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from datavault_analytics.postgres.locks import lock_key
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics_tests.test_faults.faultkit import HttpProxy, RunProcess, dagster_home

DAY = "2026-11-01"
DAY_DATE = date(2026, 11, 1)
LOCK_WAIT_SECONDS = "60"  # a step waits this long for another run of the day; far more than any test needs


@pytest.fixture
def fault_pipeline(pipeline, monkeypatch):
    """The test's pipeline, with a bounded wait for partition locks (a leaked lock fails fast, never hangs)."""
    monkeypatch.setenv("DATAVAULT_LOCK_WAIT_SECONDS", LOCK_WAIT_SECONDS)
    pipeline.env["DATAVAULT_LOCK_WAIT_SECONDS"] = LOCK_WAIT_SECONDS
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    return pipeline


def change_the_day(pipeline, day: str = DAY) -> None:
    """Version B of the day in PostgreSQL: rows deleted, payloads changed, rows added, so a half-applied
    load differs from both the old and the new contents."""
    window = DayWindow.for_key(day)
    ids = [
        r[0]
        for r in pipeline.pg(
            "SELECT id::text FROM records WHERE created_at >= %s AND created_at < %s ORDER BY id LIMIT 80",
            (window.start, window.end),
        )
    ]
    pipeline.pg("DELETE FROM records WHERE id::text = ANY(%s)", (ids[:40],))
    pipeline.pg(
        "UPDATE records SET ciphertext = %s || ciphertext, updated_at = now() WHERE id::text = ANY(%s)",
        (b"\x00\xffv2", ids[40:]),
    )
    for i in range(25):
        pipeline.insert(
            str(uuid.uuid4()), window.start + timedelta(minutes=37 * i + 1), b"new row \x00" + bytes([i])
        )


def loaded_then_changed(pipeline, rows_per_day: int) -> list[tuple]:
    """Seed two days, load DAY, change it in PostgreSQL; the Snowflake rows of DAY as loaded (version A)."""
    pipeline.seed([DAY_DATE, DAY_DATE + timedelta(days=1)], rows_per_day=rows_per_day)
    assert pipeline.materialize(DAY).success
    before = pipeline.snowflake_rows(DAY)
    assert len(before) == rows_per_day
    change_the_day(pipeline)
    assert pipeline.source_rows(DAY) != before
    return before


def partition_lock_key(day: str = DAY) -> tuple[int, int]:
    return lock_key("public.records", day)


@pytest.fixture
def start_run(tmp_path: Path):
    """start_run(pipeline, *args, s3=proxy, snowflake=proxy, env={...}) -> RunProcess running
    run_partition.py with the pipeline's environment; `start_run.home` is the runs' DAGSTER_HOME."""
    runs: list[RunProcess] = []
    home = dagster_home(tmp_path / "dagster_home")

    def start(
        pipeline,
        *args: str,
        s3: HttpProxy | None = None,
        snowflake: HttpProxy | None = None,
        env: dict | None = None,
    ) -> RunProcess:
        run_env = {
            **pipeline.env,
            "DAGSTER_HOME": str(home),
            "DATAVAULT_LOCK_WAIT_SECONDS": LOCK_WAIT_SECONDS,
            **(env or {}),
        }
        if s3 is not None:
            run_env["DATAVAULT_S3_ENDPOINT_URL"] = s3.url
        if snowflake is not None:
            run_env["SNOWFLAKE_HOST"], run_env["SNOWFLAKE_PORT"] = "127.0.0.1", str(snowflake.port)
        run = RunProcess(run_env, list(args), tmp_path / f"run-{len(runs)}-{datetime.now(UTC):%H%M%S%f}.log")
        runs.append(run)
        return run

    start.home = home
    yield start
    for run in runs:
        if not run.exited():
            run.kill()
