"""The Dockerfile and the Helm values agree with the code location and with deploy/dagster.yaml."""

import json
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
VALUES = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
INSTANCE = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
MODULE = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]


def dockerfile_instruction(name: str) -> list[str]:
    return [
        line.split(None, 1)[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{name} ")
    ]


def dockerfile_cmd() -> list[str]:
    [cmd] = dockerfile_instruction("CMD")
    return json.loads(cmd)


def dockerfile_port() -> int:
    [port] = dockerfile_instruction("EXPOSE")
    return int(port)


def code_location() -> dict:
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    return deployment


def test_one_code_location_module_everywhere():
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    assert MODULE == "datavault_analytics.definitions"
    assert workspace["load_from"][0]["python_module"]["module_name"] == MODULE
    cmd = dockerfile_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"] and cmd[cmd.index("-m") + 1] == MODULE
    args = code_location()["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == MODULE


def test_the_code_server_listens_on_the_exposed_port_and_the_chart_dials_it():
    cmd = dockerfile_cmd()
    assert cmd[cmd.index("-h") + 1] == "0.0.0.0"
    assert int(cmd[cmd.index("-p") + 1]) == dockerfile_port() == code_location()["port"]


def test_the_image_installs_the_package_and_what_run_pods_need():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)  # pyproject: requires-python >= 3.11
    assert "COPY datavault_analytics ./datavault_analytics" in text and "pip install ." in text
    assert "dagster-k8s" in text  # the chart's instance names the K8s run launcher
    assert "USER dagster" in text


def test_runs_fan_out_as_kubernetes_jobs_with_several_days_each():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert code_location()["includeConfigInLaunchedRuns"]["enabled"] is True
    env = {e["name"]: e["value"] for e in code_location()["env"]}
    assert env["DATAVAULT_ENV"] == "prod"
    assert int(env["DATAVAULT_BACKFILL_DAYS_PER_RUN"]) > 1


def test_the_chart_instance_matches_the_production_dagster_yaml():
    concurrency = VALUES["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"]["defaultLimit"] == INSTANCE["concurrency"]["pools"]["default_limit"]
    assert concurrency["pools"]["granularity"] == INSTANCE["concurrency"]["pools"]["granularity"]
    assert concurrency["runs"]["maxConcurrentRuns"] == INSTANCE["concurrency"]["runs"]["max_concurrent_runs"]
    assert (
        concurrency["runs"]["tagConcurrencyLimits"]
        == INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    # The chart refuses run limits in both places; they live under `concurrency` only.
    queued = VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert VALUES["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert "maxConcurrentRuns" not in queued and "tagConcurrencyLimits" not in queued
    monitoring, retries = VALUES["dagsterDaemon"]["runMonitoring"], VALUES["dagsterDaemon"]["runRetries"]
    assert monitoring["enabled"] and INSTANCE["run_monitoring"]["enabled"]
    assert monitoring["startTimeoutSeconds"] == INSTANCE["run_monitoring"]["start_timeout_seconds"]
    assert retries["maxRetries"] == INSTANCE["run_retries"]["max_retries"]
    assert (
        retries["retryOnAssetOrOpFailure"] is INSTANCE["run_retries"]["retry_on_asset_or_op_failure"] is False
    )
    assert VALUES["computeLogManager"]["type"] == "S3ComputeLogManager" == INSTANCE["compute_logs"]["class"]
    assert (
        VALUES["computeLogManager"]["config"]["s3ComputeLogManager"]["prefix"]
        == (INSTANCE["compute_logs"]["config"]["prefix"])
    )
    assert VALUES["additionalInstanceConfig"]["freshness"] == INSTANCE["freshness"] == {"enabled": True}
    assert (
        VALUES["postgresql"]["postgresqlScheme"] == INSTANCE["storage"]["postgres"]["postgres_db"]["scheme"]
    )


def test_secrets_come_from_kubernetes_secrets_never_from_values():
    text = (REPO / "deploy" / "helm" / "values.yaml").read_text()
    env = {e["name"] for e in code_location()["env"]}
    assert not env & {
        "DATAVAULT_PG_DSN",
        "SNOWFLAKE_PASSWORD",
        "SNOWFLAKE_PRIVATE_KEY",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert code_location()["envSecrets"] == [{"name": "datavault-analytics-secrets"}]
    assert "postgresqlPassword" not in text and VALUES["generatePostgresqlPasswordSecret"] is False


# The chart version the values are written for, and what it accepts under `dagsterDaemon`, from reading the
# chart's schema (helm/dagster/schema/.../subschema/daemon.py) and its default values at that version.
CHART_VERSION = "1.13.27"
CHART_DAEMON_KEYS = {
    "enabled",
    "image",
    "runCoordinator",
    "heartbeatTolerance",
    "env",
    "envConfigMaps",
    "envSecrets",
    "deploymentLabels",
    "labels",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "annotations",
    "runMonitoring",
    "runRetries",
    "sensors",
    "schedules",
    "schedulerName",
    "volumeMounts",
    "volumes",
}
CHART_NESTED_DAEMON_KEYS = {
    "runCoordinator": {"enabled", "type", "config"},
    "runCoordinator.config": {"queuedRunCoordinator", "customRunCoordinator"},
    "runCoordinator.config.queuedRunCoordinator": {
        "maxConcurrentRuns",
        "tagConcurrencyLimits",
        "dequeueIntervalSeconds",
        "dequeueNumWorkers",
        "dequeueUseThreads",
        "blockOpConcurrencyLimitedRuns",
    },
    "runMonitoring": {
        "enabled",
        "startTimeoutSeconds",
        "cancelTimeoutSeconds",
        "maxRuntimeSeconds",
        "pollIntervalSeconds",
        "maxResumeRunAttempts",
        "freeSlotsAfterRunEndSeconds",
    },
    "runRetries": {"enabled", "maxRetries", "retryOnAssetOrOpFailure"},
}


def test_every_daemon_key_the_values_set_exists_in_the_pinned_chart():
    daemon = VALUES["dagsterDaemon"]
    assert set(daemon) <= CHART_DAEMON_KEYS, set(daemon) - CHART_DAEMON_KEYS
    for path, known in CHART_NESTED_DAEMON_KEYS.items():
        section = daemon
        for part in path.split("."):
            section = section.get(part, {})
        assert set(section) <= known, (path, set(section) - known)


def test_the_chart_version_is_pinned_where_a_user_installs_it():
    values_text = (REPO / "deploy" / "helm" / "values.yaml").read_text()
    readme = (REPO / "docs" / "deploying.md").read_text()
    dagster_pin = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"][0]
    assert (
        f">={CHART_VERSION}," in dagster_pin
    )  # the chart is Dagster's release: the same version as the image
    install = f"helm upgrade --install dagster dagster/dagster --version {CHART_VERSION}"
    assert install in values_text and install in readme
    assert "--skip-schema-validation" in values_text and "--skip-schema-validation" in readme


def test_run_pods_get_the_service_account_that_carries_the_aws_role():
    """With includeConfigInLaunchedRuns, run pods use the user-deployments subchart's own service account
    (not the main chart's): that is the one that must carry the IRSA role for the stage."""
    assert code_location()["includeConfigInLaunchedRuns"]["enabled"] is True
    assert not (VALUES.get("global") or {}).get("serviceAccountName")  # else one shared account is used
    assert "serviceAccount" not in code_location()  # no per-deployment account overrides the subchart's
    account = VALUES["dagster-user-deployments"]["serviceAccount"]
    assert account["create"] is True
    assert account["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert account["annotations"] != VALUES["serviceAccount"]["annotations"]  # the UI's role is another


def test_retention_and_run_monitoring_agree_with_the_production_dagster_yaml():
    retention = VALUES["retention"]
    assert retention["enabled"] is True  # the chart's default is off
    assert retention["schedule"]["purgeAfterDays"] == INSTANCE["retention"]["schedule"]["purge_after_days"]
    assert retention["sensor"]["purgeAfterDays"] == INSTANCE["retention"]["sensor"]["purge_after_days"]
    assert set(retention["sensor"]["purgeAfterDays"]) == {"skipped", "success", "failure", "started"}
    monitoring = VALUES["dagsterDaemon"]["runMonitoring"]
    camel = {
        "startTimeoutSeconds": "start_timeout_seconds",
        "cancelTimeoutSeconds": "cancel_timeout_seconds",
        "pollIntervalSeconds": "poll_interval_seconds",
        "maxRuntimeSeconds": "max_runtime_seconds",
        "maxResumeRunAttempts": "max_resume_run_attempts",
        "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
    }
    assert {k: monitoring[k] for k in camel} == {k: INSTANCE["run_monitoring"][v] for k, v in camel.items()}
    # One pod per run (the in-process executor): there is nothing to resume, so neither file resumes.
    assert monitoring["maxResumeRunAttempts"] == 0
    definitions = (REPO / "datavault_analytics" / "definitions.py").read_text()
    assert "executor=dg.in_process_executor" in definitions
