"""`datavault-analytics trace`, and an erasure followed end to end through every place the pipeline writes.

The README's section "Where an erased record still lives" is what these tests hold to.
"""

import dataclasses
from datetime import date

import pytest

from datavault_analytics import cli
from datavault_analytics.cli.trace import trace_record
from datavault_analytics.drift import scan as drift_scan
from datavault_analytics.drift.plan import ScanState
from datavault_analytics.errors import ConfigurationError
from datavault_analytics.names import RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.settings import Settings
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics_tests.records import RECORDS

DAY = date(2025, 4, 2)


def trace(pipeline, record_id: str, days=()):
    with pipeline.configured("postgres", "s3_stage", "snowflake_loader") as r:
        return trace_record(record_id, r.postgres, r.snowflake_loader, r.s3_stage, list(days))


def run_trace(capsys, *args) -> tuple[int, str]:
    code = cli.main(["trace", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_an_erased_record_is_traced_out_of_postgres_then_out_of_snowflake_and_the_stage(
    pipeline, monkeypatch, capsys
):
    pipeline.seed([DAY], rows_per_day=30)
    pipeline.materialize(DAY.isoformat())
    [(record_id,)] = pipeline.pg("SELECT id::text FROM records ORDER BY id LIMIT 1")

    present = trace(pipeline, record_id)
    assert present.postgres_day == DAY.isoformat()
    assert present.snowflake_days == {DAY.isoformat(): 1}
    [uri] = present.staged_files
    assert uri.startswith(f"{pipeline.stage_uri}/records/dt={DAY}/part-")
    code, out = run_trace(capsys, record_id)
    assert code == 0 and "PostgreSQL   present, day 2025-04-02" in out and "present in 3 place(s)" in out
    assert "Time Travel  " in out and "keeps a deleted row 1 day(s)" in out and "7 days of Fail-safe" in out
    assert run_trace(capsys, record_id, "--expect-absent")[0] == 1

    # The erasure in DataVault: the record leaves PostgreSQL; the copy still has it until the drift scan.
    pipeline.pg("DELETE FROM records WHERE id = %s", (record_id,))
    erased = trace(pipeline, record_id)
    assert erased.postgres_day is None and erased.snowflake_days and erased.staged_files

    table = dataclasses.replace(RECORDS, drift=RECORDS.drift.model_copy(update=dict(hash_days_per_scan=0)))
    with pipeline.configured("postgres", "snowflake", "snowflake_loader") as built:
        scan = drift_scan.scan_for_drift(
            pipeline.instance, table, built.postgres, built.snowflake_loader, [DAY.isoformat()], ScanState()
        )
    [request] = scan.run_requests
    pipeline.materialize(request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG])

    # Re-staging the day replaced its files, and the reload replaced its rows: gone from both.
    gone = trace(pipeline, record_id)
    assert (gone.postgres_day, gone.snowflake_days, gone.staged_files) == (None, {}, [])
    assert gone.scanned_days == [DAY.isoformat()]  # no side knows it now: every day the stage holds
    code, out = run_trace(capsys, record_id, "--expect-absent")
    assert code == 0 and "absent from PostgreSQL, the scanned staged files and Snowflake" in out
    assert "S3 stage     absent (scanned the staged files of 2025-04-02)" in out


def test_trace_refuses_what_is_not_a_record_id(pipeline, capsys):
    code, out = run_trace(capsys, "not-a-uuid'; DROP TABLE records")
    assert code == 1 and "is not a record id" in out
    assert pipeline.pg("SELECT count(*) FROM records") == [(0,)]


def test_a_transient_table_with_no_time_travel_is_created_and_loaded(pipeline):
    loader = pipeline.resources["snowflake_loader"]
    transient = SnowflakeLoader(
        snowflake=loader.snowflake,
        stage=loader.stage,
        transient_table=True,
        time_travel_days=0,
    )
    pipeline.with_resources(snowflake_loader=transient)
    pipeline.seed([DAY], rows_per_day=5)
    pipeline.materialize(DAY.isoformat())
    assert all(day.matches for day in pipeline.reconcile([DAY.isoformat()]))


def test_a_transient_table_refuses_more_than_a_day_of_time_travel():
    with pytest.raises(ConfigurationError, match="keeps at most 1 day of Time Travel"):
        Settings.from_environment(
            "local",
            {"DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE": "true", "DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS": "3"},
        )
    settings = Settings.from_environment(
        "local", {"DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE": "yes", "DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS": "0"}
    )
    assert (settings.snowflake_transient_table, settings.snowflake_time_travel_days) == (True, 0)


def test_trace_with_the_stage_unreachable_fails_in_one_line_naming_s3(pipeline, monkeypatch, capsys):
    from datavault_analytics.local_stack.processes import free_port

    pipeline.seed([DAY], rows_per_day=3)
    [(record_id,)] = pipeline.pg("SELECT id::text FROM records LIMIT 1")
    monkeypatch.setenv("DATAVAULT_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, out = run_trace(capsys, record_id)
    assert code == 1
    [line] = out.strip().splitlines()
    assert line.startswith(f"datavault-analytics: error: tracing {record_id} failed: S3 is unreachable")
