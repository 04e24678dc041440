"""PostgreSQL, DataVault's source of truth: read-only, each day streamed as Arrow with ADBC.

`PostgresResource` reads; `PostgresSourceIOManager` hands the stage one lazy stream per day. The role needs
only SELECT (docs/reliability.md, "Security"); each day is one read-only REPEATABLE READ transaction.
"""

import queue
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import adbc_driver_postgresql.dbapi as adbc_postgres
import dagster as dg
import psycopg
import pyarrow as pa
from psycopg.conninfo import make_conninfo
from pydantic import Field

from datavault_analytics.day_window import DayWindow, day_windows
from datavault_analytics.errors import PermanentError, TransientError, asset_errors
from datavault_analytics.fingerprint import DaySummary, Fingerprint, postgres_row_number
from datavault_analytics.identifiers import quote_postgres
from datavault_analytics.redaction import dsn_location
from datavault_analytics.resources.kept_sessions import KeptSessions
from datavault_analytics.resources.table_spec import TableSpec, table_of
from datavault_analytics.type_mapping import TypeMapping, mapping_for


@dataclass(frozen=True)
class SourceColumn:
    name: str
    postgres_type: str
    nullable: bool
    mapping: TypeMapping

    @property
    def select_sql(self) -> str:
        return (
            self.mapping.select_template.format(column=quote_postgres(self.name))
            + " AS "
            + quote_postgres(self.name)
        )


# Batches the extract may read ahead: about one row group of the stage (S3StageIOManager.row_group_mb),
# so that reading, the slowest part, never waits while a row group is encoded.
PREFETCH_BYTES = 16 * 1024 * 1024
# Bursts (max_burst_ms): the extract and the fingerprints FETCH from a cursor, the cheap tier counts time slices.
FIRST_BURST_ROWS = 64
LEAST_PIECE_ROWS = 16
MOST_BURST_ROWS = 65_536
FIRST_SLICE_SECONDS = 60.0
# Each day's sessions are kept for the next day's read (kept_sessions.py): the extract's ADBC connections, and
# the psycopg sessions of connect().
KEPT_SESSION_NAME = "datavault-analytics kept for the next read"
_SET_APPLICATION_NAME = "SELECT set_config('application_name', $1, false)"  # ADBC's parameter style
_EXTRACT_SESSIONS = KeptSessions()  # by DSN
_SESSIONS = KeptSessions()  # by DSN and session settings
# The Dagster pool of every op that reads DataVault's database in bulk (extracts, drift scans), of every table:
# its limit bounds how many do at once.
POSTGRES_POOL = "datavault_postgres"


@dataclass
class BurstSize:
    """The size of the next piece of a read (rows to FETCH, or seconds of time to count), set after each piece
    so that one takes about `seconds`. A step at most halves or doubles it, so one slow piece (a cold page)
    does not swing it. A piece of LEAST_PIECE_ROWS rows or fewer is never cut finer: its time is the
    statement's own cost, which a smaller piece would not shorten."""

    seconds: float
    size: float
    least: float
    most: float

    def after(self, took: float, rows: int) -> None:
        if took > self.seconds and rows <= LEAST_PIECE_ROWS:
            return
        factor = min(2.0, max(0.5, self.seconds / max(took, 1e-6)))
        self.size = min(self.most, max(self.least, self.size * factor))


class PostgresSourceError(TransientError):
    """PostgreSQL could not be read; the message says at which step and never includes credentials."""


class SourceSchemaError(PermanentError, ValueError):
    """The source table is missing, or its columns cannot be carried as they are; fix it, then re-run."""


class PostgresConfigError(PermanentError, ValueError):
    """A PostgreSQL setting cannot work as given."""


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# A column name must read the same unquoted in PostgreSQL (lower case) and be a plain identifier.
_SOURCE_COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def session_name(purpose: str) -> str:
    """A session's `application_name`: what it does, for which day and run."""
    return f"datavault-analytics {purpose}"[:63]


def with_tls(dsn: str, sslmode: str | None, sslrootcert: str | None) -> str:
    """`dsn` (a URI or key=value string) with the given TLS settings, which override the DSN's own."""
    settings = {k: v for k, v in (("sslmode", sslmode), ("sslrootcert", sslrootcert)) if v}
    if not settings:
        return dsn
    if sslmode and sslmode not in SSL_MODES:
        raise PostgresConfigError(f"postgres.sslmode={sslmode!r} is not one of {', '.join(SSL_MODES)}.")
    return make_conninfo(dsn, **settings)


class PostgresResource(dg.ConfigurableResource):
    """DataVault's PostgreSQL database and the table the pipeline reads."""

    dsn: str = Field(
        description="libpq URI of DataVault's database, e.g. postgresql://user:pass@host:5432/datavault."
    )
    table: TableSpec = Field(default_factory=TableSpec, description="The source table and its key columns.")
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
        return self.model_copy(update={"table": table})

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
            f"SET {scope} statement_timeout = {int(self.statement_timeout_seconds) * 1000}",
            f"SET {scope} idle_in_transaction_session_timeout = {int(self.idle_in_transaction_timeout_seconds) * 1000}",
            f"SET {scope} lock_timeout = {int(self.lock_timeout_seconds) * 1000}",
            # Paced, a read is one backend that rests; parallel workers would take the CPUs it leaves to DataVault.
            *([f"SET {scope} max_parallel_workers_per_gather = 0"] if self.paced else []),
            # In bursts, no JIT: compiling a plan that costs more than jit_above_cost is one piece of work of 3 to
            # 100 ms on the database's CPU (the first FETCH of a 1M-row day took 4.7 ms, of a 10M-row day 99 ms;
            # 0.3 ms without), and our statements are too simple to gain from it.
            *([f"SET {scope} jit = off"] if self.in_bursts else []),
        ]

    @property
    def paced(self) -> bool:
        return self.time_share < 1

    @property
    def in_bursts(self) -> bool:
        return self.max_burst_ms > 0

    def burst_rows(self) -> BurstSize:
        return BurstSize(self.max_burst_ms / 1000, FIRST_BURST_ROWS, LEAST_PIECE_ROWS, MOST_BURST_ROWS)

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

    def source_columns(self) -> list[SourceColumn]:
        """The table's columns and types from PostgreSQL's catalog, so new columns flow through on their own."""
        with self.connect() as conn:
            rows = conn.execute(
                """
                SELECT a.attname, pg_catalog.format_type(a.atttypid, NULL), NOT a.attnotnull
                FROM pg_catalog.pg_attribute a
                JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum
                """,
                (self.table.postgres_schema.lower(), self.table.postgres_table.lower()),
            ).fetchall()
        if not rows:
            raise SourceSchemaError(
                f"Source table {self.table.source_name} does not exist or has no columns visible to this "
                f"role (PostgreSQL at {self.location}). Check the table's `table` "
                "in its defs.yaml and the role's GRANTs."
            )
        for name, _, _ in rows:
            if not _SOURCE_COLUMN.fullmatch(name):
                raise SourceSchemaError(
                    f"Column {name!r} of {self.table.source_name} is not a plain lower-case identifier, so "
                    "it cannot be carried safely. Rename it, or point the pipeline at a view that renames "
                    "it."
                )
        columns = [
            SourceColumn(name, pg_type, nullable, mapping_for(name, pg_type))
            for name, pg_type, nullable in rows
        ]
        names = {c.name for c in columns}
        for setting, column in self.table.required_columns():
            if column.lower() not in names:
                raise SourceSchemaError(
                    f"{setting}={column!r} is not a column of {self.table.source_name} (PostgreSQL at "
                    f"{self.location}); its columns are {', '.join(sorted(names))}. Fix the table's defs.yaml."
                )
        partition = next(c for c in columns if c.name == self.table.partition_column.lower())
        if partition.postgres_type not in ("timestamp with time zone", "timestamp without time zone"):
            raise SourceSchemaError(
                f"partition_column={self.table.partition_column!r} of {self.table.source_name} is "
                f"{partition.postgres_type}; it must be a timestamptz or timestamp column (its UTC day is the "
                "partition). Fix the table's defs.yaml."
            )
        return columns

    def arrow_schema(self, columns: list[SourceColumn]) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.mapping.arrow_type, nullable=c.nullable) for c in columns])

    def _window_predicate(self, window: DayWindow) -> str:
        # The bounds are datetimes we built from a validated partition key, never user text.
        column = quote_postgres(self.table.partition_column)
        return f"{column} >= '{window.start.isoformat()}'::timestamptz AND {column} < '{window.end.isoformat()}'::timestamptz"

    @contextmanager
    def stream_day(
        self,
        columns: list[SourceColumn],
        window: DayWindow,
        prefetch: int | None = None,
        run_id: str | None = None,
    ) -> Iterator[Iterator[pa.RecordBatch]]:
        """Stream one day's rows as Arrow record batches from a read-only snapshot.

        A background thread pulls batches from ADBC while the caller encodes the previous ones; both
        release the GIL, so reading and Parquet encoding overlap. At most `prefetch` batches wait in memory;
        by default PREFETCH_BYTES of them, so the reader keeps going while the caller encodes a row group.
        In bursts (`max_burst_ms`), it FETCHes from a cursor in the same snapshot, a few rows at a time,
        gathered into batches of about `batch_size_hint_bytes`. With `max_mb_per_second`, the reader waits
        between batches to keep to that rate; with `time_share` below 1, it rests after each batch for the time
        that keeps its reading to that share.
        """
        prefetch = prefetch or max(2, PREFETCH_BYTES // max(1, self.batch_size_hint_bytes))
        select_list = ", ".join(c.select_sql for c in columns)
        sql = f"SELECT {select_list} FROM {self.qualified_table} WHERE {self._window_predicate(window)}"  # noqa: S608
        schema = self.arrow_schema(columns)
        purpose = f"extract {window.partition_key}" + (f" run {run_id[:8]}" if run_id else "")
        conn = self._extract_session(purpose, window)
        cursor = conn.cursor()
        batches: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()
        read_to_the_end = threading.Event()
        done = object()

        def read() -> None:
            try:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                for statement in self.session_settings("LOCAL"):
                    cursor.execute(statement)
                cursor.adbc_statement.set_options(
                    **{"adbc.postgresql.batch_size_hint_bytes": str(self.batch_size_hint_bytes)}
                )
                started, read_bytes = time.monotonic(), 0
                if self.in_bursts:
                    record_batches = self._fetch_in_bursts(cursor, sql)
                else:
                    cursor.execute(sql)
                    record_batches = iter(cursor.fetch_record_batch())
                while True:
                    reading = time.monotonic()
                    batch = next(record_batches, None)
                    read_seconds = time.monotonic() - reading
                    if batch is None and not stop.is_set():
                        read_to_the_end.set()
                    if batch is None or stop.is_set():
                        return
                    batches.put(batch)
                    # While this thread rests, the backend fills the socket's buffers and then waits, idle.
                    if self.paced and stop.wait(self.rest_for(read_seconds)):
                        return
                    if self.max_mb_per_second:  # wait until the bytes read so far are due
                        read_bytes += batch.nbytes
                        if stop.wait(
                            read_bytes / (self.max_mb_per_second * 1e6) - (time.monotonic() - started)
                        ):
                            return
            except BaseException as error:  # handed to the consumer, which raises it
                batches.put(error)
            finally:
                batches.put(done)

        reader = threading.Thread(target=read, name=f"pg-extract-{window.partition_key}", daemon=True)
        reader.start()

        def consume() -> Iterator[pa.RecordBatch]:
            while (item := batches.get()) is not done:
                if isinstance(item, BaseException):
                    raise PostgresSourceError(
                        f"PostgreSQL at {self.location} failed while reading {self.table.source_name} for "
                        f"{window.partition_key}: {item}{_hint(str(item))}"
                    ) from None
                # Drop ADBC's per-field metadata and pin the declared nullability and types.
                yield pa.RecordBatch.from_arrays(item.columns, schema=schema)

        try:
            yield consume()
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                try:
                    batches.get(timeout=0.1)
                except queue.Empty:
                    pass
            try:
                if read_to_the_end.is_set():  # ends the snapshot and the cursor; the session is kept
                    cursor.execute("ROLLBACK")
                    cursor.execute(_SET_APPLICATION_NAME, (KEPT_SESSION_NAME,))
                    cursor.close()
                    _EXTRACT_SESSIONS.keep(self.connection_dsn, conn)
                else:
                    cursor.close()
                    conn.close()
            except Exception:  # the connection may already be broken; nothing was written
                _EXTRACT_SESSIONS.discard(conn)

    def _extract_session(self, purpose: str, window: DayWindow):
        """An ADBC connection (autocommit) named for `purpose`: the one kept from the last extract, or new."""
        conn = _EXTRACT_SESSIONS.take(self.connection_dsn)
        if conn is not None:
            try:
                with conn.cursor() as cursor:
                    cursor.execute(_SET_APPLICATION_NAME, (session_name(purpose),))
                return conn
            except Exception:  # ended by the server while kept
                _EXTRACT_SESSIONS.discard(conn)
        try:
            return adbc_postgres.connect(self.session_dsn(purpose), autocommit=True)
        except Exception as error:
            raise PostgresSourceError(
                f"Cannot connect to PostgreSQL at {self.location} to extract {window.partition_key}: {error}"
            ) from None

    def _fetch_in_bursts(self, cursor, sql: str) -> Iterator[pa.RecordBatch]:
        """`sql`'s rows through a cursor (ADBC, in the open transaction), FETCHed a burst at a time, gathered
        into batches of about `batch_size_hint_bytes`."""
        cursor.execute(f"DECLARE extract NO SCROLL CURSOR FOR {sql}")
        # COPY cannot wrap a FETCH; plain results carry the same Arrow types.
        cursor.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
        size = self.burst_rows()
        gathered: list[pa.RecordBatch] = []
        gathered_bytes = 0
        while True:
            rows = int(size.size)
            fetching = time.monotonic()
            cursor.execute(f"FETCH FORWARD {rows} FROM extract")
            fetched = cursor.fetch_arrow_table()
            size.after(time.monotonic() - fetching, fetched.num_rows)
            gathered += fetched.to_batches()
            gathered_bytes += fetched.nbytes
            last = fetched.num_rows < rows
            if gathered and (last or gathered_bytes >= self.batch_size_hint_bytes):
                yield pa.concat_batches(gathered)
                gathered, gathered_bytes = [], 0
            if last:
                return

    def estimate_day_rows(self, window: DayWindow) -> int | None:
        """The planner's estimate of the day's rows (EXPLAIN: nothing is read), or None if there is none.

        The stage uses it to size a day's files evenly; a wrong estimate only makes the sizes less even.
        """
        sql = f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self.qualified_table} WHERE {self._window_predicate(window)}"  # noqa: S608
        try:
            with self.connect(f"estimate {window.partition_key}") as conn:
                plan = conn.execute(sql).fetchone()[0]
            return int(plan[0]["Plan"]["Plan Rows"])
        except (PostgresSourceError, LookupError, TypeError, ValueError):
            return None

    def day_stats(self, windows: list[DayWindow]) -> dict[str, dict]:
        """Rows, latest partition-column value and latest update of each day."""
        found = self._day_aggregates("observe", windows)
        empty = {"rows": 0, "latest": None, "latest_update": None}
        return {w.partition_key: found.get(w.partition_key, empty) for w in windows}

    def day_summaries(self, first: DayWindow, last: DayWindow) -> dict[str, DaySummary]:
        """Every day from `first` to `last` with rows: its row count and latest `updated_at`. Days without
        rows are left out."""
        days = (last.start - first.start).days + 1
        windows = [
            DayWindow.for_key((first.start + timedelta(days=i)).date().isoformat()) for i in range(days)
        ]
        found = self._day_aggregates("drift scan", windows)
        return {day: DaySummary(a["rows"], a["latest_update_us"]) for day, a in found.items() if a["rows"]}

    def _day_aggregates(self, purpose: str, windows: list[DayWindow]) -> dict[str, dict]:
        """Per day of `windows`, what an index-only scan of `(partition column)
        INCLUDE (updated_at)` (sql/records.sql) gives: rows, latest partition-column value, latest update.

        Whole, one statement: one small aggregate per day, a LATERAL join over the days, with no per-row
        expression. In bursts, each day is counted in time slices sized to `max_burst_ms` and bounded in rows,
        in the day's one REPEATABLE READ snapshot; the slices' counts add up and their maxima give the day's."""
        if not windows:
            return {}
        column = quote_postgres(self.table.partition_column)
        aggregates = "count(*), max({c}), max({u}), (extract(epoch FROM max({u})) * 1000000)::bigint"
        found: dict[str, dict] = {}

        def add(day: str, rows: int, latest, latest_update, latest_update_us) -> None:
            day_so_far = found.setdefault(
                day, {"rows": 0, "latest": None, "latest_update": None, "latest_update_us": None}
            )
            day_so_far["rows"] += rows
            for key, value in (("latest", latest), ("latest_update", latest_update)):
                if value is not None and (day_so_far[key] is None or value > day_so_far[key]):
                    day_so_far[key] = value
                    if key == "latest_update":
                        day_so_far["latest_update_us"] = latest_update_us

        with self.connect(purpose) as conn:
            updated = self._updated_at_or_null(conn)
            conn.commit()  # the catalog read and the scan are each their own transaction
            select = aggregates.format(c=column, u=updated)
            if not self.in_bursts:
                sql = (
                    f"SELECT to_char(d AT TIME ZONE 'UTC', 'YYYY-MM-DD'), s.* FROM unnest(%s::timestamptz[]) AS d "  # noqa: S608
                    f"CROSS JOIN LATERAL (SELECT {select} FROM {self.qualified_table} WHERE {column} >= d "
                    f"AND {column} < d + interval '1 day') AS s WHERE s.count > 0"
                )
                reading = time.monotonic()
                for row in conn.execute(sql, ([w.start for w in windows],)).fetchall():
                    add(*row)
                self.rest_after(time.monotonic() - reading)
                return found
            # A slice is also bounded in rows: a width grown over empty or sparse days must not take a dense
            # day whole in one statement. A slice that reaches its `LIMIT` is counted again, up to the time of
            # its last row, which it holds fewer rows than; the wasted piece is one burst long.
            sql = (
                f"SELECT {aggregates.format(c='c', u='u')} FROM (SELECT {column} AS c, {updated} AS u "  # noqa: S608
                f"FROM {self.qualified_table} WHERE {column} >= %s AND {column} < %s ORDER BY {column} "
                "LIMIT %s) AS piece"
            )
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            width = BurstSize(self.max_burst_ms / 1000, FIRST_SLICE_SECONDS, 1e-3, 86_400)
            piece_rows = self.burst_rows()
            for window in windows:
                start = window.start
                while start < window.end:
                    end = min(start + timedelta(seconds=width.size), window.end)
                    limit = int(piece_rows.size) + 1
                    reading = time.monotonic()
                    row = conn.execute(sql, (start, end, limit), prepare=True).fetchone()
                    took = time.monotonic() - reading
                    self.rest_after(took)
                    if row[0] == limit:
                        piece_rows.after(took, row[0])
                        if row[1] > start:
                            width.size = (row[1] - start).total_seconds()
                            continue
                        # more than a piece's rows at one instant: that instant cannot be cut, count it whole
                        end = start + timedelta(microseconds=1)
                        row = conn.execute(sql, (start, end, None), prepare=True).fetchone()
                    else:
                        width.after(took, row[0])
                    if row[0]:
                        add(window.partition_key, *row)
                    start = end
                conn.commit()  # one snapshot per day, as the fingerprints
        return found

    def _updated_at_or_null(self, conn) -> str:
        """The configured updated-at column if the table has it now, else NULL (a count-only cheap tier)."""
        column = self.table.updated_at_column
        if column is None:
            return "NULL::timestamptz"
        has_it = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "AND column_name = %s",
            (self.table.postgres_schema.lower(), self.table.postgres_table.lower(), column.lower()),
        ).fetchone()
        return quote_postgres(column) if has_it else "NULL::timestamptz"

    def window_sql(self, select: str) -> str:
        """`SELECT select` over the table's rows in a time window, for the parameters (start, end)."""
        column = quote_postgres(self.table.partition_column)
        return f"SELECT {select} FROM {self.qualified_table} WHERE {column} >= %s AND {column} < %s"  # noqa: S608

    def fingerprint_sql(self, columns: list[SourceColumn]) -> str:
        """One day's fingerprint over `columns` (rows, sum), for the parameters (window start, window end)."""
        return self.window_sql(f"count(*), sum({row_number_sql(columns)})")

    def fingerprints(self, windows: list[DayWindow], columns: list[SourceColumn]) -> dict[str, Fingerprint]:
        """Each day's fingerprint over every column (fingerprint.py), each day in its own REPEATABLE READ
        transaction.

        Whole: one plain aggregate per day, with no sort and no grouping, which PostgreSQL may run with parallel
        workers. In bursts: the rows' numbers FETCHed from a cursor, as many as take `max_burst_ms`, and summed
        here; the fingerprint is a sum, so the answer is the same."""
        if not windows:
            return {}
        numbers_sql = self.window_sql(row_number_sql(columns))
        found = {}
        with self.connect("fingerprints") as conn:
            conn.commit()
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            for window in windows:
                if self.in_bursts:
                    found[window.partition_key] = self._fingerprint_in_bursts(conn, numbers_sql, window)
                else:
                    reading = time.monotonic()
                    rows, total = conn.execute(
                        self.fingerprint_sql(columns), (window.start, window.end)
                    ).fetchone()
                    self.rest_after(time.monotonic() - reading)
                    found[window.partition_key] = Fingerprint(rows, int(total or 0))
                conn.commit()  # one transaction per day: no snapshot or lock is held from one day to the next
        return found

    def _fingerprint_in_bursts(
        self, conn: psycopg.Connection, numbers_sql: str, window: DayWindow
    ) -> Fingerprint:
        rows, total, size = 0, 0, self.burst_rows()
        with conn.cursor(name="fingerprint") as cursor:
            cursor.execute(numbers_sql, (window.start, window.end))
            while True:
                wanted = int(size.size)
                fetching = time.monotonic()
                numbers = cursor.fetchmany(wanted)
                took = time.monotonic() - fetching
                size.after(took, len(numbers))
                rows, total = rows + len(numbers), total + sum(n for (n,) in numbers)
                self.rest_after(took)
                if len(numbers) < wanted:
                    return Fingerprint(rows, total)


def row_number_sql(columns: list[SourceColumn]) -> str:
    """Each row's 63-bit number over every column, as the fingerprint sums it (fingerprint.py)."""
    return postgres_row_number([(c.name, c.mapping.canonical) for c in columns], quote_postgres)


def _hint(error: str) -> str:
    """What to do about the failures a source can cause on its own."""
    if "conflict with recovery" in error:
        return (
            " (the hot standby cancelled the read to replay the primary's changes; the read is retried. If it "
            "keeps happening, see hot_standby_feedback and max_standby_streaming_delay in docs/source-database.md)"
        )
    if "lock timeout" in error:
        return " (another session holds a conflicting lock on the table, e.g. an ALTER TABLE; the read is retried)"
    return ""


def _describe_keys(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}" if keys else "no days"


@dataclass
class SourceDay:
    """One partition of the source, not yet read: `open()` starts its read-only stream."""

    postgres: PostgresResource
    columns: list[SourceColumn]
    window: DayWindow
    run_id: str | None = None  # names the extract's session

    @property
    def schema(self) -> pa.Schema:
        return self.postgres.arrow_schema(self.columns)

    def open(self):
        return self.postgres.stream_day(self.columns, self.window, run_id=self.run_id)


@dataclass
class SourceExtract:
    """The partitions a run asked for, handed from PostgreSQL to the stage without reading them yet."""

    days: list[SourceDay]


class PostgresSourceIOManager(dg.ConfigurableIOManager):
    """Loads the PostgreSQL source asset as a lazy, per-day stream of Arrow record batches.

    The column list comes from the catalog when the run starts, so every day of a range run shares one
    schema, and an unmapped type fails here, before anything is written.
    """

    postgres: dg.ResourceDependency[PostgresResource]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        raise NotImplementedError(
            "The PostgreSQL source is written by DataVault's backend, never by this pipeline."
        )

    def load_input(self, context: dg.InputContext) -> SourceExtract:
        keys = context.asset_partition_keys
        with asset_errors(f"Reading the PostgreSQL source's columns to extract {_describe_keys(keys)}"):
            postgres = self.postgres.for_table(
                table_of(context.upstream_output.definition_metadata, context.asset_key)
            )
            windows = day_windows(keys)
            columns = postgres.source_columns()
        return SourceExtract(
            [SourceDay(postgres, columns, window, context.step_context.run_id) for window in windows]
        )
