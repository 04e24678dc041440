"""Staged files are deleted once their day is loaded, after a configurable retention.

A day's load is Dagster's record of it (the Snowflake asset's latest materialization); the first load that
runs DATAVAULT_STAGE_RETENTION_HOURS after that deletes the day's staged files, the manifest first. A day
another run holds, or one re-staged since its load, is left alone.
"""

from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest

from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics_tests import records

DAY, NEXT = "2026-11-01", "2026-11-02"


def staged(pipeline, day: str) -> list[str]:
    """The day's staged object names, a part's staging id left out."""
    names = [key.rsplit("/", 1)[1] for key in pipeline.stage_keys(day)]
    return sorted(name if name == "_manifest.json" else name[:10] + ".parquet" for name in names)


@pytest.fixture
def retention(pipeline, monkeypatch):
    """retention(hours) rebuilds the pipeline's resources with DATAVAULT_STAGE_RETENTION_HOURS=hours."""

    def set_hours(hours: str):
        monkeypatch.setenv("DATAVAULT_STAGE_RETENTION_HOURS", hours)
        monkeypatch.setenv("DATAVAULT_LOCK_WAIT_SECONDS", "60")
        pipeline.resources = build_resources(Settings.from_environment("prod"))
        pipeline.seed([date(2026, 11, 1), date(2026, 11, 2)], rows_per_day=30)
        return pipeline

    return set_hours


@contextmanager
def retention_and_locks(pipeline):
    """(the stage retention, the partition locks), resolved."""
    with pipeline.configured("stage_retention", "partition_locks") as r:
        yield r.stage_retention, r.partition_locks


def purge(retention, pipeline, now):
    return retention.purge_expired(pipeline.instance, records.SNOWFLAKE_KEY, holder="test purge", now=now)


def test_with_no_retention_a_day_is_deleted_by_the_next_load(retention):
    pipeline = retention("0")
    result = pipeline.materialize(DAY)
    # Kept through the run that loaded it (its checks read the manifest).
    assert staged(pipeline, DAY) == ["_manifest.json", "part-00000.parquet"]
    assert result.success

    result = pipeline.materialize(NEXT)

    assert result.success
    assert staged(pipeline, DAY) == []
    assert staged(pipeline, NEXT) == ["_manifest.json", "part-00000.parquet"]
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)  # the load itself is untouched
    # Loading the deleted day again says what to do; staging it again works.
    again = pipeline.materialize(DAY, selection=[records.SNOWFLAKE_KEY], raise_on_error=False)
    assert not again.success
    assert any(
        f"Partition {DAY} has no stage manifest" in e.step_failure_data.error.to_string()
        for e in again.all_events
        if e.is_step_failure
    )
    assert pipeline.materialize(DAY).success
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)


def test_staged_files_stay_for_the_retention_then_go(retention):
    pipeline = retention("1")
    assert pipeline.materialize(DAY).success
    assert pipeline.materialize(NEXT).success
    assert staged(pipeline, DAY) == ["_manifest.json", "part-00000.parquet"]  # loaded minutes ago: kept
    now = datetime.now(UTC)

    with retention_and_locks(pipeline) as (stage_retention, _):
        assert purge(stage_retention, pipeline, now + timedelta(minutes=50)) == []
        assert purge(stage_retention, pipeline, now + timedelta(hours=1, minutes=5)) == [DAY, NEXT]

    assert staged(pipeline, DAY) == [] and staged(pipeline, NEXT) == []
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.bucket).get("KeyCount") == 0


def test_a_day_another_run_holds_or_restaged_since_its_load_is_kept(retention):
    pipeline = retention("1")
    assert pipeline.materialize(DAY).success
    assert pipeline.materialize(NEXT).success
    assert pipeline.materialize(NEXT, selection=[records.STAGE_KEY]).success  # re-staged, not loaded yet
    later = datetime.now(UTC) + timedelta(hours=2)

    with retention_and_locks(pipeline) as (stage_retention, locks):
        with locks.hold(DAY, holder="another run"):
            assert purge(stage_retention, pipeline, later) == []
        assert staged(pipeline, DAY) == ["_manifest.json", "part-00000.parquet"]

        assert purge(stage_retention, pipeline, later) == [DAY]
    assert staged(pipeline, DAY) == []
    assert staged(pipeline, NEXT) == ["_manifest.json", "part-00000.parquet"]  # waits for its load


def test_retention_is_configured_from_the_environment(pipeline, monkeypatch):
    from datavault_analytics.errors import ConfigurationError

    for value, hours in (("", 72), ("0", 0), ("12.5", 12.5), ("none", None)):
        monkeypatch.setenv("DATAVAULT_STAGE_RETENTION_HOURS", value)
        assert build_resources(Settings.from_environment("prod"))["stage_retention"].retention_hours == hours
    monkeypatch.setenv("DATAVAULT_STAGE_RETENTION_HOURS", "a week")
    with pytest.raises(ConfigurationError, match="DATAVAULT_STAGE_RETENTION_HOURS='a week'"):
        Settings.from_environment("prod")
