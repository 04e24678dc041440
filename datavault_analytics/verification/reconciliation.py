"""Per-day reconciliation between PostgreSQL and Snowflake: row counts and content fingerprints, both in SQL."""

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.manifest import staged_columns
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics.verification.fingerprint import Fingerprint


@dataclass(frozen=True)
class DayReconciliation:
    day: str
    postgres: Fingerprint
    snowflake: Fingerprint
    surplus_rows: int = 0  # Snowflake rows beyond one per primary key
    staged_files: int | None = None
    staged_bytes: int | None = None
    postgres_read_by_load: bool = False  # PostgreSQL's side came from the load, not read just now

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


@dataclass(frozen=True)
class SourceFingerprints:
    """PostgreSQL's fingerprints of some days, with the columns they cover (a new column voids them)."""

    columns: tuple[str, ...]
    days: dict[str, Fingerprint] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"columns": list(self.columns), "days": {day: str(f) for day, f in self.days.items()}}

    @classmethod
    def from_json(cls, value: object) -> "SourceFingerprints | None":
        try:
            return cls(tuple(value["columns"]), {d: Fingerprint.parse(f) for d, f in value["days"].items()})
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # written by another version: the checks read PostgreSQL themselves


@dataclass
class SourceFingerprintReader:
    """Reads PostgreSQL's fingerprints of the days in a thread, one transaction per day, while the caller
    does something else; after `stop()` it reads no further day."""

    postgres: PostgresResource
    windows: list[DayWindow]
    _stop: threading.Event = field(default_factory=threading.Event)
    _result: Future | None = None

    def start(self) -> "SourceFingerprintReader":
        pool = ThreadPoolExecutor(1, thread_name_prefix="postgres-fingerprints")
        self._result = pool.submit(self._read)
        pool.shutdown(wait=False)  # its one thread ends with the read
        return self

    def _read(self) -> SourceFingerprints:
        columns = self.postgres.source_columns()
        read = SourceFingerprints(tuple(c.name for c in columns))
        for window in self.windows:
            if self._stop.is_set():
                break
            read.days.update(self.postgres.fingerprints([window], columns))
        return read

    def stop(self) -> None:
        self._stop.set()

    def result(self) -> SourceFingerprints:
        """Waits for the read to end; raises what it raised."""
        return self._result.result()


@contextmanager
def source_fingerprints_meanwhile(
    postgres: PostgresResource, windows: list[DayWindow]
) -> Iterator[SourceFingerprintReader]:
    """PostgreSQL's side of the checks, read while the caller loads Snowflake: a COPY runs on the
    warehouse, which leaves PostgreSQL's reads free to overlap it. Stopped if the caller fails."""
    reader = SourceFingerprintReader(postgres, windows).start()
    try:
        yield reader
    except BaseException:
        reader.stop()
        raise


def reconcile(
    postgres: PostgresResource,
    snowflake: SnowflakeLoader,
    windows: list[DayWindow],
    staged: dict[str, tuple[int, int]] | None = None,
    source_read: SourceFingerprints | None = None,
) -> list[DayReconciliation]:
    """Compare each day on both sides, over every source column; both queries run at once.

    `staged` optionally maps day -> (files, bytes) for the report. `source_read`: PostgreSQL's fingerprints
    of some of the days, already read (by the load, while Snowflake loaded); only the other days are read,
    and only if they cover the source's columns of now."""
    columns = postgres.source_columns()
    known = source_read.days if source_read and source_read.columns == tuple(c.name for c in columns) else {}
    unread = [w for w in windows if w.partition_key not in known]
    with ThreadPoolExecutor(2, thread_name_prefix="fingerprints") as pool:
        source = pool.submit(postgres.fingerprints, unread, columns)
        target = pool.submit(snowflake.fingerprints, windows, staged_columns(columns))
        source, target = {**known, **source.result()}, target.result()
    staged = staged or {}
    return [
        DayReconciliation(
            w.partition_key,
            source[w.partition_key],
            *target[w.partition_key],
            *staged.get(w.partition_key, (None, None)),
            postgres_read_by_load=w.partition_key in known,
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
