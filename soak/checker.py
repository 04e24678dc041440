"""The checker: safety sampled while the nemesis works, liveness after the final heal.

Every configured table is checked alike (`CheckedTable`).
Safety: each day read from Snowflake equals some committed version of that day in PostgreSQL (never
partial, never two stagings mixed; compared by the fingerprint over every column), no primary key is
loaded twice, and the canary secret appears nowhere Dagster or the pipeline writes.
Liveness: after the final heal, every day the drift sensor covers equals PostgreSQL; no run is left
queued, starting, started or canceling; no backfill is left running; no pool slot is held; every run that
failed for good has reached the alert receiver.
"""

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg

from datavault_analytics.names import RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.manifest import staged_columns
from datavault_analytics.table.day_window import day_windows
from soak.workload import SourceWriter

UNFINISHED_RUNS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
POOL = "datavault_postgres"
SCAN_GRACE_SECONDS = 120  # a drift scan run unfinished for longer than this is stuck, not scanning


@dataclass
class CheckedTable:
    """One configured table: its source and Snowflake resources, bound to it, and its writer's versions.

    Both sides are compared over the table's columns as the soak began (`columns`), as the writer records its
    versions: the nemesis's migrations add, widen and drop columns of their own, which hold only NULLs."""

    postgres: PostgresResource
    snowflake: SnowflakeLoader
    writer: SourceWriter
    _columns: list | None = None

    @property
    def name(self) -> str:
        return self.postgres.table.name

    @property
    def columns(self) -> list:
        if self._columns is None:
            self._columns = self.postgres.source_columns()
        return self._columns


@dataclass
class Checker:
    tables: list[CheckedTable]
    days: list[str]  # every day with data
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- safety --------------------------------------------------------------------------------------

    def sample(self) -> bool:
        """Compare every day of every table in Snowflake with the versions PostgreSQL has committed; False if
        unreadable."""
        try:
            found = {}
            for table in self.tables:
                found[table.name] = table.snowflake.fingerprints(
                    day_windows(self.days), staged_columns(table.columns)
                )
        except Exception:  # a server the nemesis has down: nothing to read this time
            return False
        self.samples += 1
        for table in self.tables:
            for day, (fingerprint, surplus) in found[table.name].items():
                if surplus:
                    self._violation(
                        f"{table.name} {day}: {surplus} row(s) in Snowflake beyond one per primary key"
                    )
                if fingerprint not in table.writer.versions_of(day):
                    self._violation(
                        f"{table.name} {day}: Snowflake holds {fingerprint}, which no committed version of the day "
                        "in PostgreSQL had (a partial load, or two stagings mixed)"
                    )
        return True

    def start_sampling(self, every_seconds: float = 3.0) -> None:
        def loop() -> None:
            while not self._stop.wait(every_seconds):
                self.sample()

        self._thread = threading.Thread(target=loop, name="checker", daemon=True)
        self._thread.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _violation(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)
            print(f"VIOLATION {text}", flush=True)

    def scan_for_secret(self, secret: str, folders: list[Path], dagster_dsn: str) -> None:
        """The canary must not be in any file under `folders`, nor in Dagster's storage."""
        needle = secret.encode()
        for folder in folders:
            for path in folder.rglob("*"):
                try:
                    if path.is_file() and needle in path.read_bytes():
                        self._violation(f"the canary secret is in {path}")
                except OSError:
                    pass
        with psycopg.connect(dagster_dsn) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ]
            for table in tables:
                hits = conn.execute(
                    f"SELECT count(*) FROM public.{table} t WHERE t::text LIKE %s",  # noqa: S608 - catalog names
                    (f"%{secret}%",),
                ).fetchone()[0]
                if hits:
                    self._violation(f"the canary secret is in {hits} row(s) of Dagster's table {table}")

    # -- liveness ------------------------------------------------------------------------------------

    def unsettled(self, instance: dg.DagsterInstance, covered: list[str]) -> list[str]:
        """What still keeps the system from having converged; empty once it has."""
        left = []
        runs = instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED_RUNS))
        # The drift sensors launch a scan run every few seconds, so one is nearly always running: a scan run
        # is unsettled only once it has been unfinished for longer than any scan here takes.
        now = time.time()
        scanning = {
            r.dagster_run.run_id
            for r in runs
            if r.dagster_run.tags.get("datavault/trigger") == "drift-scan"
            and now - r.create_timestamp.timestamp() < SCAN_GRACE_SECONDS
        }
        runs = [r for r in runs if r.dagster_run.run_id not in scanning]
        if runs:
            now = time.time()
            named = "; ".join(
                f"{r.dagster_run.run_id[:8]} {r.dagster_run.status.value} for "
                f"{now - (r.update_timestamp.timestamp()):.0f} s ({r.dagster_run.tags.get('datavault/trigger') or r.dagster_run.tags.get('dagster/backfill') or 'dg launch'})"
                for r in runs[:5]
            )
            left.append(f"{len(runs)} run(s) unfinished: {named}")
        backfills = [b for b in instance.get_backfills() if b.status.value in ("REQUESTED", "CANCELING")]
        if backfills:
            left.append(f"{len(backfills)} backfill(s) still running")
        storage = instance.event_log_storage
        claimed = (
            storage.get_concurrency_info(POOL).claimed_slots if POOL in storage.get_concurrency_keys() else []
        )
        claimed = [slot for slot in claimed if slot.run_id not in scanning]
        if claimed:
            left.append(f"{len(claimed)} pool slot(s) of {POOL} held")
        for table in self.tables:
            try:
                windows = day_windows(covered)
                source = table.postgres.fingerprints(windows, table.columns)
                target = table.snowflake.fingerprints(windows, staged_columns(table.columns))
            except Exception as error:
                left.append(f"could not compare {table.name}'s days ({type(error).__name__})")
                continue
            differ = [d for d in covered if source[d] != target[d][0]]
            if differ:
                left.append(
                    f"{len(differ)} day(s) of {table.name} differ from PostgreSQL ({', '.join(differ[:5])})"
                )
        return left

    # -- alerts --------------------------------------------------------------------------------------

    def check_alerts(
        self, instance: dg.DagsterInstance, alerts, redelivery_allowed: bool, within_seconds: float
    ):
        """Every run that failed after its retries and was loading a DataVault table is alerted: its table and
        days (one alert per table and days, as the sensor's key) reached the receiver within `within_seconds`
        of convergence, and every "run failed" alert names a run that did fail for good. An alert arrives twice
        only if the daemon was killed between its POST and the sensor's cursor (`redelivery_allowed`: delivery
        is at least once). Returns (expected, received)."""
        expected = {key: run_id for run_id, key in self._failed_for_good(instance).items()}
        deadline = time.monotonic() + within_seconds
        while True:
            received = alerts.alerts("run failed")
            keys = [a["key"] for a in received]
            missing = sorted(set(expected) - set(keys))
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(3)
        for key in missing:
            self._violation(f"no alert for run {expected[key][:8]}, which failed for good ({key})")
        failed = set(self._failed_for_good(instance))
        for alert in received:
            if alert["details"].get("run_id") not in failed:
                self._violation(
                    f"an alert for run {alert['details'].get('run_id')}, which did not fail for good"
                )
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice and not redelivery_allowed:
            self._violation(f"alerted more than once with no daemon crash between: {', '.join(twice)}")
        return len(expected), len(received)

    @staticmethod
    def _failed_for_good(instance: dg.DagsterInstance) -> dict[str, str]:
        """Run id -> the alert key of each failed run that will not be retried and was loading DataVault's
        tables (its planned assets' keys: [system, "datavault", table])."""
        found = {}
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])):
            if run.tags.get("dagster/will_retry") == "true":
                continue
            planned = instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            ).records
            keys = {*(run.asset_selection or ()), *(p.asset_key for p in planned)}
            tables = sorted({k.path[2] for k in keys if len(k.path) == 3 and k.path[1] == "datavault"})
            if not tables:
                continue
            first = run.tags.get(RANGE_START_TAG) or run.tags.get("dagster/partition") or "?"
            last = run.tags.get(RANGE_END_TAG) or first
            days = first if first == last else f"{first}..{last}"
            found[run.run_id] = f"run failed|{','.join(tables)}|{days}"
        return found

    def wait_for_convergence(
        self, instance: dg.DagsterInstance, covered: list[str], within_seconds: float
    ) -> float | None:
        """Seconds until converged, or None (and a violation) if it did not within `within_seconds`."""
        started = time.monotonic()
        left: list[str] = []
        while time.monotonic() - started < within_seconds:
            left = self.unsettled(instance, covered)
            if not left:
                return time.monotonic() - started
            time.sleep(3)
        self._violation(f"not converged {within_seconds:.0f} s after the final heal: {'; '.join(left)}")
        return None
