"""Per-day reconciliation between PostgreSQL and Snowflake: row counts and content hashes, both in SQL."""

from dataclasses import dataclass

from datavault_analytics.partitions import DayWindow
from datavault_analytics.resources.postgres import PostgresResource
from datavault_analytics.resources.snowflake import SnowflakeLoader


@dataclass(frozen=True)
class DayReconciliation:
    day: str
    postgres_rows: int
    postgres_hash: str
    snowflake_rows: int
    snowflake_hash: str
    staged_files: int | None = None
    staged_bytes: int | None = None

    @property
    def matches(self) -> bool:
        return self.postgres_rows == self.snowflake_rows and self.postgres_hash == self.snowflake_hash

    def difference(self) -> str:
        """What differs, in words a reader can act on."""
        if self.matches:
            return "matches"
        parts = []
        if self.postgres_rows != self.snowflake_rows:
            parts.append(f"PostgreSQL has {self.postgres_rows:,} rows, Snowflake {self.snowflake_rows:,}")
        if self.postgres_hash != self.snowflake_hash:
            parts.append(
                f"content hash differs (PostgreSQL {self.postgres_hash[:12]}..., Snowflake {self.snowflake_hash[:12]}...)"
            )
        return f"{self.day}: " + "; ".join(parts)


def reconcile(postgres: PostgresResource, snowflake: SnowflakeLoader, windows: list[DayWindow],
              staged: dict[str, tuple[int, int]] | None = None) -> list[DayReconciliation]:
    """Compare each day on both sides. `staged` optionally maps day -> (files, bytes) for the report."""
    source = postgres.fingerprints(windows)
    target = snowflake.fingerprints(windows)
    staged = staged or {}
    return [
        DayReconciliation(
            w.partition_key, *source[w.partition_key], *target[w.partition_key], *staged.get(w.partition_key, (None, None))
        )
        for w in windows
    ]


def render_table(days: list[DayReconciliation]) -> str:
    header = ("day", "postgres rows", "files", "bytes staged", "snowflake rows", "hash (id, ciphertext)")
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
    line = lambda cells: "  ".join(c.rjust(w) if i in (1, 2, 3, 4) else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])
