"""The drift sensor's scan, evaluated in process on the real servers; its repairs run through the real assets.

test_drift_daemon.py runs the same sensor in the real daemon. Here each scan is one sensor evaluation, so
what it finds, asks for and remembers can be checked scan by scan.
"""

import dataclasses
import uuid
from datetime import date, timedelta

import dagster as dg

from datavault_analytics import names
from datavault_analytics.drift import budget, findings, sensor
from datavault_analytics.drift import scan as drift_scan
from datavault_analytics.drift.plan import ScanState, plan_ranges
from datavault_analytics.names import CONTENT_HASH, RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.stage.io_manager import S3StageIOManager
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics_tests.pipeline_harness import loads_per_day
from datavault_analytics_tests.records import DRIFT_SCAN_JOB, DRIFT_SENSOR, JOB, PARTITIONS, RECORDS, SCHEDULE

DAYS = [date(2025, 3, 1) + timedelta(days=n) for n in range(6)]
KEYS = [d.isoformat() for d in DAYS]


class Scanner:
    """Evaluates the drift scan over `days` as its scan run does, carrying the state from scan to scan."""

    def __init__(self, pipeline, monkeypatch, days=KEYS):
        self.pipeline, self.monkeypatch, self.days = pipeline, monkeypatch, days
        self.cursor: str | None = None
        self.latest: findings.ScanOutcome | None = None

    def scan(self, **settings) -> findings.ScanOutcome:
        """One scan; `drift_X=` sets the table's drift setting X, any other name the shared setting."""
        drift = {name.removeprefix("drift_"): v for name, v in settings.items() if name.startswith("drift_")}
        shared = {name: v for name, v in settings.items() if not name.startswith("drift_")}
        table = dataclasses.replace(
            RECORDS,
            drift=RECORDS.drift.model_copy(update=drift),
            settings=RECORDS.settings.model_copy(update=shared),
        )
        with self.pipeline.configured("postgres", "snowflake", "snowflake_loader") as built:
            self.latest = drift_scan.scan_for_drift(
                self.pipeline.instance,
                table,
                built.postgres,
                built.snowflake_loader,
                self.days,
                ScanState.from_cursor(self.cursor),
            )
        self.cursor = self.latest.cursor
        return self.latest

    @property
    def state(self) -> ScanState:
        return ScanState.from_cursor(self.cursor)

    def evaluations(self) -> list[dg.AssetCheckEvaluation]:
        """The check evaluations the latest scan reports (its run logs them)."""
        return self.latest.evaluations

    def repair(self, result: findings.ScanOutcome, **overrides) -> list[bool]:
        """Runs each requested range as the daemon would launch it: the job's assets, one run per range."""
        saved = self.pipeline.resources
        self.pipeline.with_resources(**overrides)
        try:
            return [
                self.pipeline.materialize(
                    r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG], raise_on_error=False
                ).success
                for r in result.run_requests
            ]
        finally:
            self.pipeline.resources = saved


def ranges(result: findings.ScanOutcome) -> list[tuple[str, str]]:
    return [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in result.run_requests]


def loaded_pipeline(pipeline, rows_per_day: int = 40):
    pipeline.seed(DAYS, rows_per_day=rows_per_day)
    pipeline.materialize(KEYS[0], KEYS[-1])
    return pipeline


def test_every_kind_of_drift_is_found_and_one_reload_makes_each_day_equal(pipeline, monkeypatch):
    loaded_pipeline(pipeline)
    scanner = Scanner(pipeline, monkeypatch)
    quiet = scanner.scan(drift_hash_days_per_scan=6)
    assert quiet.run_requests == [] and len(scanner.evaluations()) == 6
    assert all(e.passed and e.check_name == CONTENT_HASH for e in scanner.evaluations())

    erased, bumped, silent, backdated = KEYS[0], KEYS[1], KEYS[2], KEYS[4]
    pipeline.drift(erased, bumped, silent, backdated)

    found = scanner.scan(drift_hash_days_per_scan=6, drift_merge_gap_days=0)
    assert ranges(found) == [(erased, silent), (backdated, backdated)]
    # The cheap tier found three; the content tier verified the other three, and found the silent rewrite.
    failed = [e.partition for e in scanner.evaluations() if not e.passed]
    assert failed == [silent]
    assert sorted(e.partition for e in scanner.evaluations()) == sorted([silent, KEYS[3], KEYS[5]])
    assert set(scanner.state.repairs) == {erased, bumped, silent, backdated}

    assert scanner.repair(found) == [True, True]
    after = scanner.scan(drift_hash_days_per_scan=1, drift_merge_gap_days=0)
    # The day found different by content is verified again first, and is equal now.
    assert after.run_requests == []
    assert [(e.partition, e.passed) for e in scanner.evaluations()] == [(silent, True)]
    assert scanner.state.repairs == {} and scanner.state.content_drifted == {}
    assert all(day.matches for day in pipeline.reconcile(KEYS))
    assert loads_per_day(pipeline.instance) == {
        k: 2 if k in (erased, bumped, silent, backdated) else 1 for k in KEYS
    }

    # Converged: later scans, by count and by content, ask for nothing.
    for _ in range(3):
        assert scanner.scan(drift_hash_days_per_scan=2).run_requests == []
    assert loads_per_day(pipeline.instance) == {
        k: 2 if k in (erased, bumped, silent, backdated) else 1 for k in KEYS
    }


def test_a_quiet_scan_writes_an_event_only_per_day_it_verified_by_content(pipeline, monkeypatch):
    loaded_pipeline(pipeline, rows_per_day=10)
    scanner = Scanner(pipeline, monkeypatch)
    scanner.scan(drift_hash_days_per_scan=0)
    assert scanner.evaluations() == []
    # Two days per scan, the least recently verified next: the round covers all six in three scans.
    rounds = []
    for _ in range(4):
        scanner.scan(drift_hash_days_per_scan=2)
        rounds.append([e.partition for e in scanner.evaluations()])
    assert rounds == [KEYS[0:2], KEYS[2:4], KEYS[4:6], KEYS[0:2]]
    assert scanner.state.repairs == {}


def test_many_drifted_days_become_a_few_runs_and_the_rest_wait_for_the_next_scan(pipeline, monkeypatch):
    days = [date(2025, 1, 1) + timedelta(days=n) for n in range(40)]
    pipeline.seed(days, rows_per_day=2)  # never loaded: every day differs
    scanner = Scanner(pipeline, monkeypatch, [d.isoformat() for d in days])
    result = scanner.scan(drift_hash_days_per_scan=0, drift_runs_per_scan=4)
    assert ranges(result) == [("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-09")]
    assert len(scanner.state.repairs) == 40

    limited = scanner.scan(drift_hash_days_per_scan=0, drift_runs_per_scan=1)
    assert ranges(limited) == [("2025-01-01", "2025-01-31")]


def test_plan_ranges_merges_short_gaps_caps_run_length_and_defers_the_rest():
    scattered = [(date(2025, 1, 1) + timedelta(days=10 * n)).isoformat() for n in range(20)]
    plan = plan_ranges(scattered, max_gap_days=7, max_days_per_run=31, max_runs=4)
    assert plan.ranges == [(d, d) for d in scattered[:4]] and plan.waiting == scattered[4:]
    merged = plan_ranges(scattered, max_gap_days=9, max_days_per_run=31, max_runs=4)
    assert merged.ranges[0] == ("2025-01-01", "2025-01-31") and len(merged.ranges) == 4
    assert plan_ranges([], 7, 31, 4).ranges == []
    # A day being loaded, or given up on, is never reloaded as a gap between two drifted days.
    around = plan_ranges(["2025-01-01", "2025-01-04"], 7, 31, 4, avoid=["2025-01-02"])
    assert around.ranges == [("2025-01-01", "2025-01-01"), ("2025-01-04", "2025-01-04")]


def test_days_being_loaded_are_not_requested_again(pipeline, monkeypatch):
    pipeline.seed(DAYS[:3], rows_per_day=2)
    started_run(pipeline.instance, {RANGE_START_TAG: KEYS[0], RANGE_END_TAG: KEYS[1]})
    scanner = Scanner(pipeline, monkeypatch, KEYS[:3])
    assert ranges(scanner.scan(drift_hash_days_per_scan=0)) == [(KEYS[2], KEYS[2])]
    assert set(scanner.state.repairs) == {KEYS[2]}


def test_a_day_that_keeps_failing_to_reload_is_reported_once_and_left_alone_until_it_changes(
    pipeline, monkeypatch
):
    loaded_pipeline(pipeline, rows_per_day=10)
    day = KEYS[0]
    pipeline.pg("DELETE FROM records WHERE id = %s", (pipeline.first_id(day),))
    # Every reload fails: the stage's bucket is gone.
    broken = S3StageIOManager(
        stage=S3Stage(s3=pipeline.resources["s3"], stage_uri="s3://no-such-bucket-here/analytics"),
        locks=pipeline.resources["partition_locks"],
    )
    scanner = Scanner(pipeline, monkeypatch, KEYS[:1])
    for attempt in range(3):
        result = scanner.scan(drift_hash_days_per_scan=0, drift_max_repairs=3)
        assert ranges(result) == [(day, day)], attempt
        assert scanner.repair(result, s3_stage_io_manager=broken) == [False]

    given_up = scanner.scan(drift_hash_days_per_scan=0, drift_max_repairs=3)
    assert given_up.run_requests == []
    [event] = scanner.evaluations()
    assert (event.partition, event.passed, event.check_name) == (day, False, CONTENT_HASH)
    assert "after 3 reloads in a row" in event.description
    # Reported once; not retried, not reported again.
    quiet = scanner.scan(drift_hash_days_per_scan=0, drift_max_repairs=3)
    assert quiet.run_requests == [] and scanner.evaluations() == []

    pipeline.pg("DELETE FROM records WHERE id = %s", (pipeline.first_id(day),))
    # Changed again in PostgreSQL: a new chance, and this time the reload works.
    again = scanner.scan(drift_hash_days_per_scan=0, drift_max_repairs=3)
    assert ranges(again) == [(day, day)]
    assert scanner.repair(again) == [True]
    assert scanner.scan(drift_hash_days_per_scan=1).run_requests == [] and scanner.state.repairs == {}


def test_the_sensor_is_defined_to_launch_scans_and_repairs_and_stays_off_locally():
    sensor = DRIFT_SENSOR
    assert sensor.name == "datavault_records_drift_sensor"
    assert RECORDS.drift.scan_seconds == 6 * 3600 and sensor.minimum_interval_seconds == 30
    assert {j.name for j in sensor.jobs} == {JOB.name, "datavault_records_drift_scan"}
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_the_days_of_the_schedules_latest_run_are_scanned_once_that_run_has_ended(pipeline):
    """A scheduled run that failed is repaired by the drift sensor: its run retry may never be launched."""
    instance = pipeline.instance
    yesterday = PARTITIONS.get_last_partition_key()
    window = [(date.fromisoformat(yesterday) - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert not set(window) & set(drift_scan.scanned_days(RECORDS, instance))  # the schedule's, for now

    tags = {
        "dagster/schedule_name": SCHEDULE.name,
        RANGE_START_TAG: window[0],
        RANGE_END_TAG: window[-1],
    }
    run = started_run(instance, tags)
    assert not set(window) & set(drift_scan.scanned_days(RECORDS, instance))  # still loading them
    instance.report_run_failed(instance.get_run_by_id(run.run_id), "killed")
    scanned = drift_scan.scanned_days(RECORDS, instance)
    assert scanned[-3:] == window and len(scanned) == len(set(scanned))


# -- the sensor decides, the scan run measures -------------------------------------------------------


def tick(pipeline, cursor: str | None, sensor=DRIFT_SENSOR) -> dg.SensorResult:
    """One evaluation of the drift sensor itself, on the pipeline's instance."""
    result = sensor(dg.build_sensor_context(instance=pipeline.instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult), result
    return result


@dataclasses.dataclass
class Budgeted:
    sensor: dg.SensorDefinition
    scan_job: dg.JobDefinition


def with_budget(seconds_per_hour: float) -> Budgeted:
    """records' sensor and scan job, built with DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR=`seconds_per_hour`."""
    table = dataclasses.replace(
        RECORDS,
        settings=RECORDS.settings.model_copy(update={"drift_budget_seconds_per_hour": seconds_per_hour}),
    )
    scan_job = drift_scan.build_drift_scan_job(table)
    return Budgeted(sensor.build_drift_sensor(table, JOB, scan_job), scan_job)


def started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    """A run of the daily job that has started and not ended, as the instance records one."""
    return instance.add_run(
        dg.DagsterRun(
            job_name=JOB.name, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED, tags=tags
        )
    )


def reason(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def launch(pipeline, request: dg.RunRequest, scan_job=DRIFT_SCAN_JOB) -> dg.ExecuteInProcessResult:
    """Runs a requested scan as the daemon would launch it: its job, its config, its run key."""
    return scan_job.execute_in_process(
        run_config=request.run_config,
        resources=pipeline.resources,
        instance=pipeline.instance,
        tags={**request.tags, "dagster/run_key": request.run_key},
        raise_on_error=False,
    )


def test_the_sensor_launches_a_scan_run_then_the_repairs_it_found(pipeline, monkeypatch):
    monkeypatch.setattr(drift_scan, "scanned_days", lambda table, instance=None: KEYS)
    loaded_pipeline(pipeline, rows_per_day=10)
    pipeline.pg("DELETE FROM records WHERE id = %s", (pipeline.first_id(KEYS[2]),))

    # The sensor reads only Dagster's instance: it takes no resource, so a tick cannot reach DataVault.
    assert DRIFT_SENSOR.required_resource_keys == set()
    first = tick(pipeline, None)
    [scan_request] = first.run_requests
    assert (
        scan_request.job_name == DRIFT_SCAN_JOB.name
        and scan_request.tags["datavault/trigger"] == "drift-scan"
    )
    waiting = tick(pipeline, first.cursor)  # its run was not launched yet
    assert waiting.run_requests == [] and "Waiting for the scan run" in reason(waiting)

    scan = launch(pipeline, scan_request)
    assert scan.success
    # The scan run holds the evaluations and an observation of the source with its findings.
    evaluations = [
        e.event_specific_data for e in scan.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert evaluations and all(e.check_name == CONTENT_HASH for e in evaluations)
    [observation] = scan.asset_observations_for_node(f"scan_{RECORDS.name}_for_drift")
    assert observation.asset_key == RECORDS.source_key and "1 differ" in observation.description
    seconds = float(pipeline.instance.get_run_by_id(scan.run_id).tags[names.SCAN_SECONDS_TAG])
    assert 0 < seconds < 120

    repaired = tick(pipeline, waiting.cursor)
    [repair] = repaired.run_requests
    assert repair.job_name == JOB.name
    assert (repair.tags[RANGE_START_TAG], repair.tags[RANGE_END_TAG]) == (KEYS[2], KEYS[2])
    assert ScanState.from_cursor(repaired.cursor).scans == 1
    assert set(ScanState.from_cursor(repaired.cursor).repairs) == {KEYS[2]}

    # The next scan is not due for scan_seconds (6 hours): the following ticks launch nothing.
    quiet = tick(pipeline, repaired.cursor)
    assert quiet.run_requests == [] and "not due" in reason(quiet)


def test_a_failed_scan_run_is_reported_and_the_next_scan_starts_when_due(pipeline, monkeypatch):
    monkeypatch.setattr(drift_scan, "scanned_days", lambda table, instance=None: KEYS)
    first = tick(pipeline, None)
    [scan_request] = first.run_requests
    broken = PostgresResource(dsn="postgresql://nobody@127.0.0.1:9/x")
    with monkeypatch.context() as patch:
        patch.setitem(pipeline.resources, "postgres", broken)
        assert not launch(pipeline, scan_request).success
    after = tick(pipeline, first.cursor)
    assert after.run_requests == [] and "ended FAILURE" in reason(after)
    state = ScanState.from_cursor(after.cursor)
    assert state.scan_run_key is None and state.scans == 0
    state.last_scan_at -= RECORDS.drift.scan_seconds  # time passes
    [again] = tick(pipeline, state.model_dump_json()).run_requests
    assert again.job_name == DRIFT_SCAN_JOB.name and again.run_key != scan_request.run_key


def test_every_tables_scans_share_one_budget(pipeline, monkeypatch):
    """A scan starts only while the scans of all tables took less than the budget in the past hour."""
    from datavault_analytics.components.datavault_table import configured_table
    from datavault_analytics.pipeline.job import build_table_job

    monkeypatch.setattr(drift_scan, "scanned_days", lambda table, instance=None: KEYS)
    log = configured_table("retrieval_log")
    log_scan = drift_scan.build_drift_scan_job(log)
    log_sensor = sensor.build_drift_sensor(log, build_table_job(log), log_scan)
    pipeline.seed_retrievals(DAYS, rows_per_day=5)
    [request] = tick(pipeline, None, log_sensor).run_requests
    assert launch(pipeline, request, log_scan).success
    spent = budget.budget_spent(pipeline.instance)
    assert spent > 0

    spent_budget = with_budget(spent)
    blocked = tick(
        pipeline, None, spent_budget.sensor
    )  # records' first scan: retrieval_log's spent the budget
    assert blocked.run_requests == [] and "The drift budget is spent" in reason(blocked)
    assert "DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR" in reason(blocked)
    # A scan run launched before the budget ran out (by another table's sensor, say) does not scan either.
    queued = dg.RunRequest(
        run_key="late", run_config={}, tags={"datavault/trigger": "drift-scan", "datavault/table": "records"}
    )
    late = launch(pipeline, queued, spent_budget.scan_job)
    assert late.success and late.asset_observations_for_node(f"scan_{RECORDS.name}_for_drift") == []

    [allowed] = tick(pipeline, None, with_budget(spent * 2 + 60).sensor).run_requests
    assert allowed.job_name == DRIFT_SCAN_JOB.name


def test_a_repair_for_a_day_that_a_run_started_loading_since_the_scan_waits_uncounted(pipeline, monkeypatch):
    monkeypatch.setattr(drift_scan, "scanned_days", lambda table, instance=None: KEYS)
    loaded_pipeline(pipeline, rows_per_day=10)
    pipeline.pg("DELETE FROM records WHERE id = %s", (pipeline.first_id(KEYS[2]),))
    first = tick(pipeline, None)
    [scan_request] = first.run_requests
    assert launch(pipeline, scan_request).success
    # Between the scan and the sensor's next tick, an engineer starts a run of that day.
    started_run(pipeline.instance, {RANGE_START_TAG: KEYS[2], RANGE_END_TAG: KEYS[2]})
    after = tick(pipeline, first.cursor)
    assert after.run_requests == []
    assert ScanState.from_cursor(after.cursor).repairs[KEYS[2]].attempts == 0


def test_a_source_that_lost_its_history_is_not_copied_and_is_told(pipeline, monkeypatch):
    """PostgreSQL suddenly without most of its days (a TRUNCATE here, as a restore from an old backup or a DSN
    pointed at an empty replica would look): the scan reloads none of them, Snowflake keeps every row, and a
    failed check says what happened and how to reload them if it was meant. A few emptied days are erasures,
    and are copied as before."""
    loaded_pipeline(pipeline, rows_per_day=20)
    before = {k: pipeline.snowflake_rows(k) for k in KEYS}
    scanner = Scanner(pipeline, monkeypatch)
    pipeline.pg("DELETE FROM records WHERE created_at >= %s AND created_at < %s", (DAYS[0], DAYS[4]))

    held = scanner.scan(drift_hash_days_per_scan=0, drift_max_emptied_days=3)
    assert held.run_requests == []
    [told] = [e for e in scanner.evaluations() if not e.passed]
    assert told.check_name == "row_count_matches_postgres" and told.partition == KEYS[3]
    assert "PostgreSQL has no rows for 4 days that Snowflake holds" in told.description
    assert f"make backfill START={KEYS[0]} END={KEYS[3]}" in told.description
    assert "held back as lost history" in held.findings.summary
    assert {k: pipeline.snowflake_rows(k) for k in KEYS} == before  # nothing was copied

    # Allowed more at once (an engineer who meant it), the same scan reloads them.
    allowed = scanner.scan(drift_hash_days_per_scan=0, drift_max_emptied_days=4, drift_merge_gap_days=0)
    assert ranges(allowed) == [(KEYS[0], KEYS[3])]
    assert scanner.repair(allowed) == [True]
    assert all(pipeline.snowflake_rows(k) == [] for k in KEYS[:4])
    assert all(day.matches for day in pipeline.reconcile(KEYS))
