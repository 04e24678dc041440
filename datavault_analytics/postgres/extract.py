"""A day's extract: its rows streamed as Arrow record batches from one read-only snapshot, with ADBC."""

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import adbc_driver_postgresql.dbapi as adbc_postgres
import pyarrow as pa
import pyarrow.compute as pc

from datavault_analytics.errors import PostgresSourceError
from datavault_analytics.identifiers import quote_postgres
from datavault_analytics.postgres.bursts import LEAST_PIECE_ROWS, OthersAtWork
from datavault_analytics.postgres.catalog import SourceColumn
from datavault_analytics.postgres.kept_sessions import KeptSessions
from datavault_analytics.postgres.sessions import KEPT_SESSION_NAME, session_name
from datavault_analytics.postgres.values import staged_batch
from datavault_analytics.table.day_window import DayWindow

if TYPE_CHECKING:
    from datavault_analytics.postgres.resource import PostgresResource

# Batches the extract may read ahead: about one row group of the stage (S3StageIOManager.row_group_mb),
# so that reading, the slowest part, never waits while a row group is encoded.
PREFETCH_BYTES = 16 * 1024 * 1024
STALLED_STAGE_SECONDS = 600.0  # the longest a stalled stage may keep a day's snapshot open
_SET_APPLICATION_NAME = "SELECT set_config('application_name', $1, false)"  # ADBC's parameter style
_EXTRACT_SESSIONS = KeptSessions()  # by DSN
_log = logging.getLogger(__name__)


class DayExtract:
    """PostgresResource's extract of a day (a mixin: `self` is the resource)."""

    def _rows_between(self, columns: list[SourceColumn] | None, start: datetime, end: datetime) -> str:
        """SELECT of `columns` (or of 1) over the rows whose partition column is in [start, end)."""
        # The bounds are datetimes from a validated partition key or read from the column, never user text.
        column = quote_postgres(self.table.partition_column)
        select_list = ", ".join(c.select_sql for c in columns) if columns else "1"
        return (
            f"SELECT {select_list} FROM {self.qualified_table} WHERE {column} >= '{start.isoformat()}'::timestamptz "  # noqa: S608
            f"AND {column} < '{end.isoformat()}'::timestamptz"
        )

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
        sql = self._rows_between(columns, window.start, window.end)
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
                with self.others_at_work(in_time_slices=True) as others:
                    cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    for statement in self.session_settings("LOCAL"):
                        cursor.execute(statement)
                    cursor.adbc_statement.set_options(
                        **{"adbc.postgresql.batch_size_hint_bytes": str(self.batch_size_hint_bytes)}
                    )
                    started, read_bytes = time.monotonic(), 0
                    if self.in_bursts:
                        record_batches = self._read_in_bursts(cursor, columns, window, others)
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
                        if not self._hand_on(batches, batch, stop, cursor, window):
                            return
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

        where = f"{self.table.source_name}, {window.partition_key}"
        key = [c.lower() for c in self.table.primary_key]

        def consume() -> Iterator[pa.RecordBatch]:
            while (item := batches.get()) is not done:
                if isinstance(item, BaseException):
                    raise PostgresSourceError(
                        f"PostgreSQL at {self.location} failed while reading {self.table.source_name} for "
                        f"{window.partition_key}: {item}{_hint(str(item))}"
                    ) from None
                # Drop ADBC's per-field metadata, pin the declared nullability and types, convert exactly.
                yield staged_batch(item, schema, where, key)

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

    def _hand_on(self, batches: queue.Queue, batch, stop: threading.Event, cursor, window: DayWindow) -> bool:
        """Put `batch` in the queue; False if the read was stopped meanwhile.

        In bursts, the session is idle in its transaction between FETCHes, and PostgreSQL ends it after
        `idle_in_transaction_timeout_seconds`. While the stage does not take batches (S3 stalled), the session
        says SELECT 1 every third of that, so the day's read goes on when S3 does, for at most
        STALLED_STAGE_SECONDS: a snapshot is never held longer for a stall."""
        if not self.in_bursts:  # a whole statement's session is active, not idle, while its COPY waits
            batches.put(batch)
            return True
        every = max(0.5, self.idle_in_transaction_timeout_seconds / 3)
        since = time.monotonic()
        while True:
            try:
                batches.put(batch, timeout=every)
                return True
            except queue.Full:
                if stop.is_set():
                    return False
                if time.monotonic() - since > STALLED_STAGE_SECONDS:
                    raise PostgresSourceError(
                        f"The stage took no rows of {self.table.source_name} {window.partition_key} for "
                        f"{STALLED_STAGE_SECONDS:.0f} s (S3 stalled?): the day's snapshot on PostgreSQL at "
                        f"{self.location} is let go, and the read is retried."
                    ) from None
                cursor.execute("SELECT 1")
                cursor.fetchall()

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

    def _read_in_bursts(
        self, cursor, columns: list[SourceColumn], window: DayWindow, others: OthersAtWork | None
    ) -> Iterator[pa.RecordBatch]:
        """The day's rows (ADBC, in the open transaction's snapshot), gathered into batches of about
        `batch_size_hint_bytes`: in time slices of `alone_burst_ms` while no other application works on the
        database, then, from the first sign of one, the rest through a cursor in `max_burst_ms` bursts."""
        read = {"in time slices": 0, "in bursts": 0}
        start = window.start
        if others is not None:
            slices = self._slices_while_alone(cursor, columns, window, others, read)
            start = yield from _gathered(slices, self.batch_size_hint_bytes)
        if start < window.end:
            fetched = self._fetched_in_bursts(cursor, columns, start, window.end, read)
            yield from _gathered(fetched, self.batch_size_hint_bytes)
        _log.info(
            "%s %s: %s",
            self.table.source_name,
            window.partition_key,
            ", ".join(f"{n:,} rows {how}" for how, n in read.items()),
        )

    def _slices_while_alone(
        self, cursor, columns: list[SourceColumn], window: DayWindow, others: OthersAtWork, read: dict
    ) -> Iterator[pa.Table]:
        """Time slices of the day, in the partition column's order, each one statement that ADBC reads with
        COPY, sized to take `alone_burst_ms`, for as long as `others` finds no one else at work. Returns where
        the rest of the day starts: each slice ends before the instant of its last row, which the next one
        starts at, so no instant is split between slices (the day's end if it was read to it)."""
        column = quote_postgres(self.table.partition_column)
        at = next(c.name for c in columns if c.name.lower() == self.table.partition_column.lower())
        cursor.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "true"})
        size = self.burst_rows(others)
        start = window.start
        while start < window.end:
            if not others.look():
                return start
            rows = int(size.next())
            reading = time.monotonic()
            piece = self._slice(cursor, columns, start, window.end, f"ORDER BY {column} LIMIT {rows}")
            size.after(time.monotonic() - reading, piece.num_rows)
            if piece.num_rows:  # a slice is read whole before it is handed on: at most a batch of it
                size.most = max(LEAST_PIECE_ROWS, self.batch_size_hint_bytes * piece.num_rows / piece.nbytes)
            if piece.num_rows < rows:  # the rest of the day
                read["in time slices"] += piece.num_rows
                yield piece
                return window.end
            # In order, the rows before the last one's instant are those before its first occurrence.
            last = piece.column(at)[piece.num_rows - 1]
            before_last = piece.slice(0, pc.index(piece.column(at), last).as_py())
            last_instant = _as_utc(last.as_py())
            if before_last.num_rows:
                read["in time slices"] += before_last.num_rows
                yield before_last
                start = last_instant
            else:  # more than a slice's rows at one instant, which cannot be cut: read it whole
                end = last_instant + timedelta(microseconds=1)
                instant = self._slice(cursor, columns, last_instant, end)
                read["in time slices"] += instant.num_rows
                yield instant
                start = end
        return window.end

    def _slice(
        self, cursor, columns: list[SourceColumn], start: datetime, end: datetime, order_limit: str = ""
    ) -> pa.Table:
        cursor.execute(f"{self._rows_between(columns, start, end)} {order_limit}")
        return cursor.fetch_arrow_table()

    def _fetched_in_bursts(
        self, cursor, columns: list[SourceColumn], start: datetime, end: datetime, read: dict
    ) -> Iterator[pa.Table]:
        """The rows from `start` to `end` through a cursor, FETCHed a burst of `max_burst_ms` at a time."""
        cursor.execute(f"DECLARE extract NO SCROLL CURSOR FOR {self._rows_between(columns, start, end)}")
        # COPY cannot wrap a FETCH; plain results carry the same Arrow types.
        cursor.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
        size = self.burst_rows()
        while True:
            rows = int(size.size)
            fetching = time.monotonic()
            cursor.execute(f"FETCH FORWARD {rows} FROM extract")
            # The piece's time on the database is the statement's round trip. Turning the result into Arrow
            # afterwards is ours alone: timed with it, the pieces came out half the database's share.
            took = time.monotonic() - fetching
            fetched = cursor.fetch_arrow_table()
            size.after(took, fetched.num_rows)
            read["in bursts"] += fetched.num_rows
            yield fetched
            if fetched.num_rows < rows:
                return

    def estimate_day_rows(self, window: DayWindow) -> int | None:
        """The planner's estimate of the day's rows (EXPLAIN: nothing is read), or None if there is none.

        The stage uses it to size a day's files evenly; a wrong estimate only makes the sizes less even.
        """
        sql = f"EXPLAIN (FORMAT JSON) {self._rows_between(None, window.start, window.end)}"
        try:
            with self.connect(f"estimate {window.partition_key}") as conn:
                plan = conn.execute(sql).fetchone()[0]
            return int(plan[0]["Plan"]["Plan Rows"])
        except (PostgresSourceError, LookupError, TypeError, ValueError):
            return None


def _gathered(pieces: Iterator[pa.Table], batch_bytes: int):
    """`pieces` as record batches of about `batch_bytes`: small ones put together (a copy), none made larger
    than that by it, so a slice's batches (ADBC's, of about that size) pass on as they are. Returns what
    `pieces` returned."""
    gathered: list[pa.RecordBatch] = []
    gathered_bytes = 0

    def together() -> pa.RecordBatch:
        return gathered[0] if len(gathered) == 1 else pa.concat_batches(gathered)

    while True:
        try:
            piece = next(pieces)
        except StopIteration as end:
            if gathered:
                yield together()
            return end.value
        for batch in piece.to_batches():
            if gathered and gathered_bytes + batch.nbytes > batch_bytes:
                yield together()
                gathered, gathered_bytes = [], 0
            gathered.append(batch)
            gathered_bytes += batch.nbytes
            if gathered_bytes >= batch_bytes:
                yield together()
                gathered, gathered_bytes = [], 0


def _as_utc(value: datetime) -> datetime:
    """A partition column's value as an aware UTC datetime: a naive `timestamp` is UTC wall-clock time."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


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


@dataclass
class SourceDay:
    """One partition of the source, not yet read: `open()` starts its read-only stream."""

    postgres: "PostgresResource"
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
