"""The DataVaultTable component: a table is one defs.yaml, and `records` keeps every name it had.

The loads run the real assets and checks on the session's real servers (PostgreSQL, moto, fakesnow).
"""

import dataclasses
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from datavault_analytics.components import DataVaultTable
from datavault_analytics.components.datavault_table import configured_table, configured_tables
from datavault_analytics.pipeline.assets import build_table_assets
from datavault_analytics.pipeline.checks import build_table_checks
from datavault_analytics.settings import Settings
from datavault_analytics.table.config import DriftConfig, ScheduleConfig
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.table.spec import TableSpec
from datavault_analytics_tests.test_bad_input import failed_without_retry

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = [date(2025, 5, 1) + timedelta(days=i) for i in range(3)]
KEYS = [d.isoformat() for d in DAYS]


def load_with_checks(pipeline, table: TablePipeline, first: str, last: str) -> dg.ExecuteInProcessResult:
    """The table's stage and Snowflake assets and its checks for [first, last], in one run."""
    return dg.materialize(
        [*build_table_assets(table), build_table_checks(table)],
        resources=pipeline.resources,
        selection=dg.AssetSelection.assets(table.stage_key, table.snowflake_key),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        instance=pipeline.instance,
        raise_on_error=False,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {(e.partition, e.check_name): e.passed for e in result.get_asset_check_evaluations()}


@contextmanager
def table_from_yaml(name: str, attributes: dict):
    """(component, definitions) of a DataVaultTable written as `<name>/defs.yaml` into a fresh defs folder."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=DataVaultTable,
            defs_path=name,
            defs_yaml_contents={
                "type": "datavault_analytics.components.DataVaultTable",
                "attributes": attributes,
            },
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as loaded:
            yield loaded


# -- the contract -------------------------------------------------------------------------------


def test_records_keeps_every_name_an_existing_deployment_has():
    records = configured_table("records")
    assert [k.path for k in (records.source_key, records.stage_key, records.snowflake_key)] == [
        ["postgres", "datavault", "records"],
        ["s3", "datavault", "records"],
        ["snowflake", "datavault", "records"],
    ]
    assert (records.job_name, records.schedule_name) == (
        "datavault_records_daily",
        "datavault_records_daily_schedule",
    )
    assert records.checks_name == "snowflake_records_checks"
    assert (
        records.spec.snowflake_table == "RECORDS" and records.spec.name == "records"
    )  # stage: <prefix>/records/
    assert records.spec.updated_at_column == "updated_at" and records.start_date == "2024-01-01"


def test_the_demo_ships_two_tables_whose_names_never_collide():
    assert configured_tables() == ["records", "retrieval_log"]
    from datavault_analytics.definitions import defs

    names = [j.name for j in defs.resolve_all_job_defs()] + [s.name for s in [*defs.schedules, *defs.sensors]]
    assert len(names) == len(set(names))
    log = configured_table("retrieval_log")
    assert log.spec.snowflake_table == "RETRIEVAL_LOG" and log.spec.updated_at_column is None
    assert defs.resolve_assets_def(log.snowflake_key).partitions_def.start.year == 2024


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"partition_column": "created_at", "primary_key": ["id"]}, "table"),  # required, missing
        ({"table": "records", "partition_column": "c", "primary_key": ["id"]}, "schema-qualified"),
        ({"table": "public.t", "partition_column": "c", "primary_key": ["a", "a"]}, "distinct columns"),
        ({"table": "public.t", "partition_column": "c", "primary_key": []}, "one or more"),
        (
            {"table": "public.t", "partition_column": "c", "primary_key": ["id"], "start_date": "2026-13-01"},
            "YYYY-MM-DD",
        ),
        (
            {
                "table": "public.t",
                "partition_column": "c",
                "primary_key": ["id"],
                "drift": {"max_repairs": 0},
            },
            "at least 1",
        ),
        ({"table": "public.t", "partition_column": "c", "primary_key": ["id"], "sheduel": {}}, "sheduel"),
        ({"table": "public.t", "partition_column": "c", "primary_key": "id"}, "primary_key"),
        ({"table": "public.t; drop", "partition_column": "c", "primary_key": ["id"]}, "plain SQL identifier"),
        (
            {"table": "public.t", "partition_column": "c", "primary_key": ["id"], "exclude_columns": ["c"]},
            "partition_column 'c' is in exclude_columns",
        ),
        (
            {
                "table": "public.t",
                "partition_column": "c",
                "primary_key": ["id"],
                "column_types": {"a": "NUMBER(40,2)"},
            },
            "column_types.a: 'NUMBER\\(40,2\\)' is not VARCHAR or NUMBER",
        ),
        (
            {
                "table": "public.t",
                "partition_column": "c",
                "primary_key": ["id"],
                "column_types": {"a": "FLOAT"},
            },
            "is not VARCHAR or NUMBER",
        ),
    ],
)
def test_a_yaml_mistake_is_refused_naming_the_field(attributes, expected):
    with pytest.raises(Exception, match=expected):  # pydantic's ValidationError, or ours for identifiers
        DataVaultTable.resolve_from_dict(attributes).pipeline(Settings.from_environment())


def test_dg_check_defs_names_the_file_and_the_field_of_a_mistake(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(
        REPO / "datavault_analytics",
        project / "datavault_analytics",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(project)}

    def check() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "dg"), "check", "defs"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    ok = check()
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    broken = project / "datavault_analytics" / "defs" / "retrieval_log" / "defs.yaml"
    broken.write_text(
        broken.read_text().replace("partition_column: retrieved_at", "partition_colum: retrieved_at")
    )
    failed = check()
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "retrieval_log/defs.yaml" in output and "partition_colum" in output

    broken.write_text(
        broken.read_text().replace("partition_colum: retrieved_at", "partition_column: retrieved_at")
        + "  column_types:\n    latency_ms: NUMBER(99,0)\n"
    )
    failed = check()
    output = failed.stdout + failed.stderr
    assert (
        failed.returncode != 0
        and "loading component retrieval_log" in output
        and "column_types.latency_ms" in output
    )

    broken.write_text(broken.read_text().replace("latency_ms: NUMBER(99,0)", "latency_ms: VARCHAR"))
    assert check().returncode == 0
    archive = project / "datavault_analytics" / "defs" / "archived_records" / "defs.yaml"
    archive.parent.mkdir()
    archive.write_text(
        "type: datavault_analytics.components.DataVaultTable\nattributes:\n  table: archive.records\n"
        "  partition_column: created_at\n  primary_key: [id]\n  asset_name: archived_records\n"
        "  snowflake_table: RECORDS\n"
    )
    failed = check()
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "both load Snowflake table RECORDS" in output
    assert "archived_records/defs.yaml" in output and "records/defs.yaml" in output


def test_dg_lists_and_scaffolds_the_component(tmp_path):
    listed = subprocess.run(
        [str(BIN / "dg"), "list", "components"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert "datavault_analytics.components.DataVaultTable" in listed.stdout, listed.stderr[-2000:]

    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=DataVaultTable, defs_path="audit_events")
        written = yaml.safe_load((path / "defs.yaml").read_text())
        assert written["type"].startswith("datavault_analytics.components.")
        assert written["type"].endswith(".DataVaultTable")
        assert written["attributes"]["table"] == "public.audit_events"
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, DataVaultTable)
            keys = {
                key.to_user_string()
                for asset in defs.assets
                for key in (asset.keys if isinstance(asset, dg.AssetsDefinition) else [asset.key])
            }
            assert keys == {f"{system}/datavault/audit_events" for system in ("postgres", "s3", "snowflake")}
            assert [j.name for j in defs.jobs] == [
                "datavault_audit_events_daily",
                "datavault_audit_events_drift_scan",
            ]


# -- every table gets the whole pipeline ---------------------------------------------------------


def test_the_retrieval_log_loads_exactly_and_again_without_duplicates(pipeline):
    """A bigint key, jsonb, boolean, nullable text and float columns, no binary and no updated_at."""
    log = configured_table("retrieval_log")
    pipeline.seed(DAYS, rows_per_day=30)
    pipeline.seed_retrievals(DAYS, rows_per_day=60)

    for _ in range(2):  # the second run replaces each day
        result = load_with_checks(pipeline, log, KEYS[0], KEYS[-1])
        assert result.success
        assert check_results(result) == {
            (k, c.name): True for k in KEYS for c in build_table_checks(log).check_specs
        }

    rows = pipeline.snowflake('SELECT COUNT(*), COUNT(DISTINCT "ID") FROM "RETRIEVAL_LOG"')
    assert rows == [(180, 180)]
    assert (
        pipeline.snowflake('SELECT COUNT(*) FROM "RETRIEVAL_LOG" WHERE "ERROR_CODE" IS NULL')[0][0]
        == (pipeline.pg("SELECT count(*) FROM retrieval_log WHERE error_code IS NULL")[0][0])
    )
    days = pipeline.reconcile(KEYS, table=log)
    assert [d.matches for d in days] == [True, True, True] and [d.snowflake_rows for d in days] == [
        60,
        60,
        60,
    ]
    staged = pipeline.s3.list_objects_v2(Bucket=pipeline.bucket, Prefix="analytics/retrieval_log/dt=")
    assert {o["Key"].split("/")[2] for o in staged["Contents"]} == {f"dt={k}" for k in KEYS}


def test_a_table_added_by_yaml_alone_loads_with_its_checks_passing(pipeline):
    """A third shape, from a defs.yaml in a fresh defs folder: integer key, timestamp without time zone,
    smallint, date and text columns."""
    pipeline.pg("CREATE SCHEMA audit")
    pipeline.pg(
        "CREATE TABLE audit.key_rotations (rotation integer PRIMARY KEY, owner_id bigint NOT NULL, "
        "algorithm text, key_version smallint NOT NULL, valid_from date, rotated_at timestamp NOT NULL)"
    )
    pipeline.pg(
        "INSERT INTO audit.key_rotations SELECT n, n * 7, CASE WHEN n % 3 = 0 THEN NULL ELSE 'AES-256-GCM' END, "
        "n % 5, DATE '2025-05-01', TIMESTAMP '2025-05-01 00:00:00' + n * INTERVAL '37 minutes' FROM "
        "generate_series(0, 100) AS n"
    )
    attributes = {
        "table": "audit.key_rotations",
        "partition_column": "rotated_at",
        "primary_key": ["rotation"],
        "start_date": "2025-04-01",
    }
    with table_from_yaml("key_rotations", attributes) as (component, defs):
        table = component.pipeline(Settings.from_environment())
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            resources=pipeline.resources,
            selection=dg.AssetSelection.assets(table.stage_key, table.snowflake_key),
            tags={
                "dagster/asset_partition_range_start": "2025-05-01",
                "dagster/asset_partition_range_end": "2025-05-03",
            },
            instance=pipeline.instance,
        )
    assert result.success and set(check_results(result).values()) == {True}
    assert len(check_results(result)) == 3 * 4
    days = pipeline.reconcile(["2025-05-01", "2025-05-02", "2025-05-03"], table=table)
    assert [d.snowflake_rows for d in days] == [39, 39, 23] and all(d.matches for d in days)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"postgres_table": "retrieval_log", "partition_column": "found", "primary_key": "id"},
            "partition_column='found' of public.retrieval_log is boolean; it must be a timestamptz or timestamp",
        ),
        (
            {"postgres_table": "retrieval_log", "partition_column": "retrieved_at", "primary_key": "log_id"},
            "primary_key='log_id' is not a column of public.retrieval_log",
        ),
        (
            {"postgres_table": "retrieval_logs", "partition_column": "retrieved_at", "primary_key": "id"},
            "Source table public.retrieval_logs does not exist",
        ),
    ],
)
def test_a_table_or_column_postgresql_lacks_fails_the_first_run_before_anything_is_written(
    pipeline, spec, expected
):
    pipeline.seed_retrievals(DAYS[:1], rows_per_day=5)
    log = configured_table("retrieval_log")
    table = dataclasses.replace(
        log,
        spec=TableSpec(
            postgres_schema="public", **spec, snowflake_table="RETRIEVAL_LOG", updated_at_column=None
        ),
    )
    message = failed_without_retry(pipeline.materialize(KEYS[0], raise_on_error=False, table=table))
    assert expected in message
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.bucket).get("KeyCount", 0) == 0
    assert pipeline.snowflake("SHOW TABLES LIKE 'RETRIEVAL_LOG'") == []


def test_one_tables_day_lock_says_nothing_about_anothers(pipeline):
    """The stage and load of retrieval_log's day run while records' same day is locked by another run."""
    log = configured_table("retrieval_log")
    pipeline.seed_retrievals(DAYS[:1], rows_per_day=10)
    # A step that had to wait for the held lock would give up after 5 s and fail the run.
    short = pipeline.resources["partition_locks"].model_copy(update={"wait_seconds": 5})
    pipeline.with_resources(
        partition_locks=short,
        s3_stage_io_manager=pipeline.resources["s3_stage_io_manager"].model_copy(update={"locks": short}),
    )
    with pipeline.configured("partition_locks") as built:
        records_locks = built.partition_locks.for_table(configured_table("records").spec)
        with records_locks.hold(KEYS[0], holder="another run of records") as held:
            assert held is not None
            assert pipeline.materialize(KEYS[0], table=log).success
            # ... and records' own day is still taken: the same table waits.
            with records_locks.try_hold(KEYS[0], holder="probe") as probe:
                assert probe is None
    assert pipeline.reconcile(KEYS[:1], table=log)[0].matches


RETRIEVAL_LOG_CHANGES = {
    "ID": '"ID" + 1000000',
    "RECORD_ID": "REPLACE(\"RECORD_ID\", '-4', '-5')",
    "REQUESTED_BY": "\"REQUESTED_BY\" || 'x'",
    "FOUND": 'NOT "FOUND"',
    "CLIENT": "REPLACE(\"CLIENT\", '10.', '11.')",
    "ERROR_CODE": "COALESCE(\"ERROR_CODE\", 'X')",
    "LATENCY_MS": 'COALESCE("LATENCY_MS", 0) + 0.001',
    "RETRIEVED_AT": 'DATEADD(microsecond, 1, "RETRIEVED_AT")',
}


@pytest.mark.parametrize("column", sorted(RETRIEVAL_LOG_CHANGES))
def test_a_change_in_any_column_of_the_retrieval_log_fails_its_content_check(pipeline, column):
    log = configured_table("retrieval_log")
    pipeline.seed_retrievals(DAYS[:1], rows_per_day=20)
    assert load_with_checks(pipeline, log, KEYS[0], KEYS[0]).success
    [(victim,)] = pipeline.snowflake('SELECT MIN("ID") FROM "RETRIEVAL_LOG"')
    pipeline.snowflake(
        f'UPDATE "RETRIEVAL_LOG" SET "{column}" = {RETRIEVAL_LOG_CHANGES[column]} WHERE "ID" = %s',  # noqa: S608
        (victim,),
    )
    checks = dg.materialize(
        [*build_table_assets(log), build_table_checks(log)],
        resources=pipeline.resources,
        selection=dg.AssetSelection.checks_for_assets(log.snowflake_key),
        tags={"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[0]},
        instance=pipeline.instance,
        raise_on_error=False,
    )
    results = check_results(checks)
    assert results[(KEYS[0], "content_hash_matches_postgres")] is False, results
    assert results[(KEYS[0], "row_count_matches_postgres")] is True


def test_drift_on_the_retrieval_log_is_found_and_repaired(pipeline):
    """A deleted row and a backdated row, on a table without updated_at: the cheap tier's row counts find
    both; the repair runs make every day equal again."""
    from datavault_analytics.drift import scan
    from datavault_analytics.drift.plan import ScanState

    log = configured_table("retrieval_log")
    pipeline.seed_retrievals(DAYS, rows_per_day=15)
    assert pipeline.materialize(KEYS[0], KEYS[-1], table=log).success
    pipeline.pg("DELETE FROM retrieval_log WHERE id = (SELECT min(id) FROM retrieval_log)")
    pipeline.pg(
        "INSERT INTO retrieval_log (record_id, requested_by, found, client, retrieved_at) "
        "VALUES (gen_random_uuid(), 'replay', false, '{\"agent\": \"replay\"}', %s)",
        (f"{KEYS[2]} 12:00:00+00",),
    )
    resources = {k: pipeline.resources[k] for k in ("postgres", "snowflake", "snowflake_loader")}
    with dg.build_resources(resources) as built:
        scan = scan.scan_for_drift(
            pipeline.instance,
            log,
            built.postgres.for_table(log.spec),
            built.snowflake_loader.for_table(log.spec),
            KEYS,
            ScanState(),
        )
    repairs = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in scan.run_requests
    ]
    assert repairs == [(KEYS[0], KEYS[2])], scan.findings.summary  # merged: 2 drifted days, 1 day apart
    assert "PostgreSQL has 14 rows, Snowflake 15" in scan.findings.summary
    for first, last in repairs:
        assert pipeline.materialize(first, last, table=log).success
    assert all(day.matches for day in pipeline.reconcile(KEYS, table=log))


def test_a_composite_primary_key_loads_exactly_and_its_duplicates_are_found(pipeline):
    """A key of two columns: the load and its checks are exact, and a row repeated in Snowflake fails the
    duplicate check, which groups by both columns."""
    pipeline.pg(
        "CREATE TABLE public.key_versions (owner_id bigint, key_version integer, wrapped bytea NOT NULL, "
        "created_at timestamptz NOT NULL, PRIMARY KEY (owner_id, key_version))"
    )
    pipeline.pg(
        "INSERT INTO public.key_versions SELECT n / 4, n % 4, sha256(n::text::bytea), "
        "TIMESTAMPTZ '2025-05-01 00:00:00+00' + n * INTERVAL '50 minutes' FROM generate_series(0, 40) AS n"
    )
    attributes = {
        "table": "public.key_versions",
        "partition_column": "created_at",
        "primary_key": ["owner_id", "key_version"],
        "start_date": "2025-04-01",
    }
    with table_from_yaml("key_versions", attributes) as (component, defs):
        table = component.pipeline(Settings.from_environment())
        assert table.spec.primary_key == ["owner_id", "key_version"]
        loaded = load_with_checks(pipeline, table, "2025-05-01", "2025-05-02")
        assert loaded.success and set(check_results(loaded).values()) == {True}
        # Rows that share one column of the key are not duplicates; a repeated row is.
        pipeline.snowflake(
            'INSERT INTO "KEY_VERSIONS" SELECT * FROM "KEY_VERSIONS" WHERE "OWNER_ID" = 0 AND "KEY_VERSION" = 1'
        )
        checked = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            resources=pipeline.resources,
            selection=dg.AssetSelection.checks_for_assets(table.snowflake_key),
            tags={
                "dagster/asset_partition_range_start": "2025-05-01",
                "dagster/asset_partition_range_end": "2025-05-02",
            },
            instance=pipeline.instance,
            raise_on_error=False,
        )
    results = check_results(checked)
    assert results[("2025-05-01", "no_duplicate_ids")] is False
    assert results[("2025-05-02", "no_duplicate_ids")] is True
    days = pipeline.reconcile(["2025-05-02"], table=table)
    assert days[0].matches and days[0].snowflake_rows == 41 - 29


def test_every_tables_bulk_reads_of_datavault_share_one_pool():
    """Every step that reads DataVault's database for whole days is in the datavault_postgres pool, whose limit
    (the instance's concurrency.pools) bounds how many read it at once, whatever the table: the extract, the
    load (its fingerprints), the checks (a checks-only run's fingerprints) and the drift scan."""
    from datavault_analytics.definitions import defs
    from datavault_analytics.names import POSTGRES_POOL

    repository = defs.get_repository_def()
    pooled = {
        node.name
        for job in repository.get_all_jobs()
        for node in job.graph.node_defs
        if getattr(node, "pool", None) == POSTGRES_POOL
    }
    for name in configured_tables():
        pipeline = configured_table(name)
        assert f"s3__datavault__{name}" in pooled, pooled  # the stage step: the extract
        assert f"snowflake__datavault__{name}" in pooled, pooled  # the load: its fingerprints
        assert pipeline.checks_name in pooled, pooled
        assert f"scan_{name}_for_drift" in pooled, pooled
    assert not any(name.startswith("postgres__") for name in pooled)  # the source asset reads nothing


def test_records_yaml_reads_its_variables_and_an_unset_one_gives_the_components_default(monkeypatch):
    for name in ("DATAVAULT_LATE_ROW_DAYS", "DATAVAULT_DRIFT_SCAN_SECONDS", "DATAVAULT_START_DATE"):
        monkeypatch.delenv(name, raising=False)
    defaults = configured_table("records")
    assert (defaults.schedule.late_row_days, defaults.drift.scan_seconds, defaults.start_date) == (
        ScheduleConfig.model_fields["late_row_days"].default,
        DriftConfig.model_fields["scan_seconds"].default,
        DataVaultTable.model_fields["start_date"].default,
    )
    monkeypatch.setenv("DATAVAULT_LATE_ROW_DAYS", "5")
    assert configured_table("records").schedule.late_row_days == 5
    monkeypatch.setenv("DATAVAULT_LATE_ROW_DAYS", "-1")
    with pytest.raises(Exception, match="late_row_days must be at least 0, not -1"):
        configured_table("records")


# -- shapes refused before anything runs -----------------------------------------------------------


def _two_tables(first: dict, second: dict):
    """A fresh defs folder with two DataVaultTable defs.yaml; loads the first one's definitions."""
    sandbox_cm = create_defs_folder_sandbox()
    sandbox = sandbox_cm.__enter__()
    paths = [
        sandbox.scaffold_component(
            component_cls=DataVaultTable,
            defs_path=name,
            defs_yaml_contents={"type": "datavault_analytics.components.DataVaultTable", "attributes": attrs},
        )
        for name, attrs in (("first", first), ("second", second))
    ]
    return sandbox_cm, sandbox, paths


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (
            {
                "table": "archive.records",
                "partition_column": "created_at",
                "primary_key": ["id"],
                "snowflake_table": "records",
            },
            "both load Snowflake table RECORDS",
        ),
        (
            {"table": "archive.events", "partition_column": "at", "primary_key": ["id"]},
            "would both be named 'events'",
        ),
    ],
)
def test_two_tables_sharing_a_target_or_a_name_are_refused_naming_both_files(second, expected):
    first = {
        "table": "public.events",
        "partition_column": "at",
        "primary_key": ["id"],
        "snowflake_table": "RECORDS",
    }
    if "events" in second["table"]:
        first = {**first, "snowflake_table": "EVENTS"}
        second = {**second, "snowflake_table": "ARCHIVED_EVENTS"}
    sandbox_cm, sandbox, paths = _two_tables(first, second)
    try:
        with pytest.raises(Exception) as raised:
            with sandbox.load_component_and_build_defs(defs_path=paths[0]):
                pass
        message = str(raised.value) + "".join(str(getattr(raised.value, "__cause__", "") or ""))
        assert expected in message, message
        assert str(paths[0] / "defs.yaml") in message and str(paths[1] / "defs.yaml") in message
    finally:
        sandbox_cm.__exit__(None, None, None)


def test_the_same_table_name_in_two_schemas_loads_once_one_is_given_an_asset_name():
    first = {"table": "public.events", "partition_column": "at", "primary_key": ["id"]}
    second = {
        "table": "archive.events",
        "partition_column": "at",
        "primary_key": ["id"],
        "snowflake_table": "ARCHIVED_EVENTS",
        "asset_name": "archived_events",
    }
    sandbox_cm, sandbox, paths = _two_tables(first, second)
    try:
        with sandbox.load_component_and_build_defs(defs_path=paths[1]) as (component, defs):
            keys = {
                k.to_user_string() for a in defs.assets for k in getattr(a, "keys", [getattr(a, "key", None)])
            }
            assert "snowflake/datavault/archived_events" in keys
            assert [j.name for j in defs.jobs][0] == "datavault_archived_events_daily"
            assert component.pipeline(Settings.from_environment()).spec.source_name == "archive.events"
    finally:
        sandbox_cm.__exit__(None, None, None)


def test_the_scaffold_starts_where_the_local_stack_seeded_its_first_day(tmp_path, monkeypatch):
    from datavault_analytics.local_stack.stack import record_first_day

    monkeypatch.delenv("DATAVAULT_START_DATE", raising=False)
    monkeypatch.chdir(tmp_path)
    record_first_day(date(2026, 11, 29), root=tmp_path)
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=DataVaultTable, defs_path="orders")
        assert yaml.safe_load((path / "defs.yaml").read_text())["attributes"]["start_date"] == "2026-11-29"
    monkeypatch.setenv("DATAVAULT_START_DATE", "2025-06-01")
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=DataVaultTable, defs_path="orders")
        assert yaml.safe_load((path / "defs.yaml").read_text())["attributes"]["start_date"] == "2025-06-01"
