"""The per-day asset checks on the Snowflake table, on real PostgreSQL, S3 (moto) and Snowflake (fakesnow)."""

import logging
import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from datavault_analytics.names import SOURCE_FINGERPRINTS
from datavault_analytics.pipeline import checks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.table.day_window import day_windows
from datavault_analytics.verification.fingerprint import Fingerprint
from datavault_analytics.verification.reconciliation import SourceFingerprintReader, SourceFingerprints
from datavault_analytics_tests import records
from datavault_analytics_tests.pipeline_harness import ALL_ASSETS

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def run(pipeline, instance, first: str, last: str | None = None, selection=None) -> dg.ExecuteInProcessResult:
    """Materialize (with the checks) or only check the range [first, last] in one run, on one instance."""
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last or first}
    selection = selection or dg.AssetSelection.assets(records.STAGE_KEY, records.SNOWFLAKE_KEY)
    return dg.materialize(
        [*ALL_ASSETS, records.CHECKS],
        resources=pipeline.resources,
        selection=selection,
        tags=tags,
        instance=instance,
    )


def only_checks(pipeline, instance, day: str) -> dict[str, dg.AssetCheckEvaluation]:
    result = run(
        pipeline, instance, day, selection=dg.AssetSelection.checks_for_assets(records.SNOWFLAKE_KEY)
    )
    evaluations = result.get_asset_check_evaluations()
    assert {e.partition for e in evaluations} == {day}
    return {e.check_name: e for e in evaluations}


def test_a_range_run_records_every_check_for_every_day_and_all_pass(pipeline, instance):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=40)

    result = run(pipeline, instance, DAYS[0], DAYS[-1])

    evaluations = result.get_asset_check_evaluations()
    assert sorted((e.partition, e.check_name) for e in evaluations) == sorted(
        (day, spec.name) for day in DAYS for spec in records.CHECK_SPECS
    )
    assert all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]
    row_counts = {e.partition: e for e in evaluations if e.check_name == checks.ROW_COUNT}
    assert row_counts["2026-11-02"].description == "2026-11-02: 40 rows in PostgreSQL and in Snowflake"
    assert row_counts["2026-11-02"].metadata["postgres_rows"].value == 40
    # Lateness per partition: how long after its day ended each day was loaded.
    late = row_counts["2026-11-01"].metadata["hours_after_day_end"].value
    expected = (datetime.now(UTC) - datetime(2026, 11, 2, tzinfo=UTC)).total_seconds() / 3600
    assert abs(late - expected) < 0.5
    # The checks' results are stored per partition, as the UI reads them.
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(records.SNOWFLAKE_KEY, checks.CONTENT_HASH)]
    )
    assert record[dg.AssetCheckKey(records.SNOWFLAKE_KEY, checks.CONTENT_HASH)].partition in DAYS


def test_a_row_missing_from_snowflake_fails_the_count_and_hash_for_that_day_only(pipeline, instance):
    pipeline.seed([date.fromisoformat(d) for d in DAYS[:2]], rows_per_day=40)
    assert run(pipeline, instance, DAYS[0], DAYS[1]).success
    [(victim,)] = pipeline.snowflake(
        'SELECT MIN("ID") FROM "RECORDS" WHERE "CREATED_AT" >= %s', ("2026-11-02 00:00:00",)
    )
    pipeline.snowflake('DELETE FROM "RECORDS" WHERE "ID" = %s', (victim,))

    bad = only_checks(pipeline, instance, "2026-11-02")
    good = only_checks(pipeline, instance, "2026-11-01")

    assert not bad[checks.ROW_COUNT].passed
    assert bad[checks.ROW_COUNT].description == "2026-11-02: PostgreSQL has 40 rows, Snowflake 39 (-1)"
    assert not bad[checks.CONTENT_HASH].passed
    assert bad[checks.CONTENT_HASH].description.startswith(
        "2026-11-02: content fingerprint differs (PostgreSQL 40:"
    )
    assert not bad[checks.MANIFEST_MATCHES_LOAD].passed
    assert "the manifest lists 40 rows, Snowflake holds 39" in bad[checks.MANIFEST_MATCHES_LOAD].description
    assert bad[checks.NO_DUPLICATE_IDS].passed
    assert all(e.passed for e in good.values())


def test_a_changed_payload_passes_the_count_and_fails_the_hash(pipeline, instance):
    pipeline.seed([date.fromisoformat(DAYS[0])], rows_per_day=30)
    assert run(pipeline, instance, DAYS[0]).success
    pipeline.snowflake(
        'UPDATE "RECORDS" SET "CIPHERTEXT" = TO_BINARY(\'00ff\', \'HEX\') WHERE "ID" = (SELECT MAX("ID") '
        'FROM "RECORDS")'
    )

    result = only_checks(pipeline, instance, DAYS[0])

    assert result[checks.ROW_COUNT].passed
    assert not result[checks.CONTENT_HASH].passed
    assert result[checks.CONTENT_HASH].description.endswith("same row count, so some rows' values differ")


def test_duplicate_ids_are_counted_in_snowflake_without_naming_them(pipeline, instance):
    pipeline.seed([date.fromisoformat(DAYS[0])], rows_per_day=20)
    assert run(pipeline, instance, DAYS[0]).success
    [(duplicated,)] = pipeline.snowflake('SELECT MIN("ID") FROM "RECORDS"')
    pipeline.snowflake('INSERT INTO "RECORDS" SELECT * FROM "RECORDS" WHERE "ID" = %s', (duplicated,))

    result = only_checks(pipeline, instance, DAYS[0])

    assert not result[checks.NO_DUPLICATE_IDS].passed
    description = result[checks.NO_DUPLICATE_IDS].description
    assert description.startswith(f"{DAYS[0]}: 1 id(s) appear more than once in Snowflake (1 surplus rows); ")
    assert duplicated not in description  # record ids stay out of Dagster's event log
    assert not result[checks.ROW_COUNT].passed


def test_a_day_restaged_after_its_load_fails_the_manifest_check_until_it_is_loaded_again(pipeline, instance):
    pipeline.seed([date.fromisoformat(DAYS[0])], rows_per_day=10)
    assert run(pipeline, instance, DAYS[0]).success
    pipeline.insert(str(uuid.uuid4()), datetime(2026, 11, 1, 23, tzinfo=UTC), b"late row")
    # Only the stage is re-materialized: its manifest no longer describes what Snowflake holds.
    assert run(pipeline, instance, DAYS[0], selection=dg.AssetSelection.assets(records.STAGE_KEY)).success

    stale = only_checks(pipeline, instance, DAYS[0])
    assert not stale[checks.MANIFEST_MATCHES_LOAD].passed
    assert "the manifest lists 11 rows, Snowflake holds 10" in stale[checks.MANIFEST_MATCHES_LOAD].description
    assert "re-staged at" in stale[checks.MANIFEST_MATCHES_LOAD].description

    assert run(pipeline, instance, DAYS[0]).success
    assert all(e.passed for e in only_checks(pipeline, instance, DAYS[0]).values())


def test_a_day_never_staged_fails_the_manifest_check_with_the_stage_error(pipeline, instance):
    result = only_checks(pipeline, instance, "2026-10-05")

    assert result[checks.ROW_COUNT].passed  # empty on both sides
    assert not result[checks.MANIFEST_MATCHES_LOAD].passed
    assert result[checks.MANIFEST_MATCHES_LOAD].description.startswith(
        "2026-10-05: Partition 2026-10-05 has no stage"
    )


def test_lateness_is_measured_from_the_end_of_the_day():
    day = checks.DayReconciliation("2026-11-01", Fingerprint(1, 7), Fingerprint(1, 7))
    loaded_at = (datetime(2026, 11, 2, tzinfo=UTC) + timedelta(hours=3, minutes=30)).timestamp()
    [count, *_] = checks.evaluate_day(
        records.SNOWFLAKE_KEY, day, (0, 0), checks.StageError("no manifest"), loaded_at
    )
    assert count.metadata["hours_after_day_end"].value == 3.5


def test_a_day_whose_stage_was_purged_after_retention_passes_the_manifest_check_and_says_why():
    day = checks.DayReconciliation("2026-11-01", Fingerprint(5, 9), Fingerprint(5, 9))
    missing = checks.StageError("Partition 2026-11-01 has no stage manifest")
    loaded_at = datetime.now(UTC) - timedelta(hours=80)

    [*_, purged] = checks.evaluate_day(
        records.SNOWFLAKE_KEY, day, (0, 0), missing, loaded_at.timestamp(), retention_hours=72
    )
    [*_, recent] = checks.evaluate_day(
        records.SNOWFLAKE_KEY, day, (0, 0), missing, loaded_at.timestamp() + 10 * 3600, 72
    )

    assert purged.passed and "purged 72 h after the load" in purged.description
    assert not recent.passed and "no stage manifest" in recent.description


def content_hashes(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == checks.CONTENT_HASH
    }


def test_a_loading_run_checks_against_the_fingerprints_its_load_read_from_postgres(pipeline, instance):
    pipeline.seed([date.fromisoformat(d) for d in DAYS[:2]], rows_per_day=25)

    result = run(pipeline, instance, DAYS[0], DAYS[1])

    hashes = content_hashes(result)
    assert all(e.passed for e in hashes.values())
    assert {e.metadata["postgres_read"].value for e in hashes.values()} == {
        "by the load, while Snowflake loaded"
    }
    [load] = [
        m
        for m in result.get_asset_materialization_events()
        if m.partition == DAYS[0] and m.asset_key == records.SNOWFLAKE_KEY
    ]
    stored = load.materialization.metadata[SOURCE_FINGERPRINTS].value
    with pipeline.configured("postgres") as r:
        assert stored["columns"] == [c.name for c in r.postgres.source_columns()]
    assert stored["days"] == {d.day: str(d.postgres) for d in pipeline.reconcile(DAYS[:2])}
    # A checks-only run compares with PostgreSQL as it is now, read by the check.
    again = only_checks(pipeline, instance, DAYS[0])
    assert again[checks.CONTENT_HASH].metadata["postgres_read"].value == "by the check"


def test_a_source_change_after_the_load_is_caught_by_the_next_checks_run(pipeline, instance):
    pipeline.seed([date.fromisoformat(DAYS[0])], rows_per_day=20)
    assert run(pipeline, instance, DAYS[0]).success
    pipeline.pg("UPDATE records SET nonce = '\\x00'::bytea WHERE id = %s", (pipeline.first_id(DAYS[0]),))

    result = only_checks(pipeline, instance, DAYS[0])

    assert result[checks.ROW_COUNT].passed
    assert not result[checks.CONTENT_HASH].passed


def test_fingerprints_read_over_other_columns_are_not_used(pipeline):
    pipeline.seed([date.fromisoformat(DAYS[0])], rows_per_day=10)
    pipeline.materialize(DAYS[0])
    with pipeline.configured("postgres") as r:
        columns = tuple(c.name for c in r.postgres.source_columns())
    wrong = {DAYS[0]: Fingerprint(10, 12345)}

    def matches(read) -> bool:
        [day] = pipeline.reconcile([DAYS[0]], source_read=read)
        return day.matches

    assert not matches(SourceFingerprints(columns, wrong))  # what the load read is what is compared
    assert matches(SourceFingerprints(columns[:-1], wrong))  # a column since added: PostgreSQL is read again
    assert matches(None)


def test_postgres_failing_during_the_load_leaves_the_load_standing_and_the_checks_read_it(pipeline, instance):
    pipeline.seed([date.fromisoformat(DAYS[0])], rows_per_day=15)
    assert run(pipeline, instance, DAYS[0], selection=dg.AssetSelection.assets(records.STAGE_KEY)).success
    good = pipeline.resources["postgres"]
    pipeline.with_resources(postgres=PostgresResource(dsn="postgresql://nobody@127.0.0.1:1/none"))

    loaded = run(
        pipeline,
        instance,
        DAYS[0],
        selection=dg.AssetSelection.assets(records.SNOWFLAKE_KEY).without_checks(),
    )

    assert loaded.success
    [load] = loaded.get_asset_materialization_events()
    assert SOURCE_FINGERPRINTS not in load.materialization.metadata
    warnings = [
        e.message for e in instance.all_logs(loaded.run_id) if e.level == logging.WARNING and e.message
    ]
    assert any(
        "Could not read PostgreSQL's fingerprints while loading (the checks read them)" in w for w in warnings
    )
    pipeline.with_resources(postgres=good)
    assert all(e.passed for e in only_checks(pipeline, instance, DAYS[0]).values())


def test_the_fingerprint_reader_stops_after_the_current_day(pipeline):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=5)
    with pipeline.configured("postgres") as r:
        stopped = SourceFingerprintReader(r.postgres, day_windows(DAYS))
        stopped.stop()  # before it starts: it reads the columns, then no day
        assert stopped.start().result().days == {}
        read = SourceFingerprintReader(r.postgres, day_windows(DAYS)).start().result()
    assert read.days == {d.day: d.postgres for d in pipeline.reconcile(DAYS)}
