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

from datavault_analytics.errors import (
    PermanentError,
    SnowflakeLoadError,
    SnowflakeLockTimeoutError,
    SnowflakeTableBusyError,
)
from datavault_analytics.identifiers import quote_snowflake, validate_identifier
from datavault_analytics.postgres.locks import PartitionLock
from datavault_analytics.snowflake.session import SnowflakeSession, _sql_string
from datavault_analytics.snowflake.table_schema import TargetTable
from datavault_analytics.snowflake.verification import ReadBack
from datavault_analytics.stage.manifest import StagedPartition
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.table.spec import BoundToTable, TableSpec

MAX_FILES_PER_COPY = 1000  # Snowflake's limit for one FILES=(...) list


# The Parquet options the load's correctness needs (docs: sql-reference/sql/create-file-format, TYPE = PARQUET):
# - BINARY_AS_TEXT=FALSE: the default, TRUE, reads a BYTE_ARRAY with no logical type (how pyarrow writes
#   binary) as UTF-8 text, which a BINARY column then decodes as hex: random ciphertext fails or is altered;
# - USE_LOGICAL_TYPE=TRUE: timestamps load from their Parquet logical type (TIMESTAMP, adjusted to UTC).
# Both are set by name rather than through USE_VECTORIZED_SCANNER=TRUE, which implies them: the pins then hold
# on either scanner, including the day Snowflake makes the vectorized one its default.
PARQUET_FILE_FORMAT = "TYPE=PARQUET BINARY_AS_TEXT=FALSE USE_LOGICAL_TYPE=TRUE"
SNOWFLAKE_LOCK_TIMEOUT_ERROR = 625  # "Statement ... has locked table ... in transaction N ..."
_BLOCKING_TRANSACTION = re.compile(r"in transaction (\d+)")
# _transaction_name's: the table (since 2026-12-06; older names have none), the day and the run id
_LOAD_TRANSACTION = re.compile(r"DATAVAULT_LOAD_(?:(\w+)_)?(\d{8})_([0-9A-F]{32})")
_ROLLED_BACK = "the transaction was rolled back; the day's previous rows are unchanged"


@dataclass(frozen=True)
class AbandonedTransaction:
    """A load transaction nobody will ever commit (its run has finished, or nothing holds its day's lock),
    which holds the table's lock."""

    transaction_id: int
    name: str
    run_id: str
    partition_key: str
    this_table: bool  # named for this loader's table (older names do not say)


@dataclass(frozen=True)
class LoadResult:
    partition_key: str
    rows_deleted: int
    rows_loaded: int
    files_loaded: int
    schema_changes: list[str]  # each applied change, described (table_schema.plan_changes)
    seconds: float
    ended: list[AbandonedTransaction]


class SnowflakeLoader(SnowflakeSession, TargetTable, ReadBack, BoundToTable, dg.ConfigurableResource):
    """The Snowflake table DataVault records land in, and the external stage it loads from."""

    snowflake: dg.ResourceDependency[SnowflakeResource]
    stage: dg.ResourceDependency[S3Stage]
    table_spec: TableSpec | None = Field(
        default=None, description="The target table, once bound (for_table)."
    )
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
        return self.model_copy(update={"table_spec": table, "stage": self.stage.for_table(table)})

    @property
    def table_name(self) -> str:
        return self.table.snowflake_table

    @property
    def qualified_table_name(self) -> str:
        return f"{self.snowflake.database}.{self.snowflake.schema_}.{self.table_name}".upper()

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
        abandoned: Callable[[list[AbandonedTransaction]], list[AbandonedTransaction]] | None = None,
    ) -> LoadResult:
        """Replace the day's rows with exactly the staged files' rows, in one transaction.

        `lock` (the day's PartitionLock) is checked just before COMMIT: a lost lock rolls the day back.
        The session's QUERY_TAG and the transaction's name carry the day and `run_id`, so a transaction
        left open by a killed run is easy to tell apart in SHOW TRANSACTIONS and the query history.
        `abandoned` (which of these load transactions nobody will commit) lets the load end such a transaction
        first, instead of waiting LOCK_TIMEOUT for it: Snowflake keeps it, and the table's lock, for 4 idle
        hours.
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
                changes = self.sync_table(cursor, staged.columns)
            ended = self.end_abandoned_transactions(cursor, abandoned) if abandoned else []
            deleted, loaded = self._replace_day(
                cursor, staged, lock, self._transaction_name(self.table_name, key, run_id)
            )
        return LoadResult(
            key, deleted, loaded, len(staged.files), changes, round(time.monotonic() - started, 3), ended
        )

    @staticmethod
    def _transaction_name(table_name: str, partition_key: str, run_id: str | None) -> str:
        run = (run_id or "").replace("-", "")
        return f"DATAVAULT_LOAD_{_name_part(table_name)}_{partition_key.replace('-', '')}" + (
            f"_{run.upper()}" if run.isalnum() else ""
        )

    def end_abandoned_transactions(
        self, cursor, abandoned: Callable[[list[AbandonedTransaction]], list[AbandonedTransaction]]
    ) -> list[AbandonedTransaction]:
        """SYSTEM$ABORT_TRANSACTION for every load transaction (this user's, as SHOW TRANSACTIONS lists them)
        that `abandoned` says nobody will commit. Best effort: if Snowflake refuses, the load goes on and a
        transaction still in the way makes it wait LOCK_TIMEOUT, then fail naming it."""
        try:
            cursor.execute("SHOW TRANSACTIONS")
            columns = [d[0].lower() for d in cursor.description]
            found = [dict(zip(columns, row, strict=False)) for row in cursor.fetchall()]
        except Exception:  # a convenience: the lock timeout's message still names the blocker
            return []
        candidates = []
        for row in found:
            if match := _LOAD_TRANSACTION.fullmatch(str(row.get("name") or "")):
                table, day, run = match.groups()
                candidates.append(
                    AbandonedTransaction(
                        int(row["id"]),
                        str(row["name"]),
                        str(uuid.UUID(run.lower())),
                        f"{day[:4]}-{day[4:6]}-{day[6:]}",
                        table == _name_part(self.table_name),
                    )
                )
        ended = []
        for transaction in abandoned(candidates) if candidates else []:
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
        except (SnowflakeLoadError, PermanentError, dg.DagsterError):
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
    ) -> SnowflakeLockTimeoutError | SnowflakeTableBusyError:
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
        if load := _LOAD_TRANSACTION.search(described):
            # Ours, and alive: a dead load's transaction was ended before this one began.
            day = load.group(2)
            return SnowflakeTableBusyError(
                f"Snowflake table {self.table_name} is locked by {holder}, a live load of "
                f"{day[:4]}-{day[4:6]}-{day[6:]}, which did not end within LOCK_TIMEOUT "
                f"({self.lock_timeout_seconds} s), while {phase} for {partition_key}. Nothing was changed; the "
                "day is retried. Many loads of one table at once wait for each other: lower the backfill's "
                "runs per table (docs/operations.md) or raise DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS."
            )
        fix = (
            f"SELECT SYSTEM$ABORT_TRANSACTION({blocking.group(1)});"
            if blocking
            else "SHOW LOCKS; then SELECT SYSTEM$ABORT_TRANSACTION(<transaction>);"
        )
        return SnowflakeLockTimeoutError(
            f"Snowflake table {self.table_name} is locked by {holder}, which did not end within LOCK_TIMEOUT "
            f"({self.lock_timeout_seconds} s), while {phase} for {partition_key}. Nothing was changed. It is "
            "not one of this pipeline's loads (a dead one's would have been ended); Snowflake rolls an idle "
            f"transaction back after 4 hours. To end it now, run: {fix} Then re-run the partition."
        )


def _name_part(table_name: str) -> str:
    """The table's name as it appears in a transaction's name (letters, digits and underscores)."""
    return re.sub(r"\W", "_", table_name).upper()
