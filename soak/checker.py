"""The checker: safety sampled while the nemesis works, liveness after the final heal.

Safety: each day read from Snowflake equals some committed version of that day in PostgreSQL (never
partial, never two stagings mixed; compared by the fingerprint over every column), no primary key is
loaded twice, and the canary secret appears nowhere Dagster or the pipeline writes.
Liveness: after the final heal, every day the drift sensor covers equals PostgreSQL; no run is left
queued, starting, started or canceling; no backfill is left running; no pool slot is held.
"""

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg

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
class Checker:
    postgres: PostgresResource
    snowflake: SnowflakeLoader
    writer: SourceWriter
    days: list[str]  # every day with data
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _columns: list | None = None

    # -- safety --------------------------------------------------------------------------------------

    def sample(self) -> bool:
        """Compare every day in Snowflake with the versions PostgreSQL has committed; False if unreadable."""
        try:
            if self._columns is None:
                self._columns = staged_columns(self.postgres.source_columns())
            found = self.snowflake.fingerprints(day_windows(self.days), self._columns)
        except Exception:  # a server the nemesis has down: nothing to read this time
            return False
        self.samples += 1
        for day, (fingerprint, surplus) in found.items():
            if surplus:
                self._violation(f"{day}: {surplus} row(s) in Snowflake beyond one per primary key")
            if fingerprint not in self.writer.versions_of(day):
                self._violation(
                    f"{day}: Snowflake holds {fingerprint}, which no committed version of the day in PostgreSQL "
                    "had (a partial load, or two stagings mixed)"
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
        try:
            columns = self.postgres.source_columns()
            windows = day_windows(covered)
            source = self.postgres.fingerprints(windows, columns)
            target = self.snowflake.fingerprints(windows, staged_columns(columns))
        except Exception as error:
            return [*left, f"could not compare the days ({type(error).__name__})"]
        differ = [d for d in covered if source[d] != target[d][0]]
        if differ:
            left.append(f"{len(differ)} day(s) differ from PostgreSQL ({', '.join(differ[:5])})")
        return left

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
