"""What changes while the soak runs: DataVault's own writes to every configured table, and an engineer's backfills.

`SourceWriter` is DataVault's backend: the only writer of the source, one transaction at a time. Inside each
transaction, after its changes and before COMMIT, it records the changed day's fingerprint (the pipeline's
own SQL) as a version of that day. So `versions[day]` holds every state the day could have committed in
(one whose COMMIT failed included), which is what the checker compares Snowflake against.

`Engineer` launches backfills as people do: through the webserver's GraphQL (a backfill run by the daemon)
and with `datavault-analytics backfill` (runs in the engineer's own `dg launch` processes).
"""

import json
import random
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.postgres.sessions import PINNED_PARAMETERS
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics.verification.fingerprint import EMPTY, Fingerprint
from soak import types_table
from soak.system import Process

OPERATIONS = {  # by table: what DataVault's backend does to it
    "records": ("late_row", "erasure", "reencrypt_bumped", "reencrypt_silent", "backdated_insert", "new_row"),
    # the audit log is append-only, but a retention purge or an erasure request deletes from it
    "retrieval_log": ("late_row", "erasure", "new_row"),
    types_table.TABLE: ("late_row", "erasure", "update_bumped", "update_silent", "new_row"),
}
ASSET_KEYS = [{"path": ["s3", "datavault", "records"]}, {"path": ["snowflake", "datavault", "records"]}]
LAUNCH_BACKFILL = """
mutation ($partitions: [String!]!, $assets: [AssetKeyInput!]!) {
  launchPartitionBackfill(backfillParams: {partitionNames: $partitions, assetSelection: $assets}) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}
"""


@dataclass
class SourceWriter:
    dsn: str
    postgres: PostgresResource  # for the fingerprint SQL and the column list only
    days: list[str]  # the days it changes
    rng: random.Random
    versions: dict[str, set[Fingerprint]] = field(default_factory=lambda: defaultdict(lambda: {EMPTY}))
    done: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: int = 0
    _sql: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_current(self, days: list[str]) -> None:
        """The days' committed state now (after seeding): a version of each."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            _pin(conn)
            for day in days:
                self._record(conn, day)

    def versions_of(self, day: str) -> set[Fingerprint]:
        with self._lock:
            return set(self.versions[day])

    @property
    def table(self) -> str:
        return self.postgres.table.name

    def step(self) -> str:
        """One transaction of DataVault's: a random kind of change to a random day."""
        operation = self.rng.choice(OPERATIONS[self.table])
        day = self.rng.choice(self.days)
        window = DayWindow.for_key(day)
        at = window.start + timedelta(microseconds=self.rng.randrange(86_400_000_000))
        payload = self.rng.randbytes(self.rng.randrange(200, 400))
        try:
            with psycopg.connect(self.dsn, connect_timeout=3, application_name="dataVault backend") as conn:
                conn.execute("SET statement_timeout = '10s'")
                _pin(conn)
                changed = self._apply(conn, operation, window, at, payload)
                for changed_day in changed:
                    self._record(conn, changed_day)  # inside the transaction, before COMMIT
            self.done[f"{self.table} {operation}"] += 1
            return f"{self.table} {operation} {day}"
        except psycopg.Error as error:
            self.failed += 1
            return f"{self.table} {operation} {day} failed ({type(error).__name__})"

    def _apply(self, conn, operation: str, window: DayWindow, at: datetime, payload: bytes) -> list[str]:
        if self.table == "retrieval_log":
            return self._apply_to_retrieval_log(conn, operation, window, at)
        if self.table == types_table.TABLE:
            return self._apply_to_types(conn, operation, window, at)
        day = window.partition_key
        some_row = (
            "SELECT id FROM records WHERE created_at >= %s AND created_at < %s ORDER BY random() LIMIT 1"
        )
        if operation in ("late_row", "backdated_insert"):
            updated = datetime.now(UTC) if operation == "backdated_insert" else None
            self._insert(conn, at, payload, updated)
            return [day]
        if operation == "new_row":
            self._insert(conn, datetime.now(UTC), payload, None)
            return []  # today: no partition yet
        row = conn.execute(some_row, (window.start, window.end)).fetchone()
        if row is None:
            return []
        if operation == "erasure":
            conn.execute("DELETE FROM records WHERE id = %s", row)
        elif operation == "reencrypt_bumped":
            conn.execute(
                "UPDATE records SET ciphertext = %s, nonce = %s, updated_at = now() WHERE id = %s",
                (payload, self.rng.randbytes(12), row[0]),
            )
        else:  # re-encrypted in place, updated_at untouched: only the content tier can see it
            conn.execute(
                "UPDATE records SET ciphertext = %s, nonce = %s WHERE id = %s",
                (payload, self.rng.randbytes(12), row[0]),
            )
        return [day]

    def _apply_to_retrieval_log(self, conn, operation: str, window: DayWindow, at: datetime) -> list[str]:
        if operation == "erasure":
            row = conn.execute(
                "SELECT id FROM retrieval_log WHERE retrieved_at >= %s AND retrieved_at < %s ORDER BY random() "
                "LIMIT 1",
                (window.start, window.end),
            ).fetchone()
            if row is None:
                return []
            conn.execute("DELETE FROM retrieval_log WHERE id = %s", row)
            return [window.partition_key]
        retrieved_at = at if operation == "late_row" else datetime.now(UTC)
        found = self.rng.random() < 0.9
        conn.execute(
            "INSERT INTO retrieval_log (record_id, requested_by, found, client, error_code, latency_ms, "
            "retrieved_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                uuid.UUID(int=self.rng.getrandbits(128), version=4),
                f"service-{self.rng.randrange(40)}",
                found,
                json.dumps({"agent": "soak/1.0 (Zürich)", "ip": f"10.0.{self.rng.randrange(256)}.7"}),
                None if found else "NOT_FOUND",
                None if self.rng.random() < 0.1 else round(self.rng.uniform(0.2, 40.0), 3),
                retrieved_at,
            ),
        )
        return [window.partition_key] if operation == "late_row" else []  # a new row: today, no partition yet

    def _apply_to_types(self, conn, operation: str, window: DayWindow, at: datetime) -> list[str]:
        if operation in ("late_row", "new_row"):
            created_at = at if operation == "late_row" else datetime.now(UTC)
            conn.execute(
                types_table.INSERT_ONE,
                {"n": self.rng.randrange(10**8, 10**9), "at": created_at, "updated": None},
            )
            return [window.partition_key] if operation == "late_row" else []  # a new row: today
        row = conn.execute(
            "SELECT id FROM soak_types WHERE created_at >= %s AND created_at < %s ORDER BY random() LIMIT 1",
            (window.start, window.end),
        ).fetchone()
        if row is None:
            return []
        if operation == "erasure":
            conn.execute("DELETE FROM soak_types WHERE id = %s", row)
        else:  # updated; with updated_at bumped, or silently (only the content tier sees it)
            bump = ", updated_at = now() " if operation == "update_bumped" else ""
            conn.execute(
                types_table.UPDATE_ONE.format(bump=bump),
                {"amount": round(self.rng.uniform(-9999, 9999), 2), "id": row[0]},
            )
        return [window.partition_key]

    def _insert(self, conn, created_at: datetime, payload: bytes, updated_at: datetime | None) -> None:
        conn.execute(
            "INSERT INTO records (id, owner_id, key, ciphertext, nonce, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                uuid.UUID(int=self.rng.getrandbits(128), version=4),
                self.rng.randrange(1, 2**62),
                f"soak/{self.rng.randrange(10**9)}",
                payload,
                self.rng.randbytes(12),
                created_at,
                updated_at,
            ),
        )

    def _record(self, conn, day: str) -> None:
        if self._sql is None:
            self._sql = self.postgres.fingerprint_sql(self.postgres.source_columns())
        window = DayWindow.for_key(day)
        rows, total = conn.execute(self._sql, (window.start, window.end)).fetchone()
        with self._lock:
            self.versions[day].add(Fingerprint(rows, int(total or 0)))


def _pin(conn) -> None:
    """The fingerprint reads values as text, as the pipeline's sessions do, with what they pin (an interval or
    a float otherwise reads in the server's style, and its day's version would be another day's)."""
    for name, value in PINNED_PARAMETERS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


@dataclass
class Workload:
    """DataVault's backend over every table: each step one transaction on a table chosen at random."""

    writers: list[SourceWriter]
    rng: random.Random

    def step(self) -> str:
        return self.rng.choice(self.writers).step()


@dataclass
class Engineer:
    """Backfills of a few days at a time, as an engineer launches them; the CLI's processes are tracked
    so that the nemesis can kill or pause them."""

    webserver_url: str
    env: dict[str, str]
    cwd: Path
    logs: Path
    days: list[str]
    rng: random.Random
    cli_processes: list[subprocess.Popen] = field(default_factory=list)
    launched: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def act(self) -> str:
        first = self.rng.randrange(len(self.days))
        last = min(len(self.days) - 1, first + self.rng.randrange(4))
        days = self.days[first : last + 1]
        # An engineer waits for their terminal's backfill before starting another one there.
        if self.rng.random() < 0.5 or self.running_cli():
            return self._graphql_backfill(days)
        return self._cli_backfill(days)

    def _graphql_backfill(self, days: list[str]) -> str:
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql",
            data=json.dumps(
                {"query": LAUNCH_BACKFILL, "variables": {"partitions": days, "assets": ASSET_KEYS}}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                result = json.loads(response.read())["data"]["launchPartitionBackfill"]
        except (OSError, KeyError, TypeError, ValueError) as error:
            return f"UI backfill {days[0]}..{days[-1]} not launched ({type(error).__name__})"
        self.launched["ui"] += 1
        return f"UI backfill {days[0]}..{days[-1]}: {result.get('backfillId') or result}"

    def _cli_backfill(self, days: list[str]) -> str:
        command = ["datavault-analytics", "backfill", days[0], days[-1], "--days-per-run", "2"]
        log = self.logs / f"cli-backfill-{len(self.cli_processes)}.log"
        process = Process("engineer", command, self.env, log, self.cwd).start().popen
        self.cli_processes.append(process)
        self.launched["cli"] += 1
        return f"CLI backfill {days[0]}..{days[-1]} (pid {process.pid})"

    def running_cli(self) -> list[subprocess.Popen]:
        return [p for p in self.cli_processes if p.poll() is None]

    def wait_for_cli(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for process in self.cli_processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


def history_days(today: date, count: int) -> list[str]:
    return [(today - timedelta(days=back)).isoformat() for back in range(count, 0, -1)]
