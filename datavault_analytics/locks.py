"""One lock per (source table, day), so that two runs of the same partition never interleave.

Every step that touches a day's stage or its Snowflake rows holds that day's lock while it does:
  - the stage step, from deleting the day's manifest until its new manifest is written;
  - the load step, from re-reading the manifest until COMMIT (so it loads exactly one complete staging);
  - the clean-up of staged files past their retention (which skips a day whose lock is taken).
A second run of the same day therefore waits at the lock, then works on a complete stage; runs of
different days never wait for each other.

The lock is a PostgreSQL session-level advisory lock, `pg_advisory_lock(classid, objid)`, held on a
connection of its own for as long as the work takes:
  - it works across processes, hosts and Dagster deployments, and needs no GRANT (a SELECT-only role
    may take it);
  - PostgreSQL releases it when the holder's connection ends, so a run killed with SIGKILL never leaves
    a day locked;
  - locks are per server, and session-level: every run must take them on the same PostgreSQL, over a
    session it keeps. When DATAVAULT_PG_DSN is a load-balanced reader endpoint (several replicas) or
    goes through a transaction-pooling PgBouncer, point DATAVAULT_LOCK_DSN at one server every run can
    reach directly: the primary, one fixed replica, or Dagster's own PostgreSQL.
A step waits up to `wait_seconds` for the lock, then fails with a retryable error naming the holder.
Before the step makes its work visible (writes the manifest, commits the load) it checks that it still
holds the lock (`PartitionLock.ensure_held`): a lock lost with its connection stops the step instead.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import psycopg

from datavault_analytics.errors import TransientError
from datavault_analytics.redaction import dsn_location, redact

_EPOCH = date(1970, 1, 1)


class PartitionLockError(TransientError):
    """The lock could not be taken or was lost: PostgreSQL unreachable, or the connection dropped."""


class PartitionBusyError(TransientError):
    """Another run held the day's lock for longer than this step would wait."""


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
                f"{redact(str(error))}); nothing was made visible"
            ) from None
        if not held:
            raise PartitionLockError(f"The PostgreSQL lock for {self.scope} {self.partition_key} is no longer held")


def _connect(dsn: str, scope: str, partition_key: str, holder: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            dsn, autocommit=True, connect_timeout=10, application_name=f"datavault lock {holder}"[:63],
            # A half-open connection (a host gone, not a process) is noticed in about a minute.
            keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
        )
    except psycopg.Error as error:
        raise PartitionLockError(
            f"Cannot connect to PostgreSQL at {dsn_location(dsn)} to lock {scope} {partition_key}: "
            f"{redact(str(error), dsn)}"
        ) from None


def _holders(conn: psycopg.Connection, key: tuple[int, int]) -> str:
    try:
        rows = conn.execute(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 AND l.granted",
            key,
        ).fetchall()
    except psycopg.Error:
        return "unknown"
    return ", ".join(f"pid {pid} '{name}'" for pid, name in rows) or "released since"


@contextmanager
def hold(dsn: str, scope: str, partition_key: str, *, wait_seconds: float, holder: str) -> Iterator[PartitionLock]:
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
                f"Cannot lock {scope} {partition_key} in PostgreSQL at {dsn_location(dsn)}: {redact(str(error), dsn)}"
            ) from None
        yield lock
    finally:
        conn.close()  # ends the session, which releases the lock


@contextmanager
def try_hold(dsn: str, scope: str, partition_key: str, *, holder: str) -> Iterator[PartitionLock | None]:
    """The day's lock if it is free right now, else None (for work that can wait until next time)."""
    conn = _connect(dsn, scope, partition_key, holder)
    lock = PartitionLock(conn, scope, partition_key)
    try:
        acquired = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", lock.key).fetchone()[0]
        yield lock if acquired else None
    finally:
        conn.close()
