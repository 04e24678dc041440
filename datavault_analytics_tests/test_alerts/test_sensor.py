"""The alert sensor on real runs (PostgreSQL, S3, Snowflake) and a local HTTP receiver: one alert per cause and
day, none lost while the receiver is down, none sent twice, no secret in any."""

import json
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from datavault_analytics.alerts.sensor import build_alert_sensor
from datavault_analytics.alerts.webhook import AlertWebhook
from datavault_analytics_tests import records
from datavault_analytics_tests.pipeline_harness import ALL_ASSETS

DAYS = ["2026-11-01", "2026-11-02"]


@pytest.fixture
def instance(tmp_path):
    """Event logs in one store, as the local stack's and production's PostgreSQL storage keep them (the
    default SQLite one is sharded per run, and cannot be read across runs after a cursor)."""
    overrides = {
        "event_log_storage": {
            "module": "dagster.core.storage.event_log",
            "class": "ConsolidatedSqliteEventLogStorage",
            "config": {"base_dir": str(tmp_path / "events")},
        }
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


def tick(instance, cursor: str | None, url: str) -> tuple[str | None, str]:
    sensor = build_alert_sensor(runs_by_default=False)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"alert_webhook": AlertWebhook(url=url)}
    )
    result = sensor.evaluate_tick(context)
    return result.cursor, result.skip_message or ""


def run(pipeline, instance, day: str, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ALL_ASSETS, records.CHECKS],
        resources=pipeline.resources,
        selection=selection or dg.AssetSelection.assets(records.STAGE_KEY, records.SNOWFLAKE_KEY),
        tags={"dagster/asset_partition_range_start": day, "dagster/asset_partition_range_end": day},
        instance=instance,
        raise_on_error=False,
    )


def test_each_cause_reaches_the_receiver_once_even_across_an_outage(pipeline, instance, receiver):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=30)
    cursor, said = tick(instance, None, receiver.url)
    assert "start after" in said and receiver.bodies == []

    assert run(pipeline, instance, DAYS[0]).success  # all checks pass: nothing to tell
    # a check that fails: a row lost in Snowflake, found by the next checks run
    [(victim,)] = pipeline.snowflake('SELECT MIN("ID") FROM "RECORDS"')
    pipeline.snowflake('DELETE FROM "RECORDS" WHERE "ID" = %s', (victim,))
    checks_only = dg.AssetSelection.checks_for_assets(records.SNOWFLAKE_KEY)
    assert run(pipeline, instance, DAYS[0], checks_only).success
    assert run(pipeline, instance, DAYS[0], checks_only).success  # the same failures again: one alert each
    # a schema change applied by a load, and a run that fails for good (a type Snowflake cannot follow)
    pipeline.pg("ALTER TABLE records ADD COLUMN region text")
    assert run(pipeline, instance, DAYS[1]).success
    pipeline.pg("ALTER TABLE records ALTER COLUMN owner_id TYPE text")
    assert not run(pipeline, instance, DAYS[1]).success
    assert not run(pipeline, instance, DAYS[1]).success  # failed again, the same day: not told twice

    receiver.down = True
    cursor, said = tick(instance, cursor, receiver.url)
    assert "answered HTTP 503" in said and "rest waits for the next tick" in said
    assert "secret-token" not in said and receiver.bodies == []

    receiver.down = False
    cursor, said = tick(instance, cursor, receiver.url)
    assert receiver.causes() == [
        ("check failed", "records", DAYS[0]),  # the row count
        ("check failed", "records", DAYS[0]),  # the content fingerprint
        ("check failed", "records", DAYS[0]),  # the manifest against the load
        ("run failed", "records", DAYS[1]),
        ("schema changed", "records", DAYS[1]),
    ], said
    [failure] = [b for b in receiver.bodies if b["datavault"]["cause"] == "run failed"]
    assert failure["text"].startswith("DataVault run failed: ") and "OWNER_ID" in failure["text"]
    [change] = [b for b in receiver.bodies if b["datavault"]["cause"] == "schema changed"]
    assert "added column REGION VARCHAR" in change["text"]
    assert all("secret-token" not in json.dumps(b) for b in receiver.bodies)

    cursor, said = tick(instance, cursor, receiver.url)
    assert len(receiver.bodies) == 5 and "0 alert(s) sent" in said


def test_without_a_webhook_the_sensor_says_so_and_sends_nothing(instance):
    cursor, _ = tick(instance, None, "")
    result = build_alert_sensor(False).evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alert_webhook": AlertWebhook()})
    )
    assert "DATAVAULT_ALERT_WEBHOOK_URL is not set" in result.skip_message


def test_a_missed_freshness_deadline_is_told_once_per_day(instance, receiver):
    from datavault_analytics_tests.dagster_internals import (
        RUNLESS_JOB_NAME,
        RUNLESS_RUN_ID,
        FreshnessState,
        FreshnessStateChange,
    )

    cursor, _ = tick(instance, None, receiver.url)
    changed_at = datetime(2026, 11, 3, 6, 5, tzinfo=UTC).timestamp()  # the 06:00 deadline for 2026-11-02
    for key, old, new in (
        (records.SNOWFLAKE_KEY, FreshnessState.PASS, FreshnessState.FAIL),
        (records.SNOWFLAKE_KEY, FreshnessState.FAIL, FreshnessState.PASS),  # loaded late: not an alert
        (records.SNOWFLAKE_KEY, FreshnessState.PASS, FreshnessState.FAIL),  # the same day again: not twice
        (dg.AssetKey(["elsewhere", "table"]), FreshnessState.PASS, FreshnessState.FAIL),  # not DataVault's
    ):
        event = dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.FRESHNESS_STATE_CHANGE.value,
            job_name=RUNLESS_JOB_NAME,
            event_specific_data=FreshnessStateChange(
                key=key, previous_state=old, new_state=new, state_change_timestamp=changed_at
            ),
        )
        instance.report_dagster_event(event, run_id=RUNLESS_RUN_ID, timestamp=changed_at)
    cursor, said = tick(instance, cursor, receiver.url)
    assert receiver.causes() == [("freshness missed", "records", "2026-11-02")], said
    assert receiver.bodies[0]["text"] == (
        "DataVault freshness missed: records: 2026-11-02 was not loaded into Snowflake by its freshness deadline"
    )
