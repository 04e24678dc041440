"""Snowflake, the analytical copy: each day replaced in one transaction from exactly its staged files.

Every Snowflake behaviour the load relies on is pinned here: the Parquet options (PARQUET_FILE_FORMAT) and
the session parameters (`session_parameters`). docs/snowflake-load.md walks through one day's load.
"""

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import dagster as dg
from dagster_snowflake import SnowflakeResource
from pydantic import Field, field_validator

from datavault_analytics.day_window import DayWindow
from datavault_analytics.errors import PermanentError, TransientError
from datavault_analytics.fingerprint import EMPTY, DaySummary, Fingerprint, snowflake_row_number
from datavault_analytics.identifiers import quote_snowflake, validate_identifier
from datavault_analytics.resources.partition_locks import PartitionLock
from datavault_analytics.resources.s3_stage import S3Stage
from datavault_analytics.resources.stage_manifest import StagedColumn, StagedPartition
from datavault_analytics.resources.table_spec import TableSpec
from datavault_analytics.type_mapping import TYPE_MAPPINGS, snowflake_type_signature

MAX_FILES_PER_COPY = 1000  # Snowflake's limit for one FILES=(...) list
_S3_STAGE_URL = re.compile(r"s3://[a-z0-9][a-z0-9.\-]{1,62}(/[A-Za-z0-9._\-/=]*)?")
# The Parquet options the load's correctness needs (docs: sql-reference/sql/create-file-format, TYPE = PARQUET):
# - BINARY_AS_TEXT=FALSE: the default, TRUE, reads a BYTE_ARRAY with no logical type (how pyarrow writes
#   binary) as UTF-8 text, which a BINARY column then decodes as hex: random ciphertext fails or is altered;
# - USE_LOGICAL_TYPE=TRUE: timestamps load from their Parquet logical type (TIMESTAMP, adjusted to UTC).
# Both are set by name rather than through USE_VECTORIZED_SCANNER=TRUE, which implies them: the pins then hold
# on either scanner, including the day Snowflake makes the vectorized one its default.
PARQUET_FILE_FORMAT = "TYPE=PARQUET BINARY_AS_TEXT=FALSE USE_LOGICAL_TYPE=TRUE"
SNOWFLAKE_LOCK_TIMEOUT_ERROR = 625  # "Statement ... has locked table ... in transaction N ..."
_BLOCKING_TRANSACTION = re.compile(r"in transaction (\d+)")
_LOAD_TRANSACTION = re.compile(r"DATAVAULT_LOAD_\d{8}_([0-9A-F]{32})")  # _transaction_name's, with the run id
_ROLLED_BACK = "the transaction was rolled back; the day's previous rows are unchanged"


def session_parameters(lock_timeout_seconds: int, query_tag: str) -> dict[str, str]:
    """Every session parameter the loader's SQL relies on, as SQL values, with why."""
    return {
        # Parquet timestamps adjusted to UTC arrive as TIMESTAMP_LTZ and are converted into the TIMESTAMP_NTZ
        # columns in this zone (the account default is usually America/Los_Angeles); days are UTC days.
        "TIMEZONE": "'UTC'",
        # A statement waiting for a table lock (a dead run's open transaction) fails after this, not 12 hours.
        "LOCK_TIMEOUT": str(int(lock_timeout_seconds)),
        # The run and the day in the query history, so a dead run's statements and transaction can be found.
        "QUERY_TAG": _sql_string(query_tag[:2000]),
        # No query of ours converts binary to text implicitly (fingerprints hex-encode by name); pinned so
        # that a future one would read the same on every account.
        "BINARY_OUTPUT_FORMAT": "'HEX'",
        # A killed run's running statement stops with its client instead of going on (the default, FALSE).
        "ABORT_DETACHED_QUERY": "TRUE",
    }


class SnowflakeLoadError(TransientError):
    """A partition could not be loaded; the day's previous contents are untouched."""


class SnowflakeConfigError(PermanentError, SnowflakeLoadError):
    """The Snowflake settings cannot work as given (stage URL, stage object pointing elsewhere)."""


class SchemaDriftError(PermanentError, SnowflakeLoadError):
    """The stage's columns no longer fit the Snowflake table in a way that is safe to apply on our own."""


class SnowflakeLockTimeoutError(PermanentError, SnowflakeLoadError):
    """Another transaction held the table's lock past LOCK_TIMEOUT; the message says how to end it.

    Not retried: our own loads hold the lock for one day's transaction, far less than LOCK_TIMEOUT, so a
    longer wait means a transaction left open (by a killed run), which Snowflake ends only after 4 idle hours.
    """


@dataclass(frozen=True)
class AbandonedTransaction:
    """A load transaction whose run has finished: nobody will ever commit it, and it holds the table's lock."""

    transaction_id: int
    name: str
    run_id: str


@dataclass(frozen=True)
class LoadResult:
    partition_key: str
    rows_deleted: int
    rows_loaded: int
    files_loaded: int
    columns_added: list[str]
    seconds: float
    ended: list[AbandonedTransaction]


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _same_type(existing: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """Whether a column's type as read back equals the wanted one. A TEXT length that reads back as None
    is unknown, not different: fakesnow forgets VARCHAR lengths when it restarts (Snowflake never does)."""
    if existing[:1] == ("TEXT",) and existing[1:] == ("None",):
        return wanted[:1] == ("TEXT",)
    return existing == wanted


def _info_schema_signature(data_type: str, char_length, precision, scale) -> tuple[str, ...]:
    if data_type == "TEXT":
        return (data_type, str(char_length))
    if data_type == "NUMBER":
        return (data_type, str(precision), str(scale))
    return (data_type,)


class SnowflakeLoader(dg.ConfigurableResource):
    """The Snowflake table DataVault records land in, and the external stage it loads from."""

    snowflake: dg.ResourceDependency[SnowflakeResource]
    stage: dg.ResourceDependency[S3Stage]
    table: TableSpec = Field(default_factory=TableSpec, description="The target table and its key columns.")
    stage_name: str = Field(
        default="DATAVAULT_STAGE", description="External stage object over the stage URI."
    )
    storage_integration: str | None = Field(
        default=None,
        description="Snowflake storage integration that grants the stage access to the bucket (prod).",
    )
    lock_timeout_seconds: int = Field(
        default=300,
        ge=1,
        description="How long a statement waits for a table lock held by another transaction "
        "(Snowflake's LOCK_TIMEOUT; its default is 43,200 s) before the load fails naming that transaction.",
    )

    time_travel_days: int = Field(
        default=1,
        ge=0,
        le=90,
        description="DATA_RETENTION_TIME_IN_DAYS of the table when this pipeline creates it: how long Time Travel "
        "keeps a deleted (erased) row. Short by default; see docs/erasure.md.",
    )
    transient_table: bool = Field(
        default=False,
        description="Create the table TRANSIENT: no Fail-safe (a permanent table's deleted rows stay 7 more days "
        "there), at most 1 day of Time Travel (Settings refuses more).",
    )

    @field_validator("stage_name", "storage_integration")
    @classmethod
    def _plain_identifier(cls, name: str | None, info) -> str | None:
        return None if name is None else validate_identifier(name, f"snowflake.{info.field_name}")

    def for_table(self, table: TableSpec) -> "SnowflakeLoader":
        """The loader of `table`, from its folder of the stage."""
        return self.model_copy(update={"table": table, "stage": self.stage.for_table(table)})

    @property
    def table_name(self) -> str:
        return self.table.snowflake_table

    @property
    def qualified_table_name(self) -> str:
        return f"{self.snowflake.database}.{self.snowflake.schema_}.{self.table_name}".upper()

    @contextmanager
    def connection(self, query_tag: str = "datavault-analytics") -> Iterator:
        """A connection with every session parameter of `session_parameters` pinned, whatever the account's."""
        with self.snowflake.get_connection() as conn:
            settings = session_parameters(self.lock_timeout_seconds, query_tag)
            conn.cursor().execute("ALTER SESSION SET " + " ".join(f"{k} = {v}" for k, v in settings.items()))
            yield conn

    @property
    def where(self) -> str:
        """The account (and host, for an emulator or private endpoint), for messages."""
        host = (self.snowflake.additional_snowflake_connection_args or {}).get("host")
        return f"account {self.snowflake.account}" + (f" at {host}" if host else "")

    def _settings_error(self, error: BaseException) -> SnowflakeConfigError:
        """A ValueError while connecting comes from the settings (a private key that does not load, with
        its passphrase), not from the network: retrying cannot help."""
        return SnowflakeConfigError(f"The Snowflake connection settings cannot work ({self.where}): {error}")

    def _fail(self, message: str, error: BaseException | None = None) -> SnowflakeLoadError:
        return SnowflakeLoadError(message + (f": {error}" if error else ""))

    # -- objects -----------------------------------------------------------------------------------

    def ensure_stage(self, cursor) -> bool:
        """Check the stage object points at the stage URI, or create it; True if it was created."""
        url = self.stage.stage_uri.rstrip("/") + "/"
        if not _S3_STAGE_URL.fullmatch(url):
            raise SnowflakeConfigError(
                f"Snowflake can only load from an s3:// stage, not {self.stage.stage_uri!r}. Set "
                "DATAVAULT_STAGE_URI to s3://bucket/prefix."
            )
        cursor.execute(f"SHOW STAGES LIKE {_sql_string(self.stage_name.upper())}")
        columns = [d[0].lower() for d in cursor.description]
        existing = [dict(zip(columns, row, strict=False)) for row in cursor.fetchall()]
        if existing:
            if existing[0].get("url", url).rstrip("/") != url.rstrip("/"):
                raise SnowflakeConfigError(
                    f"Snowflake stage {self.stage_name} points at {existing[0].get('url')}, not at {url}. "
                    "Point DATAVAULT_STAGE_URI at the same place, or set a different stage name."
                )
            return False
        integration = (
            f" STORAGE_INTEGRATION = {quote_snowflake(self.storage_integration)}"
            if self.storage_integration
            else ""
        )
        cursor.execute(
            f"CREATE STAGE IF NOT EXISTS {quote_snowflake(self.stage_name)} "
            f"URL={_sql_string(url)}{integration}"
        )
        return True

    def table_columns(self, cursor) -> dict[str, tuple[str, ...]]:
        """The target table's columns (upper-case name -> type signature); empty if it does not exist."""
        cursor.execute(
            "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale FROM "
            "information_schema.columns WHERE table_schema = CURRENT_SCHEMA() AND table_name = %s "
            "ORDER BY ordinal_position",
            (self.table_name.upper(),),
        )
        return {name.upper(): _info_schema_signature(*rest) for name, *rest in cursor.fetchall()}

    def check_compatible(self, columns: list[StagedColumn]) -> None:
        """Before staging: raise SchemaDriftError if the table exists and cannot take these columns.

        Read-only (one INFORMATION_SCHEMA query); raises SnowflakeLoadError if Snowflake is unreachable.
        """
        try:
            with self.connection() as conn:
                existing = self.table_columns(conn.cursor())
        except ValueError as error:
            raise self._settings_error(error) from None
        except Exception as error:
            raise self._fail(
                f"Cannot read the columns of Snowflake table {self.table_name} ({self.where})", error
            ) from None
        if existing:
            self._raise_on_drift(existing, columns)

    def _raise_on_drift(self, existing: dict[str, tuple[str, ...]], columns: list[StagedColumn]) -> None:
        staged = {c.name.upper(): c for c in columns}
        dropped = [name for name in existing if name not in staged]
        if dropped:
            raise SchemaDriftError(
                f"Column(s) {', '.join(dropped)} of Snowflake table {self.table_name} are no longer in the "
                "PostgreSQL source. Nothing was loaded. If the drop is intended, run ALTER TABLE "
                f"{self.table_name} DROP COLUMN {', '.join(dropped)} in Snowflake (or restore the column in "
                "PostgreSQL) and re-run the partition."
            )
        retyped = [
            f"{name} ({'/'.join(existing[name])} in Snowflake, {staged[name].snowflake_type} from PostgreSQL "
            f"type {staged[name].postgres_type})"
            for name in existing
            if not _same_type(existing[name], snowflake_type_signature(staged[name].snowflake_type))
        ]
        if retyped:
            raise SchemaDriftError(
                f"Column type(s) changed for {'; '.join(retyped)}. Nothing was loaded. Migrate the Snowflake "
                "column to the new type (or add a new column and backfill), then re-run the partition."
            )

    def sync_table(self, cursor, columns: list[StagedColumn]) -> list[str]:
        """Create the table, or add the stage's new columns. Dropped or retyped columns stop the load."""
        existing = self.table_columns(cursor)
        table = quote_snowflake(self.table_name)
        if not existing:
            definition = ", ".join(f"{quote_snowflake(c.name)} {c.snowflake_type}" for c in columns)
            kind = "TRANSIENT TABLE" if self.transient_table else "TABLE"
            cursor.execute(
                f"CREATE {kind} IF NOT EXISTS {table} ({definition}) "
                f"DATA_RETENTION_TIME_IN_DAYS = {int(self.time_travel_days)}"
            )
            return []
        self._raise_on_drift(existing, columns)
        staged = {c.name.upper(): c for c in columns}
        added = [c for name, c in staged.items() if name not in existing]
        for column in added:
            cursor.execute(
                f"ALTER TABLE {table} ADD COLUMN {quote_snowflake(column.name)} {column.snowflake_type}"
            )
        return [c.name for c in added]

    # -- loading -----------------------------------------------------------------------------------

    def copy_sql(self, directory: str, names: list[str], table: str | None = None) -> str:
        """The load's COPY INTO, for `names` (at most MAX_FILES_PER_COPY) under the stage's `directory`."""
        files = ", ".join(_sql_string(name.rsplit("/", 1)[1]) for name in names)
        return (
            f"COPY INTO {quote_snowflake(table or self.table_name)} FROM "
            f"@{quote_snowflake(self.stage_name)}/{directory}/ FILES=({files}) "
            f"FILE_FORMAT=({PARQUET_FILE_FORMAT}) MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE "
            "ON_ERROR=ABORT_STATEMENT FORCE=TRUE"
        )

    @staticmethod
    def _check_copy_results(staged: StagedPartition, names: list[str], cursor) -> int:
        columns = [d[0].lower() for d in cursor.description]
        results = [dict(zip(columns, row, strict=False)) for row in cursor.fetchall()]
        expected = {name.rsplit("/", 1)[1] for name in names}
        loaded = {str(r.get("file", "")).rsplit("/", 1)[-1] for r in results if r.get("status") == "LOADED"}
        problems = [
            f"{r.get('file')}: {r.get('status')} {r.get('first_error') or ''}".strip()
            for r in results
            if r.get("status") != "LOADED"
        ]
        if problems or loaded != expected:
            missing = sorted(expected - loaded)
            raise SnowflakeLoadError(
                f"COPY INTO for {staged.partition_key} did not load exactly the staged files (not loaded: "
                f"{missing or 'none'}; problems: {problems or 'none'}). The day was rolled back. A day "
                "re-staged since this run read its manifest has new files: the retry loads them."
            )
        return sum(int(r.get("rows_loaded") or 0) for r in results)

    def load_partition(
        self,
        staged: StagedPartition,
        lock: PartitionLock | None = None,
        run_id: str | None = None,
        finished_runs: Callable[[list[str]], set[str]] | None = None,
    ) -> LoadResult:
        """Replace the day's rows with exactly the staged files' rows, in one transaction.

        `lock` (the day's PartitionLock) is checked just before COMMIT: a lost lock rolls the day back.
        The session's QUERY_TAG and the transaction's name carry the day and `run_id`, so a transaction
        left open by a killed run is easy to tell apart in SHOW TRANSACTIONS and the query history.
        `finished_runs` (which of these run ids have finished) lets the load end such a transaction first,
        instead of waiting LOCK_TIMEOUT for it: Snowflake keeps it, and the table's lock, for 4 idle hours.
        """
        started = time.monotonic()
        key = staged.partition_key
        with ExitStack() as stack:
            with self._failing(f"connecting ({self.where})", key, "nothing was changed"):
                conn = stack.enter_context(
                    self.connection(f"datavault-analytics load {key} run {run_id or '-'}")
                )
            cursor = conn.cursor()
            with self._failing(
                "checking the stage object and the table's columns", key, "nothing was changed"
            ):
                self.ensure_stage(cursor)
                added = self.sync_table(cursor, staged.columns)
            ended = self.end_abandoned_transactions(cursor, finished_runs) if finished_runs else []
            deleted, loaded = self._replace_day(cursor, staged, lock, self._transaction_name(key, run_id))
        return LoadResult(
            key, deleted, loaded, len(staged.files), added, round(time.monotonic() - started, 3), ended
        )

    @staticmethod
    def _transaction_name(partition_key: str, run_id: str | None) -> str:
        run = (run_id or "").replace("-", "")
        return f"DATAVAULT_LOAD_{partition_key.replace('-', '')}" + (
            f"_{run.upper()}" if run.isalnum() else ""
        )

    def end_abandoned_transactions(
        self, cursor, finished_runs: Callable[[list[str]], set[str]]
    ) -> list[AbandonedTransaction]:
        """SYSTEM$ABORT_TRANSACTION for every load transaction (this user's, as SHOW TRANSACTIONS lists them)
        whose run `finished_runs` says has finished. Best effort: if Snowflake refuses, the load goes on and
        a transaction still in the way makes it wait LOCK_TIMEOUT, then fail naming it."""
        try:
            cursor.execute("SHOW TRANSACTIONS")
            columns = [d[0].lower() for d in cursor.description]
            found = [dict(zip(columns, row, strict=False)) for row in cursor.fetchall()]
        except Exception:  # a convenience: the lock timeout's message still names the blocker
            return []
        candidates = {}
        for row in found:
            if match := _LOAD_TRANSACTION.fullmatch(str(row.get("name") or "")):
                run_id = str(uuid.UUID(match.group(1).lower()))
                candidates[int(row["id"])] = AbandonedTransaction(int(row["id"]), str(row["name"]), run_id)
        if not candidates:
            return []
        finished = finished_runs(sorted({t.run_id for t in candidates.values()}))
        ended = []
        for transaction in candidates.values():
            if transaction.run_id not in finished:
                continue
            try:
                cursor.execute(f"SELECT SYSTEM$ABORT_TRANSACTION({transaction.transaction_id})")
                ended.append(transaction)
            except Exception:  # ended meanwhile, or not ours to end
                pass
        return ended

    def _replace_day(
        self, cursor, staged: StagedPartition, lock: PartitionLock | None, name: str
    ) -> tuple[int, int]:
        """BEGIN; DELETE the day; COPY its files; COMMIT. Anything short of COMMIT rolls back."""
        key = staged.partition_key
        with self._failing("starting the day's transaction", key, "nothing was changed"):
            cursor.execute(f"BEGIN TRANSACTION NAME {name}")
        try:
            deleted = self._delete_day(cursor, staged)
            loaded = self._copy_files(cursor, staged)
            if lock is not None:
                with self._failing("checking the partition lock", key, _ROLLED_BACK):
                    lock.ensure_held()
        except BaseException:
            try:
                cursor.execute("ROLLBACK")
            except Exception:  # the connection is gone: Snowflake rolls the transaction back itself
                pass
            raise
        with self._failing(
            "committing",
            key,
            "whether COMMIT took effect is unknown; re-running the day replaces it exactly either way",
        ):
            cursor.execute("COMMIT")
        return deleted, loaded

    def _delete_day(self, cursor, staged: StagedPartition) -> int:
        column, window = quote_snowflake(self.table.partition_column), staged.window
        with self._failing(
            "deleting the day's previous rows",
            staged.partition_key,
            _ROLLED_BACK
            + (
                " (another transaction may hold the day's rows: one left by a run killed mid-load stays "
                "open until Snowflake rolls it back, or until SYSTEM$ABORT_TRANSACTION)"
            ),
            cursor=cursor,
        ):
            cursor.execute(
                f"DELETE FROM {quote_snowflake(self.table_name)} WHERE {column} >= %s AND {column} < %s",  # noqa: S608
                (window.start_ntz, window.end_ntz),
            )
            return int((cursor.fetchone()[0] if cursor.description else cursor.rowcount) or 0)

    def _copy_files(self, cursor, staged: StagedPartition) -> int:
        """COPY exactly the manifest's files, at most MAX_FILES_PER_COPY a statement; check every result row."""
        names = [f.name for f in staged.files]
        loaded = 0
        with self._failing(
            "copying the staged files (COPY INTO)", staged.partition_key, _ROLLED_BACK, cursor=cursor
        ):
            for first in range(0, len(names), MAX_FILES_PER_COPY):
                chunk = names[first : first + MAX_FILES_PER_COPY]
                cursor.execute(self.copy_sql(staged.directory, chunk))
                loaded += self._check_copy_results(staged, chunk, cursor)
        if loaded != staged.rows:
            raise SnowflakeLoadError(
                f"COPY INTO for {staged.partition_key} loaded {loaded:,} rows but {staged.rows:,} were "
                "staged. The day was rolled back."
            )
        return loaded

    @contextmanager
    def _failing(self, phase: str, partition_key: str, outcome: str, cursor=None) -> Iterator[None]:
        """Name the phase in any error from Snowflake, and say what the failure left behind."""
        try:
            yield
        except (SnowflakeLoadError, dg.DagsterError):
            raise
        except Exception as error:
            if getattr(error, "errno", None) == SNOWFLAKE_LOCK_TIMEOUT_ERROR and cursor is not None:
                raise self._lock_timeout(cursor.connection.cursor(), partition_key, phase, error) from None
            if isinstance(error, ValueError) and phase.startswith("connecting"):
                raise self._settings_error(error) from None
            raise self._fail(
                f"Snowflake failed while {phase} for {partition_key}; {outcome}", error
            ) from None

    def _lock_timeout(
        self, cursor, partition_key: str, phase: str, error: BaseException
    ) -> SnowflakeLockTimeoutError:
        """The error for a statement that waited LOCK_TIMEOUT: which transaction blocks it, and how to end it."""
        blocking = _BLOCKING_TRANSACTION.search(str(error))
        described = ""
        if blocking:
            try:  # the name and start of the blocking transaction, if this role can see it
                cursor.execute("SHOW TRANSACTIONS")
                columns = [d[0].lower() for d in cursor.description]
                for row in cursor.fetchall():
                    found = dict(zip(columns, row, strict=False))
                    if str(found.get("id")) == blocking.group(1):
                        described = f" (named {found.get('name')}, started {found.get('started_on')})"
            except Exception:  # SHOW TRANSACTIONS is a convenience here; the id is what matters
                pass
        holder = f"transaction {blocking.group(1)}{described}" if blocking else "another transaction"
        fix = (
            f"SELECT SYSTEM$ABORT_TRANSACTION({blocking.group(1)});"
            if blocking
            else "SHOW LOCKS; then SELECT SYSTEM$ABORT_TRANSACTION(<transaction>);"
        )
        return SnowflakeLockTimeoutError(
            f"Snowflake table {self.table_name} is locked by {holder}, which did not end within LOCK_TIMEOUT "
            f"({self.lock_timeout_seconds} s), while {phase} for {partition_key}. Nothing was changed. A "
            "transaction named DATAVAULT_LOAD_* is one left open by a load that was killed; Snowflake rolls "
            f"it back after 4 idle hours. To end it now, run: {fix} Then re-run the partition."
        )

    # -- reading back ------------------------------------------------------------------------------

    def fingerprint_select(self, columns: list[StagedColumn]) -> str:
        """The select list of a fingerprint over `columns` (fingerprint.py): rows, sum, surplus rows (rows
        beyond one per primary key)."""
        number = snowflake_row_number(
            [(c.name, TYPE_MAPPINGS[c.postgres_type].canonical) for c in columns], quote_snowflake
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
