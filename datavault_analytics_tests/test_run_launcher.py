"""A run whose worker is SIGKILLed, seen by the real daemon: the local instance's run launcher
(run_launcher.py) tells run monitoring the worker is gone, the run is marked failed, its pool slot is
given back, and the drift sensor stops counting its days as being loaded.

Without it (Dagster's DefaultRunLauncher), such a run stayed STARTED for ever: the drift sensor reported
its day as "already being loaded" on every scan and never repaired it, and its pool slot stayed claimed.
"""

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from datavault_analytics.drift.plan import days_in_flight
from datavault_analytics.run_launcher import LocalRunLauncher, RunWorker, run_worker
from datavault_analytics_tests.dagster_processes import (
    BIN,
    daemon_command,
    instance_in_postgres,
    production_instance_variables,
    serve_code_location,
    start,
    stop,
    wait_for,
)
from datavault_analytics_tests.pipeline_harness import Pipeline
from datavault_analytics_tests.test_faults.faultkit import HttpProxy

DAY = (date.today() - timedelta(days=20)).isoformat()
POOL = "datavault_postgres"


def test_a_process_that_is_gone_or_was_replaced_is_not_the_worker():
    me = RunWorker(os.getpid(), recorded_at=9e12)
    assert me.is_alive()
    assert not RunWorker(os.getpid(), recorded_at=0).is_alive()  # this process started after: a reused pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not RunWorker(child.pid, recorded_at=9e12).is_alive()


def vm_instance(pg_server, s3_endpoint, home: Path) -> dict[str, str]:
    """The production instance without Kubernetes (deploy/dagster.yaml) in `home`: its variables."""
    home.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return {"DAGSTER_HOME": str(home), **production_instance_variables(pg_server, s3_endpoint)}


@pytest.fixture(params=["local stack", "VM"])
def monitored(request, pg_server, s3_endpoint, snowflake_server, tmp_path, monkeypatch):
    """A pipeline on an instance in PostgreSQL made from the local stack's dagster.yaml, or from the
    production one without Kubernetes (deploy/dagster.yaml), run monitoring every 2 s and slots freed 1 s
    after a run ends, with the code server and the daemon running."""
    processes: list[subprocess.Popen] = []
    pipeline = Pipeline(pg_server, s3_endpoint, snowflake_server, monkeypatch)
    pipeline.seed([date.fromisoformat(DAY)], rows_per_day=200)
    instance_variables = (
        instance_in_postgres(pg_server, tmp_path)
        if request.param == "local stack"
        else vm_instance(pg_server, s3_endpoint, tmp_path / "dagster_home")
    )
    for name, value in {
        **instance_variables,
        "DATAVAULT_ENV": "local",  # no schedule or sensor: the only run is the one killed here
        "PYTHONUNBUFFERED": "1",
    }.items():
        monkeypatch.setenv(name, value)
    config_path = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["run_launcher"]["class"] == LocalRunLauncher.__name__  # the shipped file uses it
    config["run_monitoring"].update(poll_interval_seconds=2, free_slots_after_run_end_seconds=1)
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    logs = [tmp_path / "code-server.log", tmp_path / "daemon.log"]
    # named as the project names it (workspace.yaml, [tool.dg.project]): a `dg launch` run's origin, which run
    # retries look up in the daemon's workspace
    processes.append(serve_code_location(tmp_path, env, logs[0], "datavault_analytics"))
    processes.append(start(daemon_command(), logs[1], env, tmp_path))
    instance = dg.DagsterInstance.get()
    try:
        yield pipeline, instance, env, logs, request.param
    finally:
        for process in reversed(processes):
            stop(process)
        instance.dispose()


def test_a_killed_dg_launch_run_is_marked_failed_and_gives_back_its_pool_slot(
    monitored, tmp_path, s3_endpoint
):
    pipeline, instance, env, logs, _ = monitored
    with HttpProxy(s3_endpoint) as s3:
        # The stage step holds its pool slot while it writes; the run stops at its first write to S3.
        gate = s3.hold(lambda r: r.method in ("PUT", "POST") and f"dt={DAY}/" in r.target)
        launched = subprocess.Popen(
            [
                str(BIN / "dg"),
                "launch",
                "--assets",
                "s3/datavault/records,snowflake/datavault/records",
                "--partition",
                DAY,
            ],
            env={**env, "DATAVAULT_S3_ENDPOINT_URL": s3.url},
            cwd=Path(__file__).resolve().parents[1],
            stdout=(tmp_path / "dg-launch.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(gate.arrived.is_set, "the stage step's first write", 120, [tmp_path / "dg-launch.log"])
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        assert run_worker(instance, run.run_id).pid == launched.pid  # the in-process run's worker is dg
        assert instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
        assert DAY in days_in_flight(instance, [dg.AssetKey(["s3", "datavault", "records"])])
        launched.kill()
        launched.wait()
        gate.release(forward=False)

    def failed():
        return instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE

    wait_for(failed, "run monitoring to mark the killed run failed", 120, logs)
    messages = [
        e.dagster_event.message
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.is_run_failure
    ]
    assert any(f"run worker pid {launched.pid}" in m and "no longer running" in m for m in messages), messages
    wait_for(
        lambda: not instance.event_log_storage.get_concurrency_info(POOL).claimed_slots,
        "the killed run's pool slot to be freed",
        120,
        logs,
    )
    assert DAY not in days_in_flight(instance, [dg.AssetKey(["s3", "datavault", "records"])])

    # Not asserted: run retries starting it again. Both instance files enable them, and the daemon tags the
    # run will_retry=true, but a retry run came in one of eight runs of this test (one of four with the VM
    # file, none with the local one; also with the run-retry consumer's cursor set before the kill), with no
    # engine event saying why. Open in issue 35.
