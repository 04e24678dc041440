"""The shipped Dagster instances load and work: production (deploy/dagster.yaml) and the local stack's."""

import shutil
import uuid
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from datavault_analytics_tests.dagster_processes import production_instance_variables

REPO = Path(__file__).resolve().parents[2]
PROD_YAML = REPO / "deploy" / "dagster.yaml"
LOCAL_YAML = REPO / "datavault_analytics" / "local_stack" / "dagster.yaml"


@dg.op
def say_hello(context: dg.OpExecutionContext) -> None:
    print("hello from a run step")  # noqa: T201 - the compute log under test
    context.log.info("logged")


@dg.job
def hello_job():
    say_hello()


def instance_from(yaml: Path, tmp_path: Path) -> dg.DagsterInstance:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(yaml, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def assert_limits(
    instance: dg.DagsterInstance, *, pool_limit: int, max_runs: int, backfill_runs: int
) -> None:
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == pool_limit
    assert concurrency.pool_config.pool_granularity.value == "op"
    assert concurrency.run_queue_config.max_concurrent_runs == max_runs
    assert concurrency.run_queue_config.tag_concurrency_limits == [
        {"key": "dagster/backfill", "limit": backfill_runs}
    ]
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    # A run dequeued while the code server is down is queued again, not failed (the soak found runs lost so).
    assert concurrency.run_queue_config.max_user_code_failure_retries >= 5
    # A killed run's pool slots are given back after it ends; unset or 0, they stay claimed for ever.
    assert instance.run_monitoring_settings.get("free_slots_after_run_end_seconds", 0) > 0
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert instance.freshness_enabled
    assert {"SCHEDULER", "QUEUED_RUN_COORDINATOR", "MONITORING", "FRESHNESS_DAEMON"} <= set(
        instance.get_required_daemon_types()
    )


def test_the_production_instance_loads_stores_runs_in_postgres_and_compute_logs_in_s3(
    pg_server, s3_endpoint, tmp_path, monkeypatch
):
    variables = production_instance_variables(pg_server, s3_endpoint)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    bucket = variables["DAGSTER_COMPUTE_LOGS_BUCKET"]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    instance = instance_from(PROD_YAML, tmp_path)

    try:
        assert_limits(instance, pool_limit=4, max_runs=10, backfill_runs=4)
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        assert instance.run_retries_max_retries == 2
        result = dg.execute_job(dg.reconstructable(hello_job), instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id) is not None
        logs = s3.list_objects_v2(Bucket=bucket, Prefix="dagster/compute-logs/").get("Contents", [])
        stdout = [o["Key"] for o in logs if o["Key"].endswith(".out")]
        assert stdout, [o["Key"] for o in logs]
        body = s3.get_object(Bucket=bucket, Key=stdout[0])["Body"].read().decode()
        assert "hello from a run step" in body
    finally:
        instance.dispose()


def test_the_local_stack_instance_loads_with_the_same_switches_and_smaller_limits(
    pg_server, tmp_path, monkeypatch
):
    database = f"dagster_local_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(database)
    monkeypatch.setenv(
        "DAGSTER_PG_URL", pg_server.dsn(database).replace("postgresql://", "postgresql+psycopg2://")
    )

    instance = instance_from(LOCAL_YAML, tmp_path)

    try:
        assert_limits(instance, pool_limit=2, max_runs=4, backfill_runs=2)
        assert instance.get_runs() == []
        # One machine: the launcher that sees a dead run worker, and the runtime limit as a last resort.
        assert type(instance.run_launcher).__name__ == "LocalRunLauncher"
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_max_runtime_seconds > 0
    finally:
        instance.dispose()


@pytest.mark.parametrize("yaml", [PROD_YAML, LOCAL_YAML], ids=["prod", "local"])
def test_no_secret_is_written_in_an_instance_file(yaml):
    text = yaml.read_text()
    assert "password:\n        env: DAGSTER_PG_PASSWORD" in text or "password" not in text
