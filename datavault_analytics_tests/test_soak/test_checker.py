"""The soak's checker finds each kind of violation on the real servers: a day that no committed version of
PostgreSQL ever had, a key loaded twice, the canary secret in a file, and a system that has not settled."""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import dagster as dg
import pytest

from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.table.pipeline import TablePipeline
from soak import types_table
from soak.checker import CheckedTable, Checker
from soak.workload import OPERATIONS, SourceWriter

DAYS = ["2026-10-01", "2026-10-02"]


@contextmanager
def checker_for(pipeline, table: str | TablePipeline = "records") -> Iterator[tuple[Checker, SourceWriter]]:
    table = configured_table(table) if isinstance(table, str) else table
    with pipeline.configured("postgres", "snowflake_loader", table=table) as resources:
        writer = SourceWriter(pipeline.dsn, resources.postgres, DAYS, random.Random(1))
        writer.record_current(DAYS)
        yield Checker([CheckedTable(resources.postgres, resources.snowflake_loader, writer)], DAYS), writer


def test_a_loaded_day_and_a_day_not_yet_loaded_are_both_committed_versions(pipeline):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=20)
    assert pipeline.materialize(DAYS[0]).success
    with checker_for(pipeline) as (checker, _):
        assert checker.sample()
        assert checker.violations == []  # DAYS[1] is empty in Snowflake: the version before it was seeded


def test_every_version_the_writer_committed_is_allowed_and_nothing_else(pipeline):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=20)
    assert pipeline.materialize(DAYS[0]).success
    with checker_for(pipeline) as (checker, writer):
        for _ in range(6):  # the loaded version stays a committed one, whatever comes after it
            writer.step()
        assert checker.sample() and checker.violations == []

        # A partial day: one of its rows is gone from Snowflake alone.
        pipeline.snowflake("DELETE FROM RECORDS WHERE ID = %s", (pipeline.first_id(DAYS[0]),))
        assert checker.sample()
        assert [v for v in checker.violations if v.startswith(f"records {DAYS[0]}: Snowflake holds")]


def test_the_audit_logs_writer_commits_versions_a_partial_day_is_not_among(pipeline):
    """The soak's workload on retrieval_log (append-only, with purges): late rows, erasures and today's rows,
    each a committed version; a day with one of its rows gone from Snowflake alone is a violation."""
    log = configured_table("retrieval_log")
    pipeline.seed_retrievals([date.fromisoformat(d) for d in DAYS], rows_per_day=20)
    assert pipeline.materialize(DAYS[0], table=log).success
    with checker_for(pipeline, "retrieval_log") as (checker, writer):
        for _ in range(9):
            assert "failed" not in writer.step()
        assert {op.split()[1] for op in writer.done} <= {"late_row", "erasure", "new_row"}
        assert checker.sample() and checker.violations == []
        pipeline.snowflake(
            "DELETE FROM RETRIEVAL_LOG WHERE ID = (SELECT min(ID) FROM RETRIEVAL_LOG WHERE RETRIEVED_AT >= %s)",
            (DAYS[0],),
        )
        assert checker.sample()
        assert [v for v in checker.violations if v.startswith(f"retrieval_log {DAYS[0]}: Snowflake holds")]


def test_the_types_tables_writer_commits_versions_its_days_load_exact_and_a_changed_value_is_seen(pipeline):
    """The soak's table of the new types (soak/types_table.py): seeded, loaded, changed by its writer (late
    rows, erasures, updates with and without updated_at, today's rows), each change a committed version and
    the day loaded again equal to PostgreSQL; one interval changed in Snowflake alone is a violation."""
    types = configured_table(types_table.TABLE, defs_folder=types_table.SOAK_DEFS_FOLDER)
    types_table.create(pipeline.dsn)
    types_table.seed(pipeline.dsn, [date.fromisoformat(d) for d in DAYS], rows_per_day=20)
    assert pipeline.materialize(DAYS[0], table=types).success
    with checker_for(pipeline, types) as (checker, writer):
        for _ in range(15):
            assert "failed" not in writer.step()
        assert {op.split()[1] for op in writer.done} <= set(OPERATIONS[types_table.TABLE])
        assert len(writer.done) >= 3
        assert checker.sample() and checker.violations == []
        assert pipeline.materialize(DAYS[0], table=types).success  # the changed day, loaded again
        assert checker.sample() and checker.violations == []
        pipeline.snowflake(
            "UPDATE SOAK_TYPES SET SPAN = 'P1D' WHERE ID = (SELECT min(ID) FROM SOAK_TYPES WHERE CREATED_AT < %s)",
            (DAYS[1],),
        )
        assert checker.sample()
        assert [v for v in checker.violations if v.startswith(f"soak_types {DAYS[0]}: Snowflake holds")]


def test_a_key_loaded_twice_is_a_violation(pipeline):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=20)
    assert pipeline.materialize(DAYS[0]).success
    with checker_for(pipeline) as (checker, _):
        pipeline.snowflake(
            "INSERT INTO RECORDS SELECT * FROM RECORDS WHERE ID = %s", (pipeline.first_id(DAYS[0]),)
        )
        checker.sample()
        assert f"records {DAYS[0]}: 1 row(s) in Snowflake beyond one per primary key" in checker.violations


def test_the_canary_in_any_file_is_a_violation(pipeline, pg_server, tmp_path):
    with checker_for(pipeline) as (checker, _):
        (tmp_path / "deep" / "er").mkdir(parents=True)
        (tmp_path / "deep" / "er" / "compute.log").write_text("connecting with password canary-123abc\n")
        checker.scan_for_secret("canary-123abc", [tmp_path], pg_server.dsn("postgres"))
        assert [v for v in checker.violations if "compute.log" in v]
        checker.violations.clear()
        checker.scan_for_secret("canary-456def", [tmp_path], pg_server.dsn("postgres"))
        assert checker.violations == []


def test_a_day_that_differs_keeps_the_system_unsettled(pipeline):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=20)
    assert pipeline.materialize(DAYS[0]).success
    with checker_for(pipeline) as (checker, _):
        instance = dg.DagsterInstance.ephemeral()
        assert checker.unsettled(instance, [DAYS[0]]) == []
        assert checker.unsettled(instance, DAYS) == [
            f"1 day(s) of records differ from PostgreSQL ({DAYS[1]})"
        ]


def test_a_run_failed_for_good_and_not_alerted_or_alerted_twice_is_a_violation(pipeline):
    """The alert condition, with the pipeline's own webhook client POSTing to the soak's receiver: a run that
    failed for good must be alerted, once (twice only across a daemon crash); an alert for a run that did not
    fail for good is false."""
    from datavault_analytics.alerts.webhook import Alert, AlertWebhook
    from datavault_analytics.errors import AlertDeliveryError
    from soak.alerts import AlertReceiver

    daily = dg.DailyPartitionsDefinition(start_date="2026-10-01")

    @dg.asset(key=["s3", "datavault", "records"], partitions_def=daily)
    def staged() -> None:
        raise RuntimeError("the stage step failed")

    @dg.asset(key=["s3", "datavault", "other"], partitions_def=daily)
    def other() -> None:
        pass

    receiver = AlertReceiver("hooks/secret").start()
    with dg.DagsterInstance.ephemeral() as instance, checker_for(pipeline) as (checker, _):
        failed = dg.materialize([staged], instance=instance, partition_key=DAYS[0], raise_on_error=False)
        succeeded = dg.materialize([other], instance=instance, partition_key=DAYS[0])
        assert checker.check_alerts(instance, receiver, False, within_seconds=0) == (1, 0)
        assert checker.violations == [
            f"no alert for run {failed.run_id[:8]}, which failed for good (run failed|records|{DAYS[0]})"
        ]

        webhook = AlertWebhook(url=receiver.url)
        alert = Alert(
            "run failed",
            "records",
            DAYS[0],
            "failed",
            f"run failed|records|{DAYS[0]}",
            {"run_id": failed.run_id},
        )
        webhook.send(alert)
        checker.violations.clear()
        assert checker.check_alerts(instance, receiver, False, within_seconds=0) == (1, 1)
        assert checker.violations == []

        webhook.send(alert)  # delivered twice
        checker.check_alerts(instance, receiver, True, within_seconds=0)
        assert checker.violations == []  # allowed across a daemon crash
        checker.check_alerts(instance, receiver, False, within_seconds=0)
        assert checker.violations == [f"alerted more than once with no daemon crash between: {alert.key}"]

        checker.violations.clear()
        receiver.take_down()
        false_alarm = Alert(
            "run failed", "other", DAYS[0], "x", "run failed|other|x", {"run_id": succeeded.run_id}
        )
        with pytest.raises(AlertDeliveryError, match="HTTP 503"):  # refused: the sensor sends it again later
            webhook.send(false_alarm)
        assert receiver.refused == 1 and len(receiver.received) == 2
        receiver.bring_up()
        webhook.send(false_alarm)
        checker.check_alerts(instance, receiver, True, within_seconds=0)
        assert checker.violations == [f"an alert for run {succeeded.run_id}, which did not fail for good"]
    receiver.stop()
