"""Realistic DataVault rows for the local stack, the tests and the benchmarks.

Payloads are really encrypted (AES-256-GCM) under a key that is then dropped, and each day has rows at
both of its edges; docs/local-stack.md says why.
"""

import base64
import random
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

RECORDS_SQL = Path(__file__).resolve().parent.parent / "sql" / "records.sql"
RETRIEVAL_LOG_SQL = Path(__file__).resolve().parent.parent / "sql" / "retrieval_log.sql"
# DataVault's DDL, every table the demo ships (datavault_analytics/defs/).
SOURCE_DDL = (RECORDS_SQL, RETRIEVAL_LOG_SQL)
RETRIEVAL_LOG_COLUMNS = (
    "record_id",
    "requested_by",
    "found",
    "client",
    "error_code",
    "latency_ms",
    "retrieved_at",
)
RECORD_COLUMNS = ("id", "owner_id", "key", "ciphertext", "nonce", "created_at", "updated_at")
RECORD_POSTGRES_TYPES = ("uuid", "int8", "text", "bytea", "bytea", "timestamptz", "timestamptz")

CIPHERTEXT_MIN_BYTES = 200  # AES-GCM output, the 16-byte tag included
CIPHERTEXT_MAX_BYTES = 400
GCM_TAG_BYTES = 16
NONCE_BYTES = 12
UPDATED_FRACTION = 0.15
MICROSECONDS_PER_DAY = 86_400_000_000
OWNER_COUNT = 5_000

Record = tuple[uuid.UUID, int, str, bytes, bytes, datetime, datetime | None]


@dataclass(frozen=True)
class SeedResult:
    rows_per_day: dict[date, int]

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_day.values())


def last_full_days(count: int, today: date | None = None) -> list[date]:
    """The last `count` complete UTC days, oldest first, ending yesterday."""
    if count < 0:
        raise ValueError("count must not be negative")
    today = today or datetime.now(UTC).date()
    return [today - timedelta(days=back) for back in range(count, 0, -1)]


def day_edge_offsets(rng: random.Random, count: int) -> list[int]:
    """Microsecond offsets into a day for its edge rows: both exact edges, then within a second of each."""
    last = MICROSECONDS_PER_DAY - 1
    edges = [0, last, rng.randrange(1, 1_000_000), last - rng.randrange(1, 1_000_000)]
    return edges[:count]


def generate_records(
    days: Iterable[date], rows_per_day: int, seed: int | None = None, now: datetime | None = None
) -> Iterator[Record]:
    """Rows for `records`, day by day in created_at order; the same seed gives the same rows."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if rows_per_day < 0:
        raise ValueError("rows_per_day must not be negative")
    rng = random.Random(seed if seed is not None else secrets.randbits(128))
    key = rng.randbytes(32) if seed is not None else secrets.token_bytes(32)
    encrypt = AESGCM(key).encrypt
    del key  # the pipeline never sees it; neither does anything after this line
    now = now or datetime.now(UTC)
    owners = [rng.randrange(1, 2**63) for _ in range(OWNER_COUNT)]
    plaintext_min = CIPHERTEXT_MIN_BYTES - GCM_TAG_BYTES
    plaintext_span = CIPHERTEXT_MAX_BYTES - CIPHERTEXT_MIN_BYTES + 1
    randbytes, randrange, uniform = rng.randbytes, rng.randrange, rng.random

    for day in days:
        day_start = datetime.combine(day, time(0), tzinfo=UTC)
        offsets = day_edge_offsets(rng, min(4, rows_per_day))
        offsets += [int(uniform() * MICROSECONDS_PER_DAY) for _ in range(rows_per_day - len(offsets))]
        offsets.sort()
        for offset in offsets:
            plaintext_size = plaintext_min + int(uniform() * plaintext_span)
            # One draw per row for the id, the nonce and the document body: the generator is the hot loop.
            body_size = plaintext_size - _DOCUMENT_OVERHEAD
            random_bytes = randbytes(16 + NONCE_BYTES + body_size * 3 // 4 + 3)
            record_id = uuid.UUID(bytes=random_bytes[:16], version=4)
            record_id_text = str(record_id)
            nonce = random_bytes[16 : 16 + NONCE_BYTES]
            body = base64.b64encode(random_bytes[16 + NONCE_BYTES :])[:body_size]
            plaintext = b'{"id":"' + record_id_text.encode() + b'","body":"' + body + b'"}'
            ciphertext = encrypt(nonce, plaintext, record_id.bytes)
            owner_id = owners[int(uniform() * OWNER_COUNT)]
            created_at = day_start + timedelta(microseconds=offset)
            updated_at = None
            if uniform() < UPDATED_FRACTION:
                updated_at = min(
                    created_at + timedelta(microseconds=randrange(1, 3 * MICROSECONDS_PER_DAY)), now
                )
            yield (
                record_id,
                owner_id,
                f"owner-{owner_id}/doc-{record_id_text}",
                ciphertext,
                nonce,
                created_at,
                updated_at,
            )


# The plaintext is a JSON document {"id":"<uuid>","body":"<base64>"}: what a DataVault client would encrypt.
_DOCUMENT_OVERHEAD = len(b'{"id":"') + 36 + len(b'","body":"') + len(b'"}')


def ensure_source_tables(conn: "psycopg.Connection") -> None:
    """Apply DataVault's DDL (idempotent) on a psycopg connection."""
    for ddl in SOURCE_DDL:
        conn.execute(ddl.read_text())


def seed_records(
    dsn: str,
    days: int | Iterable[date],
    rows_per_day: int,
    seed: int | None = None,
    *,
    now: datetime | None = None,
) -> SeedResult:
    """Append rows_per_day fresh records for each day to `records` (created if missing) at dsn.

    days is either a count (the last N full UTC days, ending yesterday) or an explicit list of days.
    With a seed the rows are the same on every call (so seeding twice with one seed collides on id);
    without one, every call appends new rows.
    """
    import psycopg

    day_list = last_full_days(days) if isinstance(days, int) else sorted(set(days))
    copy_sql = f"copy public.records ({', '.join(RECORD_COLUMNS)}) from stdin (format binary)"
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        ensure_source_tables(conn)
        with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
            copy.set_types(list(RECORD_POSTGRES_TYPES))
            for record in generate_records(day_list, rows_per_day, seed=seed, now=now):
                copy.write_row(record)
    return SeedResult(rows_per_day={day: rows_per_day for day in day_list})


def generate_retrievals(days: Iterable[date], rows_per_day: int, seed: int | None = None) -> Iterator[tuple]:
    """Rows for `retrieval_log`, day by day: found and missed lookups, JSON client details (some with
    non-ASCII text), NULL error codes and latencies where a real log has them."""
    import json

    rng = random.Random(seed if seed is not None else secrets.randbits(128))
    agents = ["datavault-cli/2.4", "backend-sync/1.9", "portal/7.0 (Zürich)", "batch-export/0.3 ☃"]
    for day in days:
        day_start = datetime.combine(day, time(0), tzinfo=UTC)
        offsets = day_edge_offsets(rng, min(4, rows_per_day))
        offsets += [rng.randrange(MICROSECONDS_PER_DAY) for _ in range(rows_per_day - len(offsets))]
        for offset in sorted(offsets):
            found = rng.random() < 0.9
            client = {"agent": rng.choice(agents), "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.7"}
            if rng.random() < 0.3:
                client["region"] = rng.choice(["eu-central-1", "us-east-1"])
            yield (
                uuid.UUID(int=rng.getrandbits(128), version=4),
                f"service-{rng.randrange(40)}",
                found,
                json.dumps(client, ensure_ascii=False),
                None if found else rng.choice(["NOT_FOUND", "ERASED", "DENIED"]),
                None if rng.random() < 0.05 else round(rng.uniform(0.2, 40.0), 3),
                day_start + timedelta(microseconds=offset),
            )


def seed_retrieval_log(
    dsn: str, days: int | Iterable[date], rows_per_day: int, seed: int | None = None
) -> SeedResult:
    """Append rows_per_day retrievals for each day to `retrieval_log` (created if missing) at dsn."""
    import psycopg

    day_list = last_full_days(days) if isinstance(days, int) else sorted(set(days))
    copy_sql = f"copy public.retrieval_log ({', '.join(RETRIEVAL_LOG_COLUMNS)}) from stdin"
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        ensure_source_tables(conn)
        with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in generate_retrievals(day_list, rows_per_day, seed=seed):
                copy.write_row(row)
    return SeedResult(rows_per_day={day: rows_per_day for day in day_list})
