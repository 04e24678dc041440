"""One lock per (source table, day), so that two runs of the same partition never interleave.

A PostgreSQL session-level advisory lock on a connection of its own: no GRANT needed, and it ends with its
connection, so a killed run never leaves a day locked. docs/locks.md says which steps hold it.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import dagster as dg
import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field

from datavault_analytics.errors import PartitionBusyError, PartitionLockError
from datavault_analytics.postgres.sessions import LOCK_SESSION_NAME_PREFIX, with_tls
from datavault_analytics.redaction import dsn_location
from datavault_analytics.table.spec import BoundToTable, TableSpec

_EPOCH = date(1970, 1, 1)


def lock_key(scope: str, partition_key: str) -> tuple[int, int]:
    """The two int4 keys of the advisory lock: a stable hash of the scope, and the day's number."""
    classid = int.from_bytes(hashlib.sha256(f"datavault_analytics:{scope}".encode()).digest()[:4], "big") >> 1
    return classid, (date.fromisoformat(partition_key) - _EPOCH).days


class PartitionLock:
    """A held lock: `ensure_held()` before making work visible."""

    def __init__(self, conn: psycopg.Connection, scope: str, partition_key: str):
        self.conn, self.scope, self.partition_key = conn, scope, partition_key
        self.key = lock_key(scope, partition_key)

    def ensure_held(self) -> None:
        try:
            held = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' "
                "AND classid = %s AND objid = %s AND objsubid = 2 AND granted",
                self.key,
            ).fetchone()[0]
        except psycopg.Error as error:
            raise PartitionLockError(
                f"Lost the PostgreSQL lock for {self.scope} {self.partition_key} (its connection failed: "
                f"{error}); nothing was made visible"
            ) from None
        if not held:
            raise PartitionLockError(
                f"The PostgreSQL lock for {self.scope} {self.partition_key} is no longer held"
            )


# A half-open connection (a host gone, not a process) is noticed in idle + interval × count = 60 s, on both
# ends: the client's, so that a run learns it lost its lock; the server's, so that PostgreSQL ends the session
# of a run whose machine is gone, and frees its lock, instead of after Linux's default of 2 h 11 min.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3
# Keepalives only probe a connection with nothing unacknowledged. A reply the server sent as the host went
# (measured: 83 bytes) is retransmitted instead, for about 15 min (tcp_retries2): the user timeout bounds both.
TCP_USER_TIMEOUT_MS = (KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT) * 1000


def _connect(dsn: str, scope: str, partition_key: str, holder: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=10,
            application_name=f"{LOCK_SESSION_NAME_PREFIX}{holder}"[:63],
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_S,
            keepalives_interval=KEEPALIVE_INTERVAL_S,
            keepalives_count=KEEPALIVE_COUNT,
            tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            options=" ".join(
                filter(
                    None,
                    [
                        conninfo_to_dict(dsn).get("options"),  # the DSN's own, kept
                        f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S}",
                        f"-c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S}",
                        f"-c tcp_keepalives_count={KEEPALIVE_COUNT}",
                        f"-c tcp_user_timeout={TCP_USER_TIMEOUT_MS}",
                    ],
                )
            ),
        )
    except psycopg.Error as error:
        raise PartitionLockError(
            f"Cannot connect to PostgreSQL at {dsn_location(dsn)} to lock {scope} {partition_key}: {error}"
        ) from None


def _holders(conn: psycopg.Connection, key: tuple[int, int]) -> str:
    try:
        rows = conn.execute(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 AND "
            "l.granted",
            key,
        ).fetchall()
    except psycopg.Error:
        return "unknown"
    return ", ".join(f"pid {pid} '{name}'" for pid, name in rows) or "released since"


def _release(conn: psycopg.Connection) -> None:
    """Release the lock before the block returns, then end the session. Closing alone releases it only once
    the server's backend has exited, a moment later: the next step, or a purge, could find it still held."""
    try:
        if not conn.broken:
            conn.execute("SELECT pg_advisory_unlock_all()")
    except psycopg.Error:
        pass  # the session is gone, and its locks with it
    finally:
        conn.close()


@contextmanager
def _hold(
    dsn: str, scope: str, partition_key: str, *, wait_seconds: float, holder: str
) -> Iterator[PartitionLock]:
    """Wait (up to wait_seconds) for the day's lock, hold it for the block, release it after."""
    conn = _connect(dsn, scope, partition_key, holder)
    lock = PartitionLock(conn, scope, partition_key)
    try:
        try:
            conn.execute(f"SET lock_timeout = {max(1, int(wait_seconds * 1000))}")
            conn.execute("SELECT pg_advisory_lock(%s, %s)", lock.key)
        except psycopg.errors.LockNotAvailable:
            raise PartitionBusyError(
                f"{scope} {partition_key} stayed locked by another run ({_holders(conn, lock.key)}) for "
                f"{wait_seconds:g} s; this step did nothing"
            ) from None
        except psycopg.Error as error:
            raise PartitionLockError(
                f"Cannot lock {scope} {partition_key} in PostgreSQL at {dsn_location(dsn)}: {error}"
            ) from None
        yield lock
    finally:
        _release(conn)


@contextmanager
def _try_hold(dsn: str, scope: str, partition_key: str, *, holder: str) -> Iterator[PartitionLock | None]:
    """The day's lock if it is free right now, else None (for work that can wait until next time)."""
    conn = _connect(dsn, scope, partition_key, holder)
    lock = PartitionLock(conn, scope, partition_key)
    try:
        acquired = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", lock.key).fetchone()[0]
        yield lock if acquired else None
    finally:
        _release(conn)


class PartitionLocks(BoundToTable, dg.ConfigurableResource):
    """The per-day locks, taken by the stage (while it writes a day) and the load (until it commits)."""

    dsn: str = Field(
        description="PostgreSQL that holds the locks: DATAVAULT_LOCK_DSN, else the source's DSN."
    )
    sslmode: str | None = Field(default=None, description="libpq sslmode, as for the source.")
    sslrootcert: str | None = Field(default=None, description="CA file that verifies the server.")
    wait_seconds: float = Field(
        default=1800, description="How long a step waits for another run of the same day to release its lock."
    )
    table_spec: TableSpec | None = Field(
        default=None, description="The table whose days are locked, once bound (for_table)."
    )

    def for_table(self, table: TableSpec) -> "PartitionLocks":
        """The locks of `table`'s days: another table's day is another lock."""
        return self.model_copy(update={"table_spec": table})

    @property
    def _dsn(self) -> str:
        return with_tls(self.dsn, self.sslmode, self.sslrootcert)

    def hold(self, partition_key: str, holder: str):
        """Wait (up to wait_seconds) for the day's lock and hold it for the block."""
        return _hold(
            self._dsn, self.table.source_name, partition_key, wait_seconds=self.wait_seconds, holder=holder
        )

    def try_hold(self, partition_key: str, holder: str):
        """The day's lock if it is free right now, else None (for work that can wait until next time)."""
        return _try_hold(self._dsn, self.table.source_name, partition_key, holder=holder)
