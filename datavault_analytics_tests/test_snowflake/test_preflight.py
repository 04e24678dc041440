"""`datavault-analytics snowflake preflight` on the real local servers: it passes where a load is exact,
and fails, saying what to fix, where one would not be."""

import pytest

from datavault_analytics import cli
from datavault_analytics.snowflake import loader as snowflake_module


def preflight(capsys) -> tuple[int, list[str]]:
    code = cli.main(["snowflake", "preflight"])
    return code, capsys.readouterr().out.splitlines()


def line(lines: list[str], check: str) -> str:
    [found] = [text for text in lines if text.startswith(check + " ")]
    return found


def test_the_preflight_passes_on_the_local_stack_and_leaves_nothing_behind(pipeline, capsys):
    code, lines = preflight(capsys)

    assert code == 0, "\n".join(lines)
    for check in (
        "connection",
        "session parameters",
        "target table",
        "stage object",
        "stage listing",
        "round trip",
    ):
        assert " ok " in line(lines, check), line(lines, check)
    assert "role LOADER, warehouse WH, DATAVAULT." in line(lines, "connection")
    assert "TIMEZONE=UTC, LOCK_TIMEOUT=300" in line(lines, "session parameters")
    assert "7 awkward rows" in line(lines, "round trip") and "loaded exactly" in line(lines, "round trip")
    assert lines[-1] == "preflight passed: loads into this account will be exact"
    # Without touching the target table: it was not created; the canary file and table are gone.
    assert pipeline.snowflake("SHOW TABLES") == []
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.bucket, Prefix="analytics/")
    assert listing.get("KeyCount", 0) == 0


def test_the_preflight_fails_for_a_stage_object_that_points_elsewhere(pipeline, capsys):
    pipeline.snowflake(f"CREATE STAGE DATAVAULT_STAGE URL='s3://{pipeline.bucket}/somewhere-else/'")

    code, lines = preflight(capsys)

    assert code == 1
    stage = line(lines, "stage object")
    assert " FAIL " in stage and f"points at s3://{pipeline.bucket}/somewhere-else/, not at " in stage
    assert any("fix: point stage DATAVAULT_STAGE at s3://" in text for text in lines)
    assert not [text for text in lines if text.startswith("round trip")]  # nothing is loaded through it
    assert lines[-1].startswith("preflight FAILED")


def test_the_preflight_fails_when_the_copy_reads_binary_as_text(pipeline, capsys, monkeypatch):
    """Snowflake's default BINARY_AS_TEXT=TRUE: the strict emulator refuses such a COPY, as Snowflake does."""
    monkeypatch.setattr(snowflake_module, "PARQUET_FILE_FORMAT", "TYPE=PARQUET")

    code, lines = preflight(capsys)

    assert code == 1
    round_trip = line(lines, "round trip")
    assert " FAIL " in round_trip and "not a legal hex-encoded value" in round_trip
    assert pipeline.snowflake("SHOW TABLES") == []  # the temporary table is dropped


@pytest.mark.parametrize("variable", ["SNOWFLAKE_PORT"])
def test_the_preflight_fails_clearly_when_snowflake_cannot_be_reached(
    pipeline, capsys, monkeypatch, variable
):
    from datavault_analytics.local_stack.processes import free_port

    monkeypatch.setenv(variable, str(free_port()))
    monkeypatch.setenv("SNOWFLAKE_LOGIN_TIMEOUT", "3")

    code, lines = preflight(capsys)

    assert code == 1
    assert (
        " FAIL " in line(lines, "connection") and "cannot connect (account fakesnow at 127.0.0.1)" in lines[0]
    )
    assert pipeline.env["SNOWFLAKE_PASSWORD"] not in "\n".join(lines)
