"""PostgreSQL, DataVault's source of truth, read-only: the resource, its sessions and its pace.

`PostgresResource` is one class assembled from one module per kind of read: the catalog (catalog.py), a day's
extract (extract.py) and the per-day aggregates (aggregates.py). The role needs only SELECT
(docs/reliability.md, "Security"); each day is one read-only REPEATABLE READ transaction.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from psycopg.conninfo import make_conninfo
from pydantic import Field

from datavault_analytics.errors import PostgresSourceError
from datavault_analytics.postgres.aggregates import DayAggregates
from datavault_analytics.postgres.bursts import (
    FIRST_BURST_ROWS,
    LEAST_PIECE_ROWS,
    MOST_BURST_ROWS,
    BurstSize,
    OthersAtWork,
)
from datavault_analytics.postgres.catalog import SourceCatalog
from datavault_analytics.postgres.extract import DayExtract
from datavault_analytics.postgres.kept_sessions import KeptSessions
from datavault_analytics.postgres.sessions import KEPT_SESSION_NAME, PINNED_PARAMETERS, session_name, with_tls
from datavault_analytics.redaction import dsn_location
from datavault_analytics.table.spec import BoundToTable, TableSpec

_SESSIONS = KeptSessions()  # connect()'s psycopg sessions, by DSN and session settings


class PostgresResource(SourceCatalog, DayExtract, DayAggregates, BoundToTable, dg.ConfigurableResource):
    """DataVault's PostgreSQL database and the table the pipeline reads."""

    dsn: str = Field(
        description="libpq URI of DataVault's database, e.g. postgresql://user:pass@host:5432/datavault."
    )
    table_spec: TableSpec | None = Field(
        default=None, description="The source table, once bound (for_table)."
    )
    batch_size_hint_bytes: int = Field(
        default=4 * 1024 * 1024,
        description="Approximate size of each Arrow record batch ADBC returns; with the prefetch queue, the "
        "memory a read holds. 4 MB reads as fast as larger batches (see bench/results.md).",
    )
    statement_timeout_seconds: int = Field(
        default=1800, description="Upper bound on any one statement, the day's extract included."
    )
    idle_in_transaction_timeout_seconds: int = Field(
        default=60,
        description="A session of ours idle inside its transaction longer than this is ended by PostgreSQL, so a "
        "stuck run never holds a snapshot (and vacuum) back.",
    )
    lock_timeout_seconds: int = Field(
        default=30,
        description="How long a read waits behind a conflicting lock (an ALTER TABLE on the source) before it "
        "fails and is retried, instead of queueing DataVault's own queries behind it.",
    )
    max_mb_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Pace each extract to at most this many MB (10^6 bytes of Arrow data) a second. Unset: full "
        "speed, right for a replica; set it when the source is DataVault's primary (docs/source-database.md, 'DataVault's "
        "own database').",
    )
    max_burst_ms: float = Field(
        default=0.3,
        ge=0,
        description="Cut every read of ours into pieces of about this many milliseconds of work: the extract and "
        "the fingerprints FETCH from a cursor as many rows as take that long, the drift scan's cheap tier counts "
        "time slices that short. A Retrieve whose backend wakes on the database's CPU while one of ours works "
        "waits for that piece, so its p99 follows the pieces' length, not the read's speed or share "
        "(docs/source-database.md). 0: each read is one statement, fastest, for a replica.",
    )
    alone_burst_ms: float = Field(
        default=25.0,
        ge=0,
        description="While no other application works on the database (pg_stat_activity: no session of another "
        "application ran a statement in the last second), each piece of our reads may take this many "
        "milliseconds: the extract reads the day in time slices, each a COPY at whole-statement speed, the "
        "fingerprints and the cheap tier take longer pieces. From the first sign of other work, the read goes "
        "on in `max_burst_ms` bursts. Seeing other roles' sessions takes pg_read_all_stats (or pg_monitor); "
        "without it they count as working. 0: always `max_burst_ms` bursts.",
    )
    time_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="The share of the time each read of ours (extract, fingerprints, drift scan) may keep its "
        "PostgreSQL backend working: after each piece of work it rests in proportion to the time the piece took "
        "(run, then rest), so 0.25 reads a quarter of the time. It lowers our CPU use per second, not Retrieve's "
        "p99 on a one-CPU database, as measured (docs/source-database.md). 1: no rest.",
    )
    sslmode: str | None = Field(
        default=None,
        description="libpq sslmode for every connection: disable, allow, prefer, require, verify-ca or verify-full "
        "(production: verify-full with sslrootcert). Unset: the DSN's own, else libpq's default, prefer.",
    )
    sslrootcert: str | None = Field(
        default=None, description="CA certificate file that verifies the server, for verify-ca / verify-full."
    )

    def for_table(self, table: TableSpec) -> "PostgresResource":
        """This database, reading `table`: the shared resource, bound to one table's assets."""
        return self.model_copy(update={"table_spec": table})

    @property
    def qualified_table(self) -> str:
        return self.table.qualified_postgres

    @property
    def connection_dsn(self) -> str:
        """The DSN with the TLS settings applied: what every connection uses."""
        return with_tls(self.dsn, self.sslmode, self.sslrootcert)

    @property
    def location(self) -> str:
        """host:port/dbname, for messages; never the user or password."""
        return dsn_location(self.dsn)

    def session_dsn(self, purpose: str) -> str:
        """The connection DSN naming the session (`application_name`): what it does, for which day and run."""
        return make_conninfo(self.connection_dsn, application_name=session_name(purpose))

    def session_settings(self, scope: str = "SESSION") -> list[str]:
        """The bounds every session of ours sets: SESSION for a connection, LOCAL inside a transaction."""
        return [
            *(f"SET {scope} {name} = '{value}'" for name, value in PINNED_PARAMETERS.items()),
            f"SET {scope} statement_timeout = {int(self.statement_timeout_seconds) * 1000}",
            f"SET {scope} idle_in_transaction_session_timeout = {int(self.idle_in_transaction_timeout_seconds) * 1000}",
            f"SET {scope} lock_timeout = {int(self.lock_timeout_seconds) * 1000}",
            # Paced or in bursts, a read is one backend that rests between pieces: parallel workers would take the
            # CPUs it leaves to DataVault, and they cost the database 1.4 x the CPU per row (a 1M-row day's
            # count: 0.13 CPU s with 2 workers, 0.095 without; docs/costs.md).
            *([f"SET {scope} max_parallel_workers_per_gather = 0"] if self.paced or self.in_bursts else []),
            # In bursts, no JIT: compiling a plan that costs more than jit_above_cost is one piece of work of 3 to
            # 100 ms on the database's CPU (the first FETCH of a 1M-row day took 4.7 ms, of a 10M-row day 99 ms;
            # 0.3 ms without), and our statements are too simple to gain from it.
            *([f"SET {scope} jit = off"] if self.in_bursts else []),
            # In bursts, a prepared slice statement is planned once, not before each slice: a custom plan per
            # execution cost the cheap tier 15 to 25 % more of the database's CPU (docs/costs.md).
            *([f"SET {scope} plan_cache_mode = force_generic_plan"] if self.in_bursts else []),
        ]

    @property
    def paced(self) -> bool:
        return self.time_share < 1

    @property
    def in_bursts(self) -> bool:
        return self.max_burst_ms > 0

    def burst_rows(self, others: OthersAtWork | None = None) -> BurstSize:
        """Rows a piece of `max_burst_ms` holds, or of `alone_burst_ms` while `others` finds no one else at
        work, learned piece by piece."""
        return BurstSize(
            self.max_burst_ms / 1000,
            FIRST_BURST_ROWS,
            LEAST_PIECE_ROWS,
            MOST_BURST_ROWS,
            others,
            self.alone_burst_ms / 1000,
        )

    @contextmanager
    def others_at_work(self, in_time_slices: bool = False) -> Iterator[OthersAtWork | None]:
        """Looks at who else works on the database, for a read in bursts that may take longer pieces while no
        one does; None when it may not (`alone_burst_ms` 0, whole statements, or, for a read `in_time_slices`
        of the partition column, no index to cut them with)."""
        if not (self.in_bursts and self.alone_burst_ms) or (in_time_slices and not self.partition_index()):
            yield None
            return
        with self.connect("looks for other work") as conn:
            yield OthersAtWork(conn)

    def rest_for(self, seconds: float) -> float:
        """How long to rest after `seconds` of work on the database, to keep to `time_share` of the time."""
        return seconds * (1 - self.time_share) / self.time_share

    def rest_after(self, seconds: float) -> None:
        if self.paced:
            time.sleep(self.rest_for(seconds))

    @contextmanager
    def connect(self, purpose: str = "catalog") -> Iterator[psycopg.Connection]:
        """A psycopg connection in a read-only transaction, for the catalog and small aggregate queries: the
        session kept from the last read (kept_sessions.py), renamed for this one, or a new one."""
        key = (self.connection_dsn, tuple(self.session_settings()))
        conn = _SESSIONS.take(key)
        if conn is not None:
            try:  # outside a transaction, so that a rollback keeps the name
                conn.autocommit = True
                conn.execute("SELECT set_config('application_name', %s, false)", (session_name(purpose),))
                conn.autocommit = False
            except psycopg.Error:  # ended by the server while kept
                _SESSIONS.discard(conn)
                conn = None
        if conn is None:
            try:
                conn = psycopg.connect(self.session_dsn(purpose), autocommit=False, connect_timeout=10)
            except psycopg.Error as error:
                raise PostgresSourceError(
                    f"Cannot connect to PostgreSQL at {self.location}: {error}"
                ) from None
        ended_cleanly = False
        try:
            conn.read_only = True
            conn.isolation_level = None
            with conn.cursor() as cursor:
                for statement in self.session_settings():
                    cursor.execute(statement)
            yield conn
            ended_cleanly = True
        except psycopg.Error as error:
            raise PostgresSourceError(f"PostgreSQL at {self.location} failed: {error}") from None
        finally:
            try:
                conn.rollback()
                if ended_cleanly:
                    conn.autocommit = True
                    conn.execute("SELECT set_config('application_name', %s, false)", (KEPT_SESSION_NAME,))
                    _SESSIONS.keep(key, conn)
                else:
                    conn.close()
            except psycopg.Error:  # the connection broke; the server ends the read-only transaction
                _SESSIONS.discard(conn)
