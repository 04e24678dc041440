"""Aggregates over a table's days on PostgreSQL: the observation's and the drift scan's per-day summaries, and
each day's fingerprint over every column (verification/fingerprint.py)."""

import time
from datetime import timedelta

import psycopg

from datavault_analytics.identifiers import quote_postgres
from datavault_analytics.postgres.bursts import (
    FIRST_BURST_ROWS,
    FIRST_SLICE_SECONDS,
    LEAST_PIECE_ROWS,
    MOST_DAYS_AT_ONCE,
    SLICE_ROWS_BOUND,
    BurstSize,
    OthersAtWork,
)
from datavault_analytics.postgres.catalog import SourceColumn
from datavault_analytics.table.day_window import DayWindow, as_utc
from datavault_analytics.verification.fingerprint import DaySummary, Fingerprint, postgres_row_number

# The days of a LATERAL count, and its table, under names of their own: an unqualified `d` in the day's bounds
# was the source table's own column when it had one named so (the soak's table of the new types has a date `d`),
# and every day counted 0 rows.
DAYS = "unnest(%s::timestamptz[]) AS datavault_days(day_start)"
DAY_START = "datavault_days.day_start"
SOURCE = "datavault_source"


class DayAggregates:
    """PostgresResource's aggregate reads (a mixin: `self` is the resource)."""

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
        in the day's one REPEATABLE READ snapshot; the slices' counts add up and their maxima give the day's.
        While no other application works (`alone_burst_ms`), a day is one such aggregate, as whole."""
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
            latest, latest_update = as_utc(latest), as_utc(latest_update)
            for key, value in (("latest", latest), ("latest_update", latest_update)):
                if value is not None and (day_so_far[key] is None or value > day_so_far[key]):
                    day_so_far[key] = value
                    if key == "latest_update":
                        day_so_far["latest_update_us"] = latest_update_us

        with self.connect(purpose) as conn:
            updated = self._updated_at_or_null(conn)
            conn.commit()  # the catalog read and the scan are each their own transaction
            select = aggregates.format(c=column, u=updated)
            days_sql = (
                f"SELECT to_char({DAY_START} AT TIME ZONE 'UTC', 'YYYY-MM-DD'), s.* FROM {DAYS} "  # noqa: S608
                f"CROSS JOIN LATERAL (SELECT {select} FROM {self.qualified_table} AS {SOURCE} WHERE {column} >= "
                f"{DAY_START} AND {column} < {DAY_START} + interval '1 day') AS s WHERE s.count > 0"
            )
            if not self.in_bursts:
                reading = time.monotonic()
                for row in conn.execute(days_sql, ([w.start for w in windows],)).fetchall():
                    add(*row)
                self.rest_after(time.monotonic() - reading)
                return found
            # A slice is also bounded in rows: a width grown over empty or sparse days must not take a dense
            # day whole in one statement (_count_in_slices).
            sql = (
                f"SELECT {aggregates.format(c='c', u='u')} FROM (SELECT {column} AS c, {updated} AS u "  # noqa: S608
                f"FROM {self.qualified_table} WHERE {column} >= %s AND {column} < %s ORDER BY {column} "
                "LIMIT %s) AS piece"
            )
            # While alone, runs of days at once, each day bounded in rows (_count_in_slices).
            runs_sql = (
                f"SELECT to_char({DAY_START} AT TIME ZONE 'UTC', 'YYYY-MM-DD'), s.* FROM {DAYS} "  # noqa: S608
                f"CROSS JOIN LATERAL (SELECT {aggregates.format(c='c', u='u')} FROM (SELECT {column} AS c, "
                f"{updated} AS u FROM {self.qualified_table} AS {SOURCE} WHERE {column} >= {DAY_START} AND "
                f"{column} < {DAY_START} + interval '1 day' ORDER BY {column} LIMIT %s) AS piece) AS s "
                "WHERE s.count > 0"
            )
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with self.others_at_work() as others:
                self._count_in_slices(conn, sql, (runs_sql, self.window_sql(select)), windows, others, add)
        return found

    def _count_in_slices(
        self,
        conn,
        sql: str,
        alone_sql: tuple[str, str],
        windows: list[DayWindow],
        others: OthersAtWork | None,
        add,
    ) -> None:
        """Each day of `windows` counted in time slices (`sql`), in the day's one snapshot (see
        _day_aggregates).

        While `others` finds no one else at work, a run of days is counted in one statement (`alone_sql`'s
        first), as many as take about `alone_burst_ms`, each day bounded to its share of the rows such a piece
        counts: a long history's empty days go many at once (a statement and a look per empty day took half
        the cheap tier's time), and a dense day among them is cut short and counted alone (the second).

        A slice's width follows the time its count took. Its `LIMIT` is SLICE_ROWS_BOUND times the rows the
        database counts in a burst, learned from every slice, so only a sudden rise in density reaches it: such a
        slice is counted again, narrower, once (re-counting every slice that filled a one-burst `LIMIT` cost
        the database twice the CPU)."""
        width = BurstSize(self.max_burst_ms / 1000, FIRST_SLICE_SECONDS, 1e-3, 86_400)
        burst = self.max_burst_ms / 1000
        rows_per_second = FIRST_BURST_ROWS / burst
        days_at_once, next_day = 1, 0
        for index, window in enumerate(windows):
            if index < next_day:  # counted in the run of days before it
                continue
            if others is not None and others.look():
                run = windows[index : index + days_at_once]
                next_day = index + len(run)
                rows_per_second, days_at_once = self._count_run_alone(
                    conn, alone_sql, run, rows_per_second, days_at_once, add
                )
                continue
            start = window.start
            while start < window.end:
                end = min(start + timedelta(seconds=width.next()), window.end)
                limit = max(LEAST_PIECE_ROWS, int(SLICE_ROWS_BOUND * rows_per_second * burst)) + 1
                reading = time.monotonic()
                row = conn.execute(sql, (start, end, limit), prepare=True).fetchone()
                took = time.monotonic() - reading
                self.rest_after(took)
                seen = max(row[0], LEAST_PIECE_ROWS) / max(took, 1e-6)
                if row[0] > LEAST_PIECE_ROWS:
                    rows_per_second = min(2 * rows_per_second, max(rows_per_second / 2, seen))
                else:  # a slice of so few rows takes the statement's own time: it only bounds the speed
                    rows_per_second = min(rows_per_second, max(rows_per_second / 2, seen))
                if row[0] == limit:
                    if as_utc(row[1]) > start:
                        width.size = (as_utc(row[1]) - start).total_seconds() / SLICE_ROWS_BOUND
                        continue
                    # more than a slice's rows at one instant: that instant cannot be cut, count it whole
                    end = start + timedelta(microseconds=1)
                    row = conn.execute(sql, (start, end, None), prepare=True).fetchone()
                else:
                    width.after(took, row[0])
                if row[0]:
                    add(window.partition_key, *row)
                start = end
            conn.commit()  # one snapshot per day, as the fingerprints

    def _count_run_alone(
        self, conn, alone_sql: tuple[str, str], run: list[DayWindow], rows_per_second: float, days: int, add
    ) -> tuple[float, int]:
        """Counts `run` (see _count_in_slices); the counting speed and the next run's days, learned from it."""
        runs_sql, day_sql = alone_sql
        alone = self.alone_burst_ms / 1000
        day_rows = max(LEAST_PIECE_ROWS, int(rows_per_second * alone / len(run)))
        reading = time.monotonic()
        rows = conn.execute(runs_sql, ([w.start for w in run], day_rows + 1), prepare=True).fetchall()
        took = time.monotonic() - reading
        counted = sum(row[1] for row in rows)
        for row in rows:
            if row[1] <= day_rows:
                add(*row)
        conn.commit()
        for row in rows:
            if row[1] > day_rows:  # a dense day: counted alone, whole
                [window] = [w for w in run if w.partition_key == row[0]]
                found = conn.execute(day_sql, (window.start, window.end), prepare=True).fetchone()
                add(window.partition_key, *found)
                conn.commit()
        if counted > LEAST_PIECE_ROWS:
            rows_per_second = min(2 * rows_per_second, max(rows_per_second / 2, counted / max(took, 1e-6)))
        if took < alone / 2 and not any(row[1] > day_rows for row in rows):
            days = min(2 * days, MOST_DAYS_AT_ONCE)
        elif took > 2 * alone:
            days = max(1, days // 2)
        return rows_per_second, days

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
        workers. In bursts: the rows' numbers FETCHed from a cursor, as many as take `max_burst_ms`
        (`alone_burst_ms` while no other application works), and summed here; the fingerprint is a sum, so the
        answer is the same."""
        if not windows:
            return {}
        numbers_sql = self.window_sql(row_number_sql(columns))
        found = {}
        with self.connect("fingerprints") as conn, self.others_at_work() as others:
            conn.commit()
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            for window in windows:
                if self.in_bursts:
                    found[window.partition_key] = self._fingerprint_in_bursts(
                        conn, numbers_sql, window, others
                    )
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
        self, conn: psycopg.Connection, numbers_sql: str, window: DayWindow, others: OthersAtWork | None
    ) -> Fingerprint:
        rows, total, size = 0, 0, self.burst_rows(others)
        with conn.cursor(name="fingerprint") as cursor:
            cursor.execute(numbers_sql, (window.start, window.end))
            while True:
                if others is not None:
                    others.look()
                wanted = int(size.next())
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
    # Over the values as they are read (the select's casts), so both sides hash what was loaded.
    values = {c.name: c.value_sql for c in columns}
    return postgres_row_number([(c.name, c.mapping.canonical) for c in columns], values.__getitem__)
