"""Bad input gets a clear error before anything is written, and is never retried.

Each case runs the real assets against the real servers and then checks that S3 and Snowflake are as they
were: nothing staged, nothing loaded, no earlier staging or load disturbed.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from dagster_snowflake import SnowflakeResource

from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.table.day_window import DayWindow, InvalidPartitionKeyError
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.table.spec import TableSpec
from datavault_analytics_tests import records
from datavault_analytics_tests.pipeline_harness import ALL_ASSETS
from datavault_analytics_tests.records import RECORDS

DAY = "2026-11-01"
DAY_DATE = date(2026, 11, 1)
MANIFEST = f"analytics/records/dt={DAY}/_manifest.json"
TODAY = datetime.now(UTC).date()  # partitions are UTC days


def written(pipeline) -> tuple:
    """Everything the pipeline could have written: S3 objects (key, ETag) and the Snowflake table's rows."""
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.bucket).get("Contents", [])
    objects = sorted((o["Key"], o["ETag"]) for o in listing)
    tables = pipeline.snowflake(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'RECORDS'",
        (pipeline.sf_schema,),
    )
    rows = pipeline.snowflake('SELECT * FROM "RECORDS" ORDER BY "ID"') if tables == [(1,)] else None
    return objects, rows


def failed_without_retry(result) -> str:
    """The step failure's message, after checking the run failed and no step was retried."""
    assert not result.success
    assert not [e for e in result.all_events if e.is_step_up_for_retry], "bad input must not be retried"
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.error.to_string()


@pytest.fixture
def seeded(pipeline):
    pipeline.seed([DAY_DATE], rows_per_day=40)
    return pipeline


@pytest.fixture
def loaded(seeded):
    assert seeded.materialize(DAY).success
    return seeded


# -- partition keys --------------------------------------------------------------------------------

BAD_KEYS = ["2026-13-01", "2026-11-1", "20261101", "x'; DROP TABLE records; --", "2026-11-01T00:00"]
# A day before the first partition, and days not ended yet: tomorrow (which is still not over if the suite
# runs past midnight UTC, when today would become a day that has ended) and a day to come.
OUT_OF_RANGE = [
    "2023-12-31",
    (TODAY + timedelta(days=1)).isoformat(),
    (TODAY + timedelta(days=3)).isoformat(),
]


@pytest.mark.parametrize("key", BAD_KEYS + OUT_OF_RANGE)
def test_a_bad_partition_key_is_refused_before_the_run_starts(seeded, key):
    with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition"):
        dg.materialize(
            ALL_ASSETS,
            resources=seeded.resources,
            selection=[records.STAGE_KEY, records.SNOWFLAKE_KEY],
            partition_key=key,
        )
    assert written(seeded) == ([], None)


@pytest.mark.parametrize("key", ["2026-13-01", "20261101", "x'; DROP TABLE records; --", ""])
def test_a_malformed_key_in_a_range_is_refused_before_the_run_starts(seeded, key):
    # (Dagster reads a range's bounds leniently: 2026-11-1 is taken as 2026-11-01, the same day.)
    with pytest.raises(ValueError, match="does not match format"):
        seeded.materialize(key)
    assert written(seeded) == ([], None)


@pytest.mark.parametrize("key", OUT_OF_RANGE)
def test_a_range_outside_the_partitions_fails_before_anything_is_written(seeded, key):
    result = seeded.materialize(key, raise_on_error=False)
    assert not result.success
    [failure, *_] = [e for e in result.all_events if e.is_step_failure or e.is_step_up_for_retry]
    message = (
        failure.step_failure_data if failure.is_step_failure else failure.event_specific_data
    ).error.to_string()
    assert key in message
    assert (
        "is before the partitions definition start" in message
        or "is outside this pipeline's partitions" in message
    )
    assert written(seeded) == ([], None)


@pytest.mark.parametrize("key", [*BAD_KEYS, ""])
def test_day_windows_refuse_what_is_not_a_day(key):
    with pytest.raises(InvalidPartitionKeyError, match="is not a day in YYYY-MM-DD form"):
        DayWindow.for_key(key)


def test_the_dagster_cli_refuses_a_bad_partition_key(seeded):
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "datavault_analytics.definitions",
        "--select",
        "s3/datavault/records",
        "--partition",
        "2026-13-01",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode != 0
    assert "2026-13-01" in done.stderr
    assert written(seeded) == ([], None)


# -- identifiers -----------------------------------------------------------------------------------

HOSTILE = 'records"; DROP TABLE records; --'


def _with_table(**settings) -> TablePipeline:
    """records' pipeline with the table's shape changed, as a mistaken defs.yaml would give it."""
    return dataclasses.replace(RECORDS, spec=_spec(**settings))


def _spec(**settings) -> TableSpec:
    """records' TableSpec with `settings` changed."""
    return TableSpec(**{**RECORDS.spec.model_dump(), **settings})


def _loader(**settings) -> SnowflakeLoader:
    snowflake = SnowflakeResource(account="a", user="u", password="p")
    return SnowflakeLoader(
        snowflake=snowflake, stage=S3Stage(s3=S3Resource(), stage_uri="s3://b/p"), **settings
    )


@pytest.mark.parametrize(
    ("make", "setting", "value", "expected"),
    [
        (_spec, "postgres_table", HOSTILE, "postgres_table="),
        (_spec, "postgres_schema", "public;", "postgres_schema="),
        (_spec, "partition_column", "created_at' OR '1'='1", "partition_column="),
        (_spec, "updated_at_column", "updated_at)--", "updated_at_column="),
        (_spec, "snowflake_table", 'RECORDS" CASCADE; --', "snowflake_table="),
        (
            _loader,
            "stage_name",
            "STAGE; DROP STAGE X",
            "snowflake.stage_name=",
        ),
        (
            _loader,
            "storage_integration",
            "INT'; --",
            "snowflake.storage_integration=",
        ),
        (
            lambda **kw: S3Stage(s3=S3Resource(), stage_uri="s3://b/p", **kw),
            "dataset",
            "../records",
            "s3_stage.dataset=",
        ),
    ],
)
def test_a_hostile_identifier_in_config_is_refused_when_the_resources_are_built(
    make, setting, value, expected
):
    with pytest.raises(ValueError, match=re.escape(expected)):
        make(**{setting: value})


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("postgres_table", "no_such_table", "Source table public.no_such_table does not exist"),
        (
            "partition_column",
            "no_such_column",
            "partition_column='no_such_column' is not a column of public.records",
        ),
        (
            "updated_at_column",
            "modified_at",
            "updated_at_column='modified_at' is not a column of public.records",
        ),
    ],
)
def test_an_unknown_table_or_column_fails_before_anything_is_written(seeded, setting, value, expected):
    """Also a column the table's defs.yaml names and a migration dropped, e.g. updated_at_column."""
    message = failed_without_retry(
        seeded.materialize(DAY, raise_on_error=False, table=_with_table(**{setting: value}))
    )
    assert expected in message
    assert written(seeded) == ([], None)
    assert seeded.pg("SELECT count(*) FROM records") == [(40,)]  # nothing ran against the source either


def test_a_source_column_whose_name_cannot_be_carried_fails_before_anything_is_written(seeded):
    seeded.pg('ALTER TABLE records ADD COLUMN "Note; DROP TABLE records" text')
    message = failed_without_retry(seeded.materialize(DAY, raise_on_error=False))
    assert (
        "Column 'Note; DROP TABLE records' of public.records is not a plain lower-case identifier" in message
    )
    assert written(seeded) == ([], None)


# -- types and schema changes ------------------------------------------------------------------------


def test_a_column_type_without_a_mapping_fails_before_anything_is_written(seeded):
    seeded.pg("ALTER TABLE records ADD COLUMN location point")
    message = failed_without_retry(seeded.materialize(DAY, raise_on_error=False))
    assert "Column 'location' has PostgreSQL type 'point', which has no Snowflake mapping" in message
    assert "datavault_analytics/type_mapping.py" in message
    assert written(seeded) == ([], None)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "ALTER TABLE records ALTER COLUMN owner_id TYPE integer USING (owner_id % 100000)::integer",
            "Column type(s) changed for OWNER_ID (NUMBER/19/0 in Snowflake, NUMBER(10,0) from PostgreSQL "
            "type integer)",
        ),
        (
            "ALTER TABLE records ALTER COLUMN key TYPE bytea USING convert_to(key, 'UTF8')",
            "Column type(s) changed for KEY (TEXT/16777216 in Snowflake, BINARY from PostgreSQL type bytea)",
        ),
    ],
)
def test_an_incompatible_schema_change_fails_before_anything_is_written(loaded, change, expected):
    before = written(loaded)
    loaded.pg(change)
    message = failed_without_retry(loaded.materialize(DAY, raise_on_error=False))
    assert expected in message
    assert "Nothing was loaded" in message and "re-run the partition" in message
    assert "Checking the days and the Snowflake table before staging" in message
    assert written(loaded) == before  # not even the stage was touched


def test_a_snowflake_table_that_differs_from_the_source_fails_before_staging(seeded):
    seeded.snowflake('CREATE TABLE "RECORDS" ("ID" VARCHAR(36), "OWNER_ID" VARCHAR, "EXTRA" VARCHAR)')
    before = written(seeded)
    message = failed_without_retry(seeded.materialize(DAY, raise_on_error=False))
    assert (
        "Column type(s) changed for OWNER_ID (TEXT/16777216 in Snowflake, NUMBER(19,0) from PostgreSQL type "
        "bigint)" in message
    )
    assert written(seeded) == before and before[0] == []


def test_a_snowflake_table_changed_after_staging_fails_the_load_and_keeps_its_rows(loaded):
    loaded.pg("UPDATE records SET ciphertext = ciphertext || '\\x00'::bytea")
    assert loaded.materialize(DAY, selection=[records.STAGE_KEY]).success
    loaded.snowflake('ALTER TABLE "RECORDS" DROP COLUMN "KEY"')  # someone's migration in Snowflake
    loaded.snowflake('ALTER TABLE "RECORDS" ADD COLUMN "KEY" NUMBER(10,0)')
    before = written(loaded)
    message = failed_without_retry(
        loaded.materialize(DAY, selection=[records.SNOWFLAKE_KEY], raise_on_error=False)
    )
    assert "Column type(s) changed for KEY (NUMBER/10/0 in Snowflake, VARCHAR from PostgreSQL" in message
    assert "Loading into Snowflake" in message
    assert written(loaded) == before


# -- the stage manifest ------------------------------------------------------------------------------


def _corrupt(pipeline, body: bytes | None) -> None:
    if body is None:
        pipeline.s3.delete_object(Bucket=pipeline.bucket, Key=MANIFEST)
    else:
        pipeline.s3.put_object(Bucket=pipeline.bucket, Key=MANIFEST, Body=body)


def _manifest(pipeline) -> bytes:
    return pipeline.s3.get_object(Bucket=pipeline.bucket, Key=MANIFEST)["Body"].read()


@pytest.mark.parametrize(
    ("corruption", "expected"),
    [
        (lambda m: None, f"Partition {DAY} has no stage manifest"),
        (lambda m: b"", "is empty or malformed"),
        (lambda m: m[: len(m) // 2], "is empty or malformed"),
        (lambda m: b'{"version": 1}', "is empty or malformed"),
        (lambda m: m.replace(b'"rows": 40', b'"rows": 41', 1), "its files' rows differ from its total"),
        (lambda m: m.replace(b"part-00000-", b"part-00007-"), "is missing or has changed size"),
        (lambda m: json.dumps({**json.loads(m), "columns": []}).encode(), "lists no columns"),
    ],
)
def test_a_missing_or_broken_manifest_fails_the_load_and_keeps_the_day(loaded, corruption, expected):
    _corrupt(loaded, corruption(_manifest(loaded)))
    before = written(loaded)
    message = failed_without_retry(
        loaded.materialize(DAY, selection=[records.SNOWFLAKE_KEY], raise_on_error=False)
    )
    assert expected in message
    assert "Reading the stage manifests" in message
    assert written(loaded) == before
