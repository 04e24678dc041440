"""The code location loads in each environment, as `dagster dev` and the daemon would load it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datavault_analytics.settings import REQUIRED_VARIABLES

REPO = Path(__file__).resolve().parents[1]

# Prints the asset graph as the UI would show it; run in a fresh interpreter so each environment is
# decided at import, exactly as in `dagster dev`.
PROBE = """
import json, os, warnings
warnings.simplefilter("always")
environ_before = dict(os.environ)
with warnings.catch_warnings(record=True) as caught:
    from datavault_analytics.definitions import defs
    graph = defs.resolve_asset_graph()
    defs.get_repository_def().get_all_jobs()
print(json.dumps({
    "deprecations": [
        {"category": w.category.__name__, "file": w.filename, "message": str(w.message)}
        for w in caught if issubclass(w.category, DeprecationWarning)
    ],
    "dagster_notices": [str(w.message) for w in caught if "Beta" in w.category.__name__ or "Preview" in w.category.__name__],
    "assets": {
        node.key.to_user_string(): {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "kinds": sorted(node.kinds),
            "group": node.group_name,
            "partitioned": node.partitions_def is not None,
        }
        for node in graph.asset_nodes
    },
    "resources": sorted(defs.resources),
    "jobs": sorted(j.name for j in defs.jobs),
    "automation": {
        d.name: str(d.default_status.value) for d in [*defs.schedules, *defs.sensors]
    },
    # polars sets its allocator's variable on import; ours would be DATAVAULT_*, SNOWFLAKE_*, AWS_*, DAGSTER_*.
    "environ_changed": sorted(k for k in {*environ_before, *os.environ} if environ_before.get(k) != os.environ.get(k)
                              and k.startswith(("DATAVAULT_", "SNOWFLAKE_", "AWS_", "DAGSTER_"))),
}))
"""

PROD_DUMMIES = {
    # Unroutable or closed addresses: loading must open no connection, so nothing may notice.
    "DATAVAULT_ENV": "prod",
    "DATAVAULT_PG_DSN": "postgresql://reader:dummy-pg-password@203.0.113.1:5432/datavault",
    "DATAVAULT_STAGE_URI": "s3://dummy-bucket/analytics",
    "SNOWFLAKE_ACCOUNT": "dummy-account",
    "SNOWFLAKE_USER": "loader",
    "SNOWFLAKE_PASSWORD": "dummy-sf-password",
    "SNOWFLAKE_ROLE": "LOADER",
    "SNOWFLAKE_WAREHOUSE": "WH",
    "SNOWFLAKE_DATABASE": "DATAVAULT",
    "SNOWFLAKE_SCHEMA": "RAW",
}


def load(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "SNOWFLAKE_", "DAGSTER_"))
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_loads_the_pipeline(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    # The deprecations allowed are upstream pydantic ones: dagster-snowflake's own Field(is_required=...),
    # raised while that library is imported, and Dagster's component loader's parse_obj_as, raised while it
    # reads a defs.yaml. Anything from Dagster APIs we call, or our code, fails here.
    upstream = ("dagster_snowflake/resources.py", "dagster/_utils/pydantic_yaml.py")
    unexpected = [
        w
        for w in loaded["deprecations"]
        if not (w["category"] == "PydanticDeprecatedSince20" and w["file"].endswith(upstream))
    ]
    assert unexpected == []
    # Dagster's beta and preview notices are silenced where the package loads, not printed by every process.
    assert loaded["dagster_notices"] == []
    assets = loaded["assets"]
    assert assets["postgres/datavault/records"]["kinds"] == ["postgres"]
    assert assets["s3/datavault/records"] == {
        "deps": ["postgres/datavault/records"],
        "kinds": ["parquet", "s3"],
        "group": "datavault",
        "partitioned": True,
    }
    assert assets["snowflake/datavault/records"]["deps"] == ["s3/datavault/records"]
    assert assets["snowflake/datavault/records"]["kinds"] == ["snowflake"]
    assert set(loaded["resources"]) == {
        "postgres",
        "partition_locks",
        "s3",
        "s3_stage",
        "snowflake",
        "postgres_io_manager",
        "s3_stage_io_manager",
        "stage_retention",
        "snowflake_loader",
        "alert_webhook",
    }
    assert loaded["environ_changed"] == []  # the settings are read, never written
    assert "datavault_records_daily" in loaded["jobs"]
    return loaded


def test_local_loads_with_no_variables_set(tmp_path):
    loaded = assert_loads_the_pipeline(load({}, cwd=tmp_path))
    # Locally the daemon starts nothing on its own: the schedule and the drift sensor are started by hand.
    assert loaded["automation"] == {
        "datavault_alerts": "STOPPED",
        "datavault_records_daily_schedule": "STOPPED",
        "datavault_records_drift_sensor": "STOPPED",
        "datavault_retrieval_log_daily_schedule": "STOPPED",
        "datavault_retrieval_log_drift_sensor": "STOPPED",
    }


def test_prod_loads_with_dummy_variables_and_opens_no_connection(tmp_path):
    loaded = assert_loads_the_pipeline(load(PROD_DUMMIES, cwd=tmp_path))
    assert loaded["automation"] == {
        "datavault_alerts": "RUNNING",
        "datavault_records_daily_schedule": "RUNNING",
        "datavault_records_drift_sensor": "RUNNING",
        "datavault_retrieval_log_daily_schedule": "RUNNING",
        "datavault_retrieval_log_drift_sensor": "RUNNING",
    }


@pytest.mark.parametrize("missing", ["DATAVAULT_PG_DSN", "SNOWFLAKE_ACCOUNT", "SNOWFLAKE_PASSWORD"])
def test_prod_names_every_missing_variable(tmp_path, missing):
    result = load({k: v for k, v in PROD_DUMMIES.items() if k != missing}, cwd=tmp_path)

    assert result.returncode != 0
    assert missing in result.stderr and "DATAVAULT_ENV=prod needs" in result.stderr
    for name, value in PROD_DUMMIES.items():
        if "password" in name.lower() or "DSN" in name:
            assert value not in result.stderr


def test_an_unknown_environment_is_refused(tmp_path):
    result = load({"DATAVAULT_ENV": "staging"}, cwd=tmp_path)
    assert result.returncode != 0 and "DATAVAULT_ENV='staging' is not one of local, prod" in result.stderr


def test_required_variables_are_documented_in_the_configuration_page():
    readme = (REPO / "docs" / "configuration.md").read_text()
    for name in (
        *REQUIRED_VARIABLES,
        "SNOWFLAKE_PASSWORD",
        "DATAVAULT_S3_ENDPOINT_URL",
        "SNOWFLAKE_HOST",
        "SNOWFLAKE_PORT",
        "SNOWFLAKE_PROTOCOL",
        "AWS_ACCESS_KEY_ID",
        "DAGSTER_HOME",
        "DATAVAULT_ENV",
    ):
        assert f"`{name}`" in readme, f"{name} is not documented in docs/configuration.md"


def test_every_variable_the_settings_read_is_documented_in_the_configuration_page():
    import re

    readme = (REPO / "docs" / "configuration.md").read_text()
    from datavault_analytics.settings import Settings

    records = (REPO / "datavault_analytics" / "defs" / "records" / "defs.yaml").read_text()
    read = {field.validation_alias for field in Settings.model_fields.values()}
    read |= set(re.findall(r"env\.((?:DATAVAULT)_[A-Z0-9_]+)", records))
    assert {"DATAVAULT_DRIFT_SCAN_SECONDS", "DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS"} <= read
    assert sorted(name for name in read if f"`{name}`" not in readme) == []


def test_dagster_loads_the_workspace_as_dagster_dev_does(tmp_path):
    dagster = Path(sys.executable).with_name("dagster")
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "SNOWFLAKE_", "DAGSTER_"))
    }
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        env={**clean, **PROD_DUMMIES},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation successful for code location datavault_analytics" in result.stderr + result.stdout
