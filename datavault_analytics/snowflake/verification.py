"""What the checks and the drift scan read back from Snowflake: per-day fingerprints, summaries and duplicates,
each one aggregate query with no sort."""

from datavault_analytics.identifiers import quote_snowflake
from datavault_analytics.stage.manifest import StagedColumn
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics.verification.fingerprint import EMPTY, DaySummary, Fingerprint, snowflake_row_number


class ReadBack:
    """SnowflakeLoader's verification queries (a mixin: `self` is the loader)."""

    def fingerprint_select(self, columns: list[StagedColumn]) -> str:
        """The select list of a fingerprint over `columns` (fingerprint.py): rows, sum, surplus rows (rows
        beyond one per primary key)."""
        number = snowflake_row_number(
            [(c.name, self.table.mapping_of(c.name, c.postgres_type).canonical) for c in columns],
            quote_snowflake,
        )
        # Cast, so the SUM is a NUMBER(38,0) (and the emulator sums it exactly), and passed as text, so that no
        # client converts it through a float.
        # COUNT(DISTINCT a, b) counts distinct key tuples (a key column is never NULL).
        key = ", ".join(quote_snowflake(c) for c in self.table.primary_key)
        return f"COUNT(*), TO_VARCHAR(SUM({number}::NUMBER(19, 0))), COUNT(*) - COUNT(DISTINCT {key})"

    def fingerprints(
        self, windows: list[DayWindow], columns: list[StagedColumn]
    ) -> dict[str, tuple[Fingerprint, int]]:
        """Per day: its fingerprint over `columns` and its surplus rows, in one aggregate query, no sort."""
        if not windows:
            return {}
        column = quote_snowflake(self.table.partition_column)
        sql = (
            f"SELECT TO_VARCHAR(TO_DATE({column}), 'YYYY-MM-DD') AS day, {self.fingerprint_select(columns)} "  # noqa: S608
            f"FROM {quote_snowflake(self.table_name)} WHERE {column} >= %s AND {column} < %s GROUP BY 1"
        )
        start, end = min(windows, key=lambda w: w.start), max(windows, key=lambda w: w.end)
        try:
            with self.connection("datavault-analytics fingerprints") as conn:
                cursor = conn.cursor()
                if not self.table_columns(cursor):
                    return {w.partition_key: (EMPTY, 0) for w in windows}
                cursor.execute(sql, (start.start_ntz, end.end_ntz))
                found = {
                    day: (Fingerprint(int(n), int(total or 0)), int(surplus))
                    for day, n, total, surplus in cursor.fetchall()
                }
        except Exception as error:
            raise self._fail("Reading fingerprints from Snowflake failed", error) from None
        return {w.partition_key: found.get(w.partition_key, (EMPTY, 0)) for w in windows}

    def day_summaries(self, first: DayWindow, last: DayWindow) -> dict[str, DaySummary]:
        """Every day from `first` to `last` with rows: its row count and latest `updated_at`, one query."""
        column = quote_snowflake(self.table.partition_column)
        try:
            with self.connection("datavault-analytics drift scan") as conn:
                cursor = conn.cursor()
                existing = self.table_columns(cursor)
                if not existing:
                    return {}
                updated_at = (self.table.updated_at_column or "").upper()
                # A table without the column has no latest update: a typed NULL (DATE_PART of a bare NULL
                # cannot be typed by every engine).
                latest = (
                    f"TO_VARCHAR(DATE_PART(EPOCH_MICROSECOND, MAX({quote_snowflake(updated_at)})))"
                    if updated_at in existing
                    else "NULL::VARCHAR"
                )
                cursor.execute(
                    f"SELECT TO_VARCHAR(TO_DATE({column}), 'YYYY-MM-DD') AS day, COUNT(*), "  # noqa: S608
                    f"{latest} FROM {quote_snowflake(self.table_name)} "
                    f"WHERE {column} >= %s AND {column} < %s GROUP BY 1",
                    (first.start_ntz, last.end_ntz),
                )
                rows = cursor.fetchall()
        except Exception as error:
            raise self._fail("Reading the per-day summaries from Snowflake failed", error) from None
        return {day: DaySummary(int(n), None if u is None else int(u)) for day, n, u in rows}

    def duplicate_ids(self, windows: list[DayWindow]) -> dict[str, tuple[int, int]]:
        """Per day: (ids that appear more than once, surplus rows). Run only for days whose fingerprint found
        surplus rows: it groups by id. No id is returned: record ids stay out of Dagster's event log."""
        if not windows:
            return {}
        key = ", ".join(quote_snowflake(c) for c in self.table.primary_key)
        column = quote_snowflake(self.table.partition_column)
        groups = ", ".join(str(n) for n in range(1, len(self.table.primary_key) + 2))
        sql = (
            "SELECT day, COUNT(*), SUM(n) - COUNT(*) FROM ("  # noqa: S608
            f"SELECT TO_VARCHAR(TO_DATE({column}), 'YYYY-MM-DD') AS day, {key}, COUNT(*) AS n FROM "
            f"{quote_snowflake(self.table_name)} WHERE {column} >= %s AND {column} < %s GROUP BY {groups} "
            "HAVING COUNT(*) > 1) GROUP BY day"
        )
        start, end = min(w.start_ntz for w in windows), max(w.end_ntz for w in windows)
        with self.connection("datavault-analytics duplicate ids") as conn:
            cursor = conn.cursor()
            cursor.execute(sql, (start, end))
            found = {day: (int(ids), int(surplus)) for day, ids, surplus in cursor.fetchall()}
        return {w.partition_key: found.get(w.partition_key, (0, 0)) for w in windows}
