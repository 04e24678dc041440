"""S3 that stalls longer than PostgreSQL lets a session sit idle in its transaction: the day's read waits for
it, on its one snapshot, and the run goes on when S3 does."""

import threading

from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics_tests.test_faults.conftest import DAY, DAY_DATE
from datavault_analytics_tests.test_faults.faultkit import HttpProxy

IDLE_TIMEOUT_S = 2  # PostgreSQL's idle_in_transaction_session_timeout for our sessions, here
STALL_S = 8


def test_a_stall_longer_than_the_idle_timeout_neither_ends_the_read_nor_restarts_the_day(
    fault_pipeline, monkeypatch
):
    pipeline = fault_pipeline
    pipeline.seed([DAY_DATE], rows_per_day=100_000)  # about 40 MB: more than the extract reads ahead
    with HttpProxy(pipeline.s3_endpoint) as s3:
        # The stage's first upload of a part is held: its writer, then the queue of batches, fill up.
        gate = s3.hold(lambda r: r.method in ("PUT", "POST") and f"dt={DAY}/part-" in r.target)
        monkeypatch.setenv("DATAVAULT_S3_ENDPOINT_URL", s3.url)
        monkeypatch.setenv("DATAVAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", str(IDLE_TIMEOUT_S))
        pipeline.resources = build_resources(Settings.from_environment("prod"))

        def release_after_the_stall():
            gate.arrived.wait(120)
            threading.Event().wait(STALL_S)
            gate.release()

        releaser = threading.Thread(target=release_after_the_stall, daemon=True)
        releaser.start()
        result = pipeline.materialize(DAY, raise_on_error=False)
        releaser.join(5)

    assert gate.arrived.is_set(), "the stage never wrote to S3"
    failures = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]
    assert result.success, failures
    assert not any(e.is_step_up_for_retry for e in result.all_events), "the day's read was restarted"
    [day] = pipeline.reconcile([DAY])
    assert day.matches and day.snowflake_rows == 100_000, day.difference()
