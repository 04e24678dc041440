"""The soak's checker finds each kind of violation on the real servers: a day that no committed version of
PostgreSQL ever had, a key loaded twice, the canary secret in a file, and a system that has not settled."""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import dagster as dg

from soak.checker import Checker
from soak.workload import SourceWriter

DAYS = ["2026-10-01", "2026-10-02"]


@contextmanager
def checker_for(pipeline) -> Iterator[tuple[Checker, SourceWriter]]:
    with pipeline.configured("postgres", "snowflake_loader") as resources:
        writer = SourceWriter(pipeline.dsn, resources.postgres, DAYS, random.Random(1))
        writer.record_current(DAYS)
        yield Checker(resources.postgres, resources.snowflake_loader, writer, DAYS), writer


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
        assert [v for v in checker.violations if v.startswith(f"{DAYS[0]}: Snowflake holds")]


def test_a_key_loaded_twice_is_a_violation(pipeline):
    pipeline.seed([date.fromisoformat(d) for d in DAYS], rows_per_day=20)
    assert pipeline.materialize(DAYS[0]).success
    with checker_for(pipeline) as (checker, _):
        pipeline.snowflake(
            "INSERT INTO RECORDS SELECT * FROM RECORDS WHERE ID = %s", (pipeline.first_id(DAYS[0]),)
        )
        checker.sample()
        assert f"{DAYS[0]}: 1 row(s) in Snowflake beyond one per primary key" in checker.violations


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
        assert checker.unsettled(instance, DAYS) == [f"1 day(s) differ from PostgreSQL ({DAYS[1]})"]
