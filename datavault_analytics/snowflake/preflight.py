"""`datavault-analytics snowflake preflight`: proves on the configured account, without touching the target
table, that a load will be exact, by sending a canary file of awkward rows through the production path.
"""

import math
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pyarrow as pa

from datavault_analytics.identifiers import quote_snowflake
from datavault_analytics.postgres.catalog import SourceColumn
from datavault_analytics.redaction import redact_known_secrets
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.manifest import staged_columns
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.stage.writer import ParquetDayWriter
from datavault_analytics.type_mapping import mapping_for
from datavault_analytics.verification.fingerprint import Fingerprint, python_fingerprint

PREFLIGHT_FOLDER = "_preflight"
# DataVault's records table as PostgreSQL types it, and a float and a boolean (other tables have them): the
# canary has these columns.
CANARY_COLUMNS = [
    ("id", "uuid", False),
    ("owner_id", "bigint", False),
    ("key", "text", False),
    ("ciphertext", "bytea", False),
    ("nonce", "bytea", False),
    ("created_at", "timestamp with time zone", False),
    ("updated_at", "timestamp with time zone", True),
    ("latency_ms", "double precision", True),
    ("found", "boolean", True),
    # what the type matrix adds to Parquet: a decimal, a time, and text that Snowflake parses in the view
    ("amount", "numeric(12,2)", True),
    ("at_time", "time without time zone", True),
    ("span", "interval", True),
    ("tags", "text[]", True),
]
CANARY_AMOUNTS = [
    Decimal("1234567890.12"),
    Decimal("-0.01"),
    Decimal("0.00"),
    Decimal("-9999999999.99"),
    None,
]
CANARY_TIMES = [time(0), time(23, 59, 59, 999999), time(12, 30, 0, 1), None]
# Floats that engines print differently (integral, exponent notation, subnormal, the largest, specials).
CANARY_FLOATS = [12.0, 0.1, 1e20, 5e-324, 1.7976931348623157e308, float("nan"), -2.5e-300]
MIDNIGHT = datetime(2026, 11, 2, tzinfo=UTC)


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.check:<22} {'ok' if self.passed else 'FAIL':<4}  {self.detail}" + (
            f"\n{'':<28}fix: {self.fix}" if not self.passed and self.fix else ""
        )


def canary_rows() -> list[dict]:
    """Rows that catch what a lenient load gets wrong: bytes that are not text, edge timestamps, NULLs."""

    def row(
        n: int, ciphertext: bytes, created_at: datetime, updated_at: datetime | None = None, key: str = "k"
    ):
        return {
            "id": str(uuid.UUID(int=n)),
            "owner_id": n,
            "key": key,
            "ciphertext": ciphertext,
            "nonce": bytes(range(n, n + 12)),
            "created_at": created_at,
            "updated_at": updated_at,
        }

    microsecond = timedelta(microseconds=1)
    rows = [
        row(1, b"\x00nul\x00", MIDNIGHT - microsecond, MIDNIGHT),
        row(2, b"\xff\xfe\xfd", MIDNIGHT, MIDNIGHT + microsecond),
        row(3, b"\xc3\x28\xa0\xa1 invalid utf-8 \xe2\x82", MIDNIGHT + microsecond),
        row(4, b"", MIDNIGHT + timedelta(hours=5)),
        row(5, bytes(range(256)) * 4096, MIDNIGHT + timedelta(hours=6), None, key="ключ-🔑-clé"),
        row(
            6, b"0123456789abcdef", MIDNIGHT - timedelta(hours=9), None
        ),  # valid hex: mis-loaded, never an error
    ]
    for n, canary in enumerate(rows):
        canary["latency_ms"] = CANARY_FLOATS[n] if n < len(CANARY_FLOATS) - 1 else None
        canary["found"] = None if n == 0 else n % 2 == 0
        canary["amount"] = CANARY_AMOUNTS[n % len(CANARY_AMOUNTS)]
        canary["at_time"] = CANARY_TIMES[n % len(CANARY_TIMES)]
        canary["span"] = ["P1Y2M3DT4H5M6S", "P-1DT0.000001S", None][n % 3]
        canary["tags"] = ['["a","b|c",null,""]', "[[1,2],[3,null]]", "[]", None][n % 4]
    rows.append(
        row(7, b"\x01", MIDNIGHT + timedelta(hours=7))
        | {"latency_ms": CANARY_FLOATS[-1], "found": True, "amount": None, "at_time": None, "span": None}
        | {"tags": None}
    )
    return rows


def _source_columns() -> list[SourceColumn]:
    return [
        SourceColumn(name, pg_type, nullable, mapping_for(name, pg_type))
        for name, pg_type, nullable in CANARY_COLUMNS
    ]


class Preflight:
    """The checks, in order; each yields a CheckResult, and a failed one stops those that need it."""

    def __init__(self, loader: SnowflakeLoader, stage: S3Stage):
        self.loader, self.stage = loader, stage
        self.results: list[CheckResult] = []

    def run(self) -> list[CheckResult]:
        self.results = list(self._checks())
        return self.results

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def _checks(self) -> Iterator[CheckResult]:
        loader = self.loader
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(loader.connection("datavault-analytics preflight"))
            except Exception as error:
                yield CheckResult(
                    "connection",
                    False,
                    f"cannot connect ({loader.where}): {_text(error)}",
                    "check SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER and the credentials, and the network path",
                )
                return
            cursor = conn.cursor()
            yield from self._context(cursor)
            yield from self._target_table(cursor)
            yield (stage := self._stage_object(cursor))
            if stage.passed:
                yield from self._round_trip(cursor)

    def _context(self, cursor) -> Iterator[CheckResult]:
        configured = self.loader.snowflake
        cursor.execute("SELECT CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE(), CURRENT_SCHEMA()")
        role, warehouse, database, schema = cursor.fetchone()
        wanted = {
            "role": configured.role,
            "warehouse": configured.warehouse,
            "database": configured.database,
            "schema": configured.schema_,
        }
        found = {"role": role, "warehouse": warehouse, "database": database, "schema": schema}
        wrong = [
            f"{k} is {found[k] or 'not set'}, configured {wanted[k]}"
            for k in wanted
            if not found[k] or (wanted[k] and str(found[k]).upper() != str(wanted[k]).upper())
        ]
        yield CheckResult(
            "connection",
            not wrong,
            f"{self.loader.where}: role {role}, warehouse {warehouse}, {database}.{schema}"
            if not wrong
            else "; ".join(wrong),
            "grant the role to the user and USAGE on the warehouse, database and schema, or fix "
            "SNOWFLAKE_ROLE / SNOWFLAKE_WAREHOUSE / SNOWFLAKE_DATABASE / SNOWFLAKE_SCHEMA",
        )
        cursor.execute("SHOW PARAMETERS IN SESSION")
        names = [d[0].lower() for d in cursor.description]
        shown = {
            r["key"]: str(r["value"])
            for r in (dict(zip(names, row, strict=False)) for row in cursor.fetchall())
        }
        pinned = {"TIMEZONE": "UTC", "LOCK_TIMEOUT": str(self.loader.lock_timeout_seconds)}
        off = [f"{k} is {shown.get(k)!r}, not {v!r}" for k, v in pinned.items() if shown.get(k) != v]
        yield CheckResult(
            "session parameters",
            not off,
            ", ".join(f"{k}={shown.get(k)}" for k in pinned) if not off else "; ".join(off),
            "the account or user forbids changing these session parameters: allow it for this user",
        )

    def _target_table(self, cursor) -> Iterator[CheckResult]:
        loader = self.loader
        existing = loader.table_columns(cursor)
        if not existing:
            yield CheckResult(
                "target table",
                True,
                f"{loader.table_name} does not exist yet: the first load creates "
                "it (the round trip below proves CREATE TABLE on the schema)",
            )
            return
        try:
            loader._raise_on_drift(
                existing, [c for c in staged_columns(_source_columns()) if c.name.upper() in existing]
            )
            cursor.execute(f"SELECT COUNT(*) FROM {quote_snowflake(loader.table_name)} WHERE 1 = 0")  # noqa: S608
        except Exception as error:
            yield CheckResult(
                "target table",
                False,
                f"{loader.table_name}: {_text(error)}",
                f"grant SELECT, INSERT, DELETE on {loader.table_name} to the role, or fix its columns",
            )
            return
        yield CheckResult(
            "target table",
            True,
            f"{loader.table_name} exists with {len(existing)} columns and is "
            "readable (the load also needs INSERT and DELETE on it)",
        )

    def _stage_object(self, cursor) -> CheckResult:
        loader = self.loader
        try:
            created = loader.ensure_stage(cursor)
        except Exception as error:
            return CheckResult(
                "stage object",
                False,
                _text(error),
                f"point stage {loader.stage_name} at {loader.stage.stage_uri} (CREATE OR REPLACE STAGE ... "
                "URL=... STORAGE_INTEGRATION=...), or grant USAGE on it, or CREATE STAGE on the schema",
            )
        return CheckResult(
            "stage object",
            True,
            f"{loader.stage_name} "
            + ("created, " if created else "")
            + f"points at {loader.stage.stage_uri.rstrip('/')}/",
        )

    def _round_trip(self, cursor) -> Iterator[CheckResult]:
        loader, stage = self.loader, self.stage
        source = _source_columns()
        rows, columns = canary_rows(), staged_columns(source)
        run = uuid.uuid4().hex[:12]
        directory = f"{stage.table_folder}/{PREFLIGHT_FOLDER}/{run}"
        table = f"DATAVAULT_PREFLIGHT_{run.upper()}"
        storage = stage.storage()
        written: list[str] = []
        try:
            schema = pa.schema([pa.field(c.name, c.mapping.arrow_type, nullable=c.nullable) for c in source])
            writer = ParquetDayWriter(storage, directory, schema, 64 * 1024 * 1024, 1000, 64 * 1024 * 1024)
            writer.write(pa.RecordBatch.from_pylist(rows, schema=schema))
            files = writer.close()
            written = [f.name for f in files]
            cursor.execute(f"LIST @{quote_snowflake(loader.stage_name)}/{directory}/")
            listed = [str(r[0]).rsplit("/", 1)[-1] for r in cursor.fetchall()]
            missing = [n.rsplit("/", 1)[-1] for n in written if n.rsplit("/", 1)[-1] not in listed]
            yield CheckResult(
                "stage listing",
                not missing,
                f"Snowflake lists the canary file under {directory}/"
                if not missing
                else f"Snowflake does not list {missing} under {directory}/",
                "the storage integration's IAM role needs s3:ListBucket and s3:GetObject on the "
                "stage prefix (DESC INTEGRATION shows the role Snowflake assumes)",
            )
            definition = ", ".join(f"{quote_snowflake(c.name)} {c.snowflake_type}" for c in columns)
            cursor.execute(f"CREATE TEMPORARY TABLE {quote_snowflake(table)} ({definition})")
            try:
                cursor.execute(loader.copy_sql(directory, written, table=table))
                cursor.execute(f"SELECT {loader.fingerprint_select(columns)} FROM {quote_snowflake(table)}")  # noqa: S608
                count, total, _ = cursor.fetchone()
                names = ", ".join(quote_snowflake(c.name) for c in columns)
                cursor.execute(f"SELECT {names} FROM {quote_snowflake(table)}")  # noqa: S608
                loaded = [
                    dict(zip([c.name for c in columns], _plain(row), strict=True))
                    for row in cursor.fetchall()
                ]
            finally:
                cursor.execute(f"DROP TABLE IF EXISTS {quote_snowflake(table)}")
        except Exception as error:
            yield CheckResult(
                "round trip",
                False,
                f"the canary did not load: {_text(error)}",
                "see the Snowflake error above; the loader's COPY options are PARQUET_FILE_FORMAT in "
                "resources/snowflake.py",
            )
            return
        finally:
            storage.delete(written)
        names = [(c.name, c.mapping.canonical) for c in source]
        expected, found = python_fingerprint(rows, names), Fingerprint(int(count), int(total or 0))
        by_id = {r["id"]: r for r in loaded}
        differences = [
            f"{r['id']}.{name}: {by_id.get(r['id'], {}).get(name, '<missing>')!r:.40}"
            for r in rows
            for name, _ in names
            if _comparable(by_id.get(r["id"], {}).get(name, "<missing>")) != _comparable(r[name])
        ]
        yield CheckResult(
            "round trip",
            found == expected and not differences,
            f"{len(rows)} awkward rows (NUL, 0xFF, invalid UTF-8, empty and 1 MB payloads, timestamps a "
            f"microsecond either side of midnight, NULL, non-ASCII, floats any engine prints its own way, "
            f"decimals, times, ISO intervals, nested arrays) "
            f"loaded exactly; fingerprint {found}"
            if found == expected and not differences
            else f"loaded {found}, wrote {expected}; values that differ: {differences[:6] or 'none'}",
            "the session's TIMEZONE or the COPY's Parquet options are not in force; see "
            "docs/snowflake-behaviours.md",
        )


def _plain(row) -> list:
    return [bytes(v) if isinstance(v, bytearray) else v for v in row]


def _comparable(value):
    if isinstance(value, float) and math.isnan(value):
        return "nan"  # NaN equals nothing, itself included
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def _text(error: BaseException) -> str:
    return redact_known_secrets(" ".join(str(error).split()))[:600]
