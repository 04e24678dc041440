"""Backfilling ranges from the command line, as an engineer would, against the real servers.

The UI's backfill (through the webserver and the daemon, in runs of several days) is in
test_daemon_and_webserver.py.
"""

import json
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from datavault_analytics.names import LOADED_DAYS_TAG
from datavault_analytics_tests.records import SNOWFLAKE_KEY, STAGE_KEY

BIN = Path(sys.executable).parent
DAYS = [date(2026, 10, 1) + timedelta(days=i) for i in range(4)]


def run(command: list[str], tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "DATAVAULT_BACKFILL_DAYS_PER_RUN"}
    return subprocess.run(
        command,
        env={**env, "DAGSTER_HOME": str(home), **extra_env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dagster_asset_materialize_takes_a_partition_range_as_one_run_with_each_day_replaced(
    pipeline, tmp_path
):
    pipeline.seed(DAYS, rows_per_day=40)
    first, last = str(DAYS[0]), str(DAYS[-1])
    select = ",".join(k.to_user_string() for k in (STAGE_KEY, SNOWFLAKE_KEY))
    command = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "datavault_analytics.definitions",
        "--select",
        select,
        "--partition-range",
        f"{first}...{last}",
    ]

    for _ in range(2):  # twice: the second run replaces each day, it does not add to it
        result = run(command, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]

    output = result.stdout + result.stderr
    assert output.count("RUN_START") == 1 and output.count("RUN_SUCCESS") == 1
    loaded = re.findall(r"Loaded (\d{4}-\d{2}-\d{2}) \((\d)/4 days\)", output)
    assert loaded == [(str(d), str(i)) for i, d in enumerate(DAYS, start=1)]
    assert pipeline.snowflake('SELECT COUNT(*), COUNT(DISTINCT "ID") FROM "RECORDS"') == [(160, 160)]
    assert all(day.matches for day in pipeline.reconcile([str(d) for d in DAYS]))
    # The per-day checks ran in the same run, one result per day.
    assert len(re.findall(r"Asset check 'row_count_matches_postgres' on '[^']+' passed", output)) == 4


def test_the_backfill_command_shows_days_done_and_rows_per_second_then_the_reconciliation_table(
    pipeline, tmp_path
):
    pipeline.seed(DAYS, rows_per_day=25)
    pipeline.seed_retrievals(DAYS, rows_per_day=10)

    # Every configured table by default. Also where a deployment sets multi-run backfills for the UI: the
    # command chunks the range itself.
    result = run(
        [str(BIN / "datavault-analytics"), "backfill", str(DAYS[0]), str(DAYS[-1]), "--days-per-run", "2"],
        tmp_path,
        DATAVAULT_BACKFILL_DAYS_PER_RUN="31",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    runs = [line.split(" (")[0] for line in lines if ": run " in line]
    assert runs == [
        f"{table}: run {first} .. {last}"
        for table in ("records", "retrieval_log")
        for first, last in ((DAYS[0], DAYS[1]), (DAYS[2], DAYS[3]))
    ]
    progress = [
        re.search(r"\[(\d)/4 days\] loaded (\S+): 25 rows \(([\d,]+) rows/s overall\)", line)
        for line in lines
        if "days] loaded" in line and ": 25 rows" in line
    ]
    assert [(m[1], m[2]) for m in progress] == [(str(i), str(d)) for i, d in enumerate(DAYS, start=1)]
    assert len(re.findall(r"days\] loaded \S+: 10 rows", result.stdout)) == 4  # retrieval_log's days
    assert all(int(m[3].replace(",", "")) > 0 for m in progress)
    table = lines[lines.index(next(line for line in lines if line.startswith("day "))) :]
    assert [row.split()[0] for row in table[2:6]] == [str(d) for d in DAYS]
    assert all(row.split()[-1] == "match" for row in table[2:6])
    assert lines.index("retrieval_log (public.retrieval_log -> RETRIEVAL_LOG):") > lines.index(table[0])
    assert lines[-1] == "8 of 8 days match across 2 tables"
    assert pipeline.snowflake('SELECT COUNT(*) FROM "RETRIEVAL_LOG"') == [(40,)]
    # The progress above is the runs' own record of the days they loaded, as their run tags keep it.
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        tagged = [json.loads(run.tags[LOADED_DAYS_TAG]) for run in instance.get_runs()]
    assert sorted(day for days in tagged for day in days) == sorted([str(d) for d in DAYS] * 2)
    assert sorted(rows for days in tagged for rows in days.values()) == [10] * 4 + [25] * 4


def test_the_report_takes_a_table_and_refuses_one_that_is_not_configured(pipeline, tmp_path):
    pipeline.seed_retrievals(DAYS[:1], rows_per_day=10)
    report = [str(BIN / "datavault-analytics"), "report", str(DAYS[0]), str(DAYS[0])]

    unloaded = run([*report, "--table", "retrieval_log"], tmp_path)
    assert unloaded.returncode == 1 and "MISMATCH retrieval_log" in unloaded.stderr
    assert "records" not in unloaded.stdout and unloaded.stdout.splitlines()[-1] == "0 of 1 days match"

    unknown = run([*report, "--table", "retrievals"], tmp_path)
    assert unknown.returncode == 1
    assert (
        "No table 'retrievals' is configured" in unknown.stderr and "records, retrieval_log" in unknown.stderr
    )


def test_the_backfill_command_refuses_a_range_that_ends_before_it_starts(pipeline, tmp_path):
    result = run([str(BIN / "datavault-analytics"), "backfill", str(DAYS[1]), str(DAYS[0])], tmp_path)

    assert result.returncode == 1
    assert "ends (2026-10-01) before it starts (2026-10-02)" in result.stderr


def test_the_cli_refuses_days_outside_the_partitions_a_bad_day_and_a_bad_environment_in_one_line(
    pipeline, tmp_path
):
    cli = str(BIN / "datavault-analytics")
    tomorrow = date.today() + timedelta(days=1)
    late = run([cli, "backfill", str(DAYS[0]), str(tomorrow)], tmp_path)
    assert late.returncode == 1 and "reaches outside them" in late.stderr
    assert "records has days 2024-01-01 .. " in late.stderr and "Traceback" not in late.stderr
    early = run([cli, "backfill", "2023-12-31", "2024-01-02"], tmp_path)
    assert early.returncode == 1 and "2023-12-31 .. 2024-01-02 reaches outside them" in early.stderr

    month_13 = run([cli, "report", "2026-13-01", "2026-11-02"], tmp_path)
    assert month_13.returncode == 2 and "'2026-13-01' is not a day of the calendar" in month_13.stderr
    not_a_day = run([cli, "report", "1.11.2026", "2026-11-02"], tmp_path)
    assert "'1.11.2026' is not a day in YYYY-MM-DD form" in not_a_day.stderr

    staging = run([cli, "report", str(DAYS[0]), str(DAYS[0])], tmp_path, DATAVAULT_ENV="staging")
    assert staging.returncode == 1 and "Traceback" not in staging.stderr
    assert (
        staging.stderr.strip()
        == "datavault-analytics: error: DATAVAULT_ENV='staging' is not one of local, prod."
    )
    assert "Warning" not in late.stderr + early.stderr + staging.stderr


def test_a_failing_backfill_shows_each_retry_and_the_error_in_the_terminal(pipeline, tmp_path):
    """S3 unreachable while staging: the terminal says why, at each retry and at the end, not only the log."""
    pipeline.seed(DAYS[:1], rows_per_day=5)
    result = run(
        [str(BIN / "datavault-analytics"), "backfill", str(DAYS[0]), str(DAYS[0]), "--table", "records"],
        tmp_path,
        DATAVAULT_S3_ENDPOINT_URL="http://127.0.0.1:9",
        DATAVAULT_MAX_RETRIES="1",
        DATAVAULT_RETRY_DELAY_SECONDS="0.1",
    )
    assert result.returncode == 1
    assert "  retrying: StageUnavailableError: S3 is unreachable" in result.stdout, result.stdout
    assert "failed: StageUnavailableError: S3 is unreachable" in result.stderr, result.stderr
    assert "[step: " in result.stderr and "Log: " in result.stderr
