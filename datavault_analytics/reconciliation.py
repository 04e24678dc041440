"""Per-day reconciliation between PostgreSQL and Snowflake: row counts and content fingerprints, both in SQL."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from datavault_analytics.day_window import DayWindow
from datavault_analytics.fingerprint import Fingerprint
from datavault_analytics.resources.postgres import PostgresResource
from datavault_analytics.resources.snowflake import SnowflakeLoader
from datavault_analytics.resources.stage_manifest import staged_columns


@dataclass(frozen=True)
class DayReconciliation:
    day: str
    postgres: Fingerprint
    snowflake: Fingerprint
    surplus_rows: int = 0  # Snowflake rows beyond one per primary key
    staged_files: int | None = None
    staged_bytes: int | None = None

    @property
    def postgres_rows(self) -> int:
        return self.postgres.rows

    @property
    def snowflake_rows(self) -> int:
        return self.snowflake.rows

    @property
    def matches(self) -> bool:
        return self.postgres == self.snowflake

    def difference(self) -> str:
        """What differs, in words a reader can act on."""
        if self.matches:
            return "matches"
        parts = []
        if self.postgres_rows != self.snowflake_rows:
            parts.append(f"PostgreSQL has {self.postgres_rows:,} rows, Snowflake {self.snowflake_rows:,}")
        else:
            parts.append("same row count, but the content fingerprint differs, so some rows' values differ")
        parts.append(f"fingerprints: PostgreSQL {self.postgres}, Snowflake {self.snowflake}")
        return f"{self.day}: " + "; ".join(parts)


def reconcile(
    postgres: PostgresResource,
    snowflake: SnowflakeLoader,
    windows: list[DayWindow],
    staged: dict[str, tuple[int, int]] | None = None,
) -> list[DayReconciliation]:
    """Compare each day on both sides, over every source column; both queries run at once.

    `staged` optionally maps day -> (files, bytes) for the report."""
    columns = postgres.source_columns()
    with ThreadPoolExecutor(2, thread_name_prefix="fingerprints") as pool:
        source = pool.submit(postgres.fingerprints, windows, columns)
        target = pool.submit(snowflake.fingerprints, windows, staged_columns(columns))
        source, target = source.result(), target.result()
    staged = staged or {}
    return [
        DayReconciliation(
            w.partition_key,
            source[w.partition_key],
            *target[w.partition_key],
            *staged.get(w.partition_key, (None, None)),
        )
        for w in windows
    ]


def render_table(days: list[DayReconciliation]) -> str:
    header = ("day", "postgres rows", "files", "bytes staged", "snowflake rows", "fingerprint (all columns)")
    rows = [
        (
            d.day,
            f"{d.postgres_rows:,}",
            "-" if d.staged_files is None else str(d.staged_files),
            "-" if d.staged_bytes is None else f"{d.staged_bytes:,}",
            f"{d.snowflake_rows:,}",
            "match" if d.matches else "MISMATCH",
        )
        for d in days
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells) -> str:  # numbers right-aligned, text left-aligned
        return "  ".join(
            c.rjust(w) if i in (1, 2, 3, 4) else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])
