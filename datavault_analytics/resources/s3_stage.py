"""The S3 Parquet stage: where PostgreSQL's rows wait, as Parquet files, for Snowflake's COPY INTO.

Layout, deterministic per partition:
    <stage_uri>/<table>/dt=2026-11-01/part-00000.parquet, part-00001.parquet, ...
    <stage_uri>/<table>/dt=2026-11-01/_manifest.json    <- written last; the only way a load finds files

Staging a day first deletes its manifest, then writes the parts, removes parts left over from an older,
larger staging, and writes the manifest last. A stage killed half-way therefore has no manifest, and
the Snowflake load refuses it instead of loading a partial or mixed set of files.

Each day is staged while holding its partition lock (locks.py), so two runs never write one day at once.
After a day is loaded, the load writes a marker, <stage_uri>/<table>/_loaded/dt=<day>.json; the first
load that runs `retention_hours` after that deletes the day's staged files (`purge_expired`). Errors from S3 say so and
name the step: unreachable or failing S3 is retried, refused access or a missing bucket is not.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field

from datavault_analytics.errors import PermanentError, TransientError, reported_as
from datavault_analytics.identifiers import validate_identifier
from datavault_analytics.partitions import DayWindow
from datavault_analytics.resources.postgres import SourceColumn, SourceDay, SourceExtract
from datavault_analytics.resources.stage_storage import (
    LocalStageStorage,
    S3StageStorage,
    StageLocation,
    StageStorage,
)
from datavault_analytics.type_mapping import TYPE_MAPPINGS

MANIFEST_NAME = "_manifest.json"
MANIFEST_VERSION = 1
LOADED_FOLDER = "_loaded"  # <table>/_loaded/dt=<day>.json: written once the day's load committed
# S3 answers that no retry changes: the settings (credentials, bucket, encryption key) must be fixed first.
_PERMANENT_S3_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
    "InvalidBucketName", "InvalidArgument", "InvalidRequest", "KMS.NotFoundException", "KMS.DisabledException",
})


class StageError(PermanentError, RuntimeError):
    """The stage is missing, incomplete or inconsistent; the message says which partition and what to do."""


class StageUnavailableError(TransientError):
    """S3 could not be reached or failed mid-way; nothing half-staged is ever loaded, so a retry is safe."""


@dataclass(frozen=True)
class StagedColumn:
    name: str
    postgres_type: str
    arrow_type: str
    snowflake_type: str
    nullable: bool


@dataclass(frozen=True)
class StagedFile:
    name: str  # relative to the stage root, e.g. records/dt=2026-11-01/part-00000.parquet
    uri: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class StagedPartition:
    """The manifest of one staged day: what the Snowflake load receives instead of the bytes."""

    partition_key: str
    window_start: str
    window_end: str
    source_table: str
    stage_uri: str
    directory: str  # relative to the stage root
    columns: list[StagedColumn]
    files: list[StagedFile]
    rows: int
    bytes: int
    staged_at: str
    seconds: float
    version: int = MANIFEST_VERSION
    run_id: str | None = None

    @property
    def window(self) -> DayWindow:
        return DayWindow.for_key(self.partition_key)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "StagedPartition":
        try:
            raw = json.loads(data)
            if raw.get("version") != MANIFEST_VERSION:
                raise ValueError(f"unsupported manifest version {raw.get('version')!r}")
            raw["columns"] = [StagedColumn(**c) for c in raw["columns"]]
            raw["files"] = [StagedFile(**f) for f in raw["files"]]
            manifest = cls(**raw)
        except (ValueError, TypeError, KeyError) as error:
            raise StageError(
                f"The stage manifest {where} is empty or malformed ({error}). Re-materialize the S3 stage for "
                "this partition to rewrite it."
            ) from None
        if not manifest.columns:
            raise StageError(f"The stage manifest {where} lists no columns. Re-materialize the S3 stage.")
        if sum(f.rows for f in manifest.files) != manifest.rows:
            raise StageError(f"The stage manifest {where} does not add up: its files' rows differ from its total.")
        return manifest

    def column_schema(self, type_of=lambda c: c.arrow_type) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(c.name, type_of(c), constraints=dg.TableColumnConstraints(nullable=c.nullable))
                for c in self.columns
            ]
        )


def staged_columns(columns: list[SourceColumn]) -> list[StagedColumn]:
    """How the source's columns are staged, and typed in Snowflake."""
    return [StagedColumn(c.name, c.postgres_type, str(c.mapping.arrow_type), c.mapping.snowflake_type, c.nullable)
            for c in columns]


def _day_directory(table: str, partition_key: str) -> str:
    return f"{table}/dt={partition_key}"


def _is_day(partition_key: str) -> bool:
    try:
        return DayWindow.for_key(partition_key) is not None
    except ValueError:
        return False


def _loaded_marker(table: str, partition_key: str) -> str:
    return f"{table}/{LOADED_FOLDER}/dt={partition_key}.json"


class ParquetDayWriter:
    """Writes one day's record batches as Parquet (zstd; the random payload uncompressed): row groups of
    bounded rows and bytes, and a new file whenever the current one reaches its size.

    File sizes: with `expected_rows` (PostgreSQL's estimate), the first row group shows the bytes per row,
    and the estimated rest of the day is shared evenly among the round(rest / target) files it needs; the
    last may grow to 1.6 targets to take what the estimate missed, so a day does not end in a tiny file.
    At the 150 MB default, files are 105-250 MB, the range Snowflake recommends, as long as the estimate
    is within about half a file of the truth. Without an estimate, or with one the first row group
    already exceeds, a file closes at the target.
    """

    def __init__(self, storage: StageStorage, directory: str, schema: pa.Schema, target_file_bytes: int,
                 row_group_rows: int, row_group_bytes: int, expected_rows: int | None = None):
        self.storage, self.directory, self.schema = storage, directory, schema
        self.target_file_bytes, self.expected_rows = target_file_bytes, expected_rows
        self._expected_bytes: float | None = None  # the day's estimated bytes, once the first row group is written
        self._group_bytes = 0  # the last row group's size in its file
        self.row_group_rows, self.row_group_bytes = row_group_rows, row_group_bytes
        self.files: list[StagedFile] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = self._pending_bytes = 0
        self._file_cm = self._sink = self._writer = None
        self._file_rows = 0
        # Ciphertext is random: dictionary encoding, min/max statistics and compression on it only cost time
        # (zstd saves under 1% of it, for 0.13 CPU s per 1M rows). The other columns compress about 2:1.
        binary = {f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)}
        self._statistics_columns = [f.name for f in schema if f.name not in binary]
        self._compression = {f.name: "none" if f.name in binary else "zstd" for f in schema}
        self._compression_levels = {name: 1 for name in self._statistics_columns}

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        if self._pending_rows >= self.row_group_rows or self._pending_bytes >= self.row_group_bytes:
            self._flush_row_group()

    def _dictionary_columns(self, sample: pa.Table) -> list[str]:
        """Columns worth dictionary-encoding: at most one distinct value in two rows of the sample.

        Ids, keys and timestamps are nearly unique; trying a dictionary on them costs time before
        Parquet gives up on it. Binary payloads never get one.
        """
        return [name for name in self._statistics_columns
                if pc.count_distinct(sample.column(name), mode="all").as_py() * 2 <= sample.num_rows]

    def _open_file(self, sample: pa.Table) -> None:
        name = f"{self.directory}/part-{len(self.files):05d}.parquet"
        self._file_cm = self.storage.open_writer(name)
        self._sink = self._file_cm.__enter__()
        self._writer = pq.ParquetWriter(
            self._sink, self.schema, compression=self._compression, compression_level=self._compression_levels,
            use_dictionary=self._dictionary_columns(sample), write_statistics=self._statistics_columns,
        )
        self._name, self._file_rows = name, 0

    def _flush_row_group(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        # One row group per slice, bounded by rows and by bytes; a file can only rotate between row groups.
        bytes_per_row = max(1, table.nbytes // max(1, table.num_rows))
        group_rows = max(1, min(self.row_group_rows, self.row_group_bytes // bytes_per_row))
        for offset in range(0, table.num_rows, group_rows):
            group = table.slice(offset, group_rows)
            if self._writer is None:
                self._open_file(group)
            written = self._sink.tell()
            self._writer.write_table(group, row_group_size=group.num_rows)
            self._file_rows += group.num_rows
            self._group_bytes = self._sink.tell() - written
            if self._expected_bytes is None and self.expected_rows:
                if self._file_rows > self.expected_rows:  # the estimate is already wrong (no statistics yet)
                    self.expected_rows = None
                else:
                    self._expected_bytes = self.expected_rows * self._sink.tell() / self._file_rows
            if self._sink.tell() >= self._file_limit():
                self._close_file()

    def _file_limit(self) -> float:
        """The current file's size: the estimated rest of the day, shared evenly among the files it needs."""
        if self._expected_bytes is None:
            return self.target_file_bytes
        remaining = self._expected_bytes - sum(f.bytes for f in self.files)
        files_left = max(1, round(remaining / self.target_file_bytes))
        if files_left == 1:  # the last file takes whatever the estimate missed, up to 1.6 targets (250 MB)
            return 1.6 * self.target_file_bytes
        size = min(max(remaining / files_left, self.target_file_bytes / 1.5), 1.5 * self.target_file_bytes)
        return size - self._group_bytes / 2  # closing within half a row group of the size ends on it on average

    def _close_file(self) -> None:
        self._writer.close()
        size = self._sink.tell()
        self._file_cm.__exit__(None, None, None)
        self.files.append(StagedFile(self._name, self.storage.location.uri_of(self._name), self._file_rows, size))
        self._writer = self._sink = self._file_cm = None

    def close(self) -> list[StagedFile]:
        self._flush_row_group()
        if self._writer is not None:
            self._close_file()
        return self.files

    def abort(self, error: BaseException) -> None:
        if self._file_cm is not None:
            self._file_cm.__exit__(type(error), error, error.__traceback__)
            self._writer = self._sink = self._file_cm = None


class S3StageIOManager(dg.ConfigurableIOManager):
    """Writes the PostgreSQL stream as Parquet files in the stage, and hands manifests downstream.

    `handle_output` receives the lazy `SourceExtract` and streams each day through `ParquetDayWriter`:
    no day is ever held in memory. `load_input` returns the days' `StagedPartition` manifests (or, for an
    input annotated `polars.LazyFrame`, a lazy scan of the files).
    """

    s3: dg.ResourceDependency[S3Resource]
    stage_uri: str = Field(description="Where staged files go: s3://bucket/prefix, or file:///path for a local stage.")
    target_file_size_mb: int = Field(
        default=150, description="Target size of a staged file: a day is cut into files of equal size near it "
        "(2/3 to 1.6 times; see ParquetDayWriter). Snowflake recommends 100-250 MB."
    )
    row_group_rows: int = Field(default=131072, description="Rows per Parquet row group, at most.")
    row_group_mb: int = Field(
        default=16, description="Uncompressed MB per Parquet row group, at most: the day's rows held in memory "
        "before they are encoded."
    )
    server_side_encryption: str | None = Field(
        default=None, description="S3 server-side encryption for staged files: AES256 (SSE-S3) or aws:kms (SSE-KMS)."
    )
    sse_kms_key_id: str | None = Field(default=None, description="KMS key for aws:kms encryption.")
    dataset: str = Field(default="records", description="Folder under the stage URI that holds this table's days.")
    retention_hours: float | None = Field(
        default=72,
        description="A loaded day's staged files are deleted by the first load that runs this many hours after the "
                    "day was loaded (0: by the next load). None keeps them (an S3 lifecycle rule can expire them).",
    )

    @property
    def location(self) -> StageLocation:
        return StageLocation.parse(self.stage_uri)

    def storage(self) -> StageStorage:
        """The stage's storage; a stage URI or dataset that cannot work is a StageError (not retried)."""
        validate_identifier(self.dataset, "s3_stage.dataset")
        try:
            location = self.location
        except ValueError as error:
            raise StageError(str(error)) from None
        if location.scheme == "file":
            return LocalStageStorage(location)
        extra: dict = {}
        if self.server_side_encryption:
            extra["ServerSideEncryption"] = self.server_side_encryption
            if self.sse_kms_key_id:
                extra["SSEKMSKeyId"] = self.sse_kms_key_id
        return S3StageStorage(location, self.s3.get_client(), extra)

    @contextmanager
    def s3_errors(self, doing: str) -> Iterator[None]:
        """Turn S3 client errors into StageError (a setting to fix) or StageUnavailableError (retried)."""
        try:
            yield
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _PERMANENT_S3_CODES:
                raise StageError(
                    f"S3 refused {doing} at {self.stage_uri} ({code}): check the bucket, the credentials and the "
                    f"encryption settings (DATAVAULT_S3_SSE, DATAVAULT_S3_SSE_KMS_KEY_ID). {error}"
                ) from None
            raise StageUnavailableError(f"S3 failed while {doing} at {self.stage_uri}: {error}") from None
        except BotoCoreError as error:
            where = f" (endpoint {self.s3.endpoint_url})" if self.s3.endpoint_url else ""
            raise StageUnavailableError(f"S3 is unreachable while {doing} at {self.stage_uri}{where}: {error}") from None

    # -- writing ---------------------------------------------------------------------------------------

    def stage_day(self, storage: StageStorage, day: SourceDay, run_id: str | None = None,
                  lock=None) -> StagedPartition:
        """Stage one day. `lock` (the day's PartitionLock) is checked before the manifest makes it visible."""
        started = time.monotonic()
        directory = _day_directory(self.dataset, day.window.partition_key)
        # Invalidate first: a half-staged day has no manifest, and no load marker that could start its retention.
        storage.delete([f"{directory}/{MANIFEST_NAME}", _loaded_marker(self.dataset, day.window.partition_key)])
        writer = ParquetDayWriter(
            storage, directory, day.schema, self.target_file_size_mb * 1024 * 1024, self.row_group_rows,
            self.row_group_mb * 1024 * 1024, expected_rows=day.postgres.estimate_day_rows(day.window),
        )
        with day.open() as batches:
            try:
                for batch in batches:
                    writer.write(batch)
                files = writer.close()
            except BaseException as error:
                writer.abort(error)
                raise
        current = {f.name for f in files}
        stale = [name for name in storage.sizes(f"{directory}/") if name.endswith(".parquet") and name not in current]
        storage.delete(stale)
        manifest = StagedPartition(
            partition_key=day.window.partition_key,
            window_start=day.window.start.isoformat(),
            window_end=day.window.end.isoformat(),
            source_table=f"{day.postgres.schema_name}.{day.postgres.table}",
            stage_uri=storage.location.uri,
            directory=directory,
            columns=staged_columns(day.columns),
            files=files,
            rows=sum(f.rows for f in files),
            bytes=sum(f.bytes for f in files),
            staged_at=datetime.now(UTC).isoformat(),
            seconds=round(time.monotonic() - started, 3),
            run_id=run_id,
        )
        if lock is not None:
            lock.ensure_held()
        storage.write_bytes(f"{directory}/{MANIFEST_NAME}", manifest.to_json())
        return manifest

    def handle_output(self, context: dg.OutputContext, obj: SourceExtract) -> None:
        if not isinstance(obj, SourceExtract):
            raise TypeError(f"The S3 stage stores a SourceExtract from PostgreSQL, got {type(obj).__name__}.")
        with reported_as("Checking the stage settings"):
            storage = self.storage()
        manifests: list[StagedPartition] = []
        started = time.monotonic()
        for number, day in enumerate(obj.days, start=1):
            key = day.window.partition_key
            with reported_as(f"Staging {key} to {storage.location.uri}"), \
                    day.postgres.partition_lock(key, holder=f"stage {key} run {context.run_id[:8]}") as lock, \
                    self.s3_errors(f"staging {key}"):
                manifest = self.stage_day(storage, day, run_id=context.run_id, lock=lock)
            manifests.append(manifest)
            context.log.info(
                f"Staged {manifest.partition_key} ({number}/{len(obj.days)} days): {manifest.rows:,} rows in "
                f"{len(manifest.files)} file(s), {manifest.bytes / 1e6:.1f} MB, {manifest.seconds:.2f}s "
                f"({manifest.rows / max(manifest.seconds, 1e-6):,.0f} rows/s)"
            )
        context.add_output_metadata(stage_metadata(manifests, time.monotonic() - started))

    # -- reading ---------------------------------------------------------------------------------------

    def read_manifest(self, storage: StageStorage, partition_key: str) -> StagedPartition:
        directory = _day_directory(self.dataset, partition_key)
        where = storage.location.uri_of(f"{directory}/{MANIFEST_NAME}")
        data = storage.read_bytes(f"{directory}/{MANIFEST_NAME}")
        if data is None:
            raise StageError(
                f"Partition {partition_key} has no stage manifest at {where}: it was never staged, or its staging "
                'did not finish. Materialize ["s3", "datavault", "records"] for this partition first.'
            )
        manifest = StagedPartition.from_json(data, where)
        if manifest.partition_key != partition_key:
            raise StageError(f"The stage manifest {where} describes {manifest.partition_key}, not {partition_key}.")
        present = storage.sizes(f"{directory}/")
        for staged in manifest.files:
            if present.get(staged.name) != staged.bytes:
                raise StageError(
                    f"Staged file {staged.uri} for {partition_key} is missing or has changed size since it was "
                    f"staged ({present.get(staged.name)} bytes now, {staged.bytes} in the manifest). Re-materialize "
                    "the S3 stage for this partition."
                )
        return manifest

    def load_input(self, context: dg.InputContext):
        with reported_as("Reading the stage manifests"), self.s3_errors("reading the stage manifests"):
            storage = self.storage()
            manifests = [self.read_manifest(storage, key) for key in context.asset_partition_keys]
        if context.dagster_type.typing_type is pl.LazyFrame:
            return self.scan(manifests)
        return manifests

    # -- retention -------------------------------------------------------------------------------------

    def mark_loaded(self, storage: StageStorage, manifest: StagedPartition, run_id: str | None,
                    loaded_at: datetime | None = None) -> None:
        """Record that `manifest`'s staging is in Snowflake: its retention starts now."""
        marker = {"partition_key": manifest.partition_key, "staged_at": manifest.staged_at,
                  "loaded_at": (loaded_at or datetime.now(UTC)).isoformat(), "run_id": run_id}
        storage.write_bytes(_loaded_marker(self.dataset, manifest.partition_key), json.dumps(marker).encode())

    def purge_expired(self, storage: StageStorage,
                      try_lock: Callable[[str], AbstractContextManager[object | None]],
                      now: datetime | None = None, keep: frozenset[str] = frozenset()) -> list[str]:
        """Delete the staged files of days loaded at least `retention_hours` ago; return their keys.

        A day whose lock another run holds (`try_lock(key)` gives None) is left for next time, and a day
        re-staged since its load has no marker (staging deletes it), so only loaded stagings are deleted.
        The manifest goes first and the marker last: an interrupted purge never leaves a manifest without
        its files, and the next purge finishes it. `keep`: days this run loaded, left for its checks.
        """
        if self.retention_hours is None:
            return []
        now = now or datetime.now(UTC)
        purged = []
        for name in sorted(storage.sizes(f"{self.dataset}/{LOADED_FOLDER}/")):
            partition_key = name.rpartition("/dt=")[2].removesuffix(".json")
            if not _is_day(partition_key) or name != _loaded_marker(self.dataset, partition_key) \
                    or partition_key in keep or not self._expired(storage, name, now):
                continue
            with try_lock(partition_key) as lock:
                # Re-checked under the lock: the day may have been re-staged (marker gone) in between.
                if lock is None or not self._expired(storage, name, now):
                    continue
                files = storage.sizes(f"{_day_directory(self.dataset, partition_key)}/")
                storage.delete(sorted(files, key=lambda f: not f.endswith(MANIFEST_NAME)))
                storage.delete([name])
                purged.append(partition_key)
        return purged

    def _expired(self, storage: StageStorage, marker_name: str, now: datetime) -> bool:
        data = storage.read_bytes(marker_name)
        try:
            loaded_at = datetime.fromisoformat(json.loads(data)["loaded_at"]) if data else None
        except (ValueError, TypeError, KeyError):
            return False  # not ours to judge: leave it
        return loaded_at is not None and loaded_at + timedelta(hours=self.retention_hours) <= now

    def scan(self, manifests: list[StagedPartition]) -> pl.LazyFrame:
        """A lazy polars scan over the staged files, for analysts' own assets."""
        uris = [f.uri for m in manifests for f in m.files]
        if not uris:  # empty days: an empty frame with the staged columns, typed as the files would be
            columns = manifests[0].columns if manifests else []
            schema = pa.schema([pa.field(c.name, TYPE_MAPPINGS[c.postgres_type].arrow_type) for c in columns])
            return pl.from_arrow(schema.empty_table()).lazy()
        if self.location.scheme == "file":
            return pl.scan_parquet([u.removeprefix("file://") for u in uris])
        return pl.scan_parquet(uris, storage_options=self.polars_storage_options())

    def polars_storage_options(self) -> dict[str, str]:
        """The S3 resource's settings, resolved through boto3's usual credential chain, in polars' terms."""
        session = boto3.session.Session(
            profile_name=self.s3.profile_name,
            aws_access_key_id=self.s3.aws_access_key_id,
            aws_secret_access_key=self.s3.aws_secret_access_key,
            aws_session_token=self.s3.aws_session_token,
            region_name=self.s3.region_name,
        )
        options = {"aws_region": session.region_name or "us-east-1"}
        if credentials := session.get_credentials():
            frozen = credentials.get_frozen_credentials()
            options |= {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key}
            if frozen.token:
                options["aws_session_token"] = frozen.token
        if self.s3.endpoint_url:
            options["aws_endpoint_url"] = self.s3.endpoint_url
            options["aws_allow_http"] = str(self.s3.endpoint_url.startswith("http://")).lower()
        return options


def stage_metadata(manifests: list[StagedPartition], seconds: float) -> dict:
    files = [f for m in manifests for f in m.files]
    rows = sum(m.rows for m in manifests)
    # A range run records one materialization per day, all with this metadata: only a single-day run
    # can state the day's row count; a range states its total under its own name, and a per-day table.
    metadata = {
        "dagster/row_count" if len(manifests) == 1 else "rows_in_run": rows,
        # One day: its folder. A range: the dataset folder that holds all of them.
        "dagster/uri": dg.MetadataValue.path(
            "" if not manifests else f"{manifests[0].stage_uri}/{manifests[0].directory}" if len(manifests) == 1
            else f"{manifests[0].stage_uri}/{manifests[0].directory.rsplit('/', 1)[0]}"
        ),
        "staged_bytes": sum(m.bytes for m in manifests),
        "staged_files": len(files),
        "staged_uris": dg.MetadataValue.json([f.uri for f in files][:1000]),
        "partition_window": (
            f"[{manifests[0].window_start}, {manifests[-1].window_end})" if manifests else "empty range"
        ),
        "stage_seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else 0,
    }
    if manifests:
        metadata["dagster/column_schema"] = manifests[0].column_schema()
    if len(manifests) > 1:
        metadata["days"] = dg.MetadataValue.md(
            "| day | rows | files | bytes | seconds |\n|---|---|---|---|---|\n"
            + "\n".join(f"| {m.partition_key} | {m.rows} | {len(m.files)} | {m.bytes} | {m.seconds} |"
                        for m in manifests)
        )
    return metadata

