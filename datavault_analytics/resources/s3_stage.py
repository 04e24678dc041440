"""The S3 Parquet stage: where PostgreSQL's rows wait, as Parquet files, for Snowflake's COPY INTO.

`S3Stage` is the stage's location and storage; `S3StageIOManager` writes each day handed to it, under the
day's lock, and hands the Snowflake asset the days to load as `StagedDays`, whose manifests the load reads
under the same lock. docs/stage.md describes the layout.
"""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
import dagster as dg
import polars as pl
import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field, field_validator

from datavault_analytics.errors import TransientError, asset_errors
from datavault_analytics.identifiers import validate_identifier
from datavault_analytics.metadata import materialization_metadata
from datavault_analytics.resources.parquet_day_writer import ParquetDayWriter
from datavault_analytics.resources.partition_locks import PartitionLock, PartitionLocks
from datavault_analytics.resources.postgres import SourceDay, SourceExtract
from datavault_analytics.resources.stage_manifest import (
    MANIFEST_NAME,
    StagedPartition,
    StageError,
    day_directory,
    manifest_name,
    staged_columns,
)
from datavault_analytics.resources.stage_storage import (
    LocalStageStorage,
    S3StageStorage,
    StageLocation,
    StageStorage,
)
from datavault_analytics.resources.table_spec import TableSpec, table_of
from datavault_analytics.type_mapping import TYPE_MAPPINGS

# S3 answers that no retry changes: the settings (credentials, bucket, encryption key) must be fixed first.
_PERMANENT_S3_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "InvalidArgument",
        "InvalidRequest",
        "KMS.NotFoundException",
        "KMS.DisabledException",
    }
)


class StageUnavailableError(TransientError):
    """S3 could not be reached or failed mid-way; nothing half-staged is ever loaded, so a retry is safe."""


class S3Stage(dg.ConfigurableResource):
    """Where staged files live (s3://bucket/prefix, or file:///path), and how they are read and written."""

    s3: dg.ResourceDependency[S3Resource]
    stage_uri: str = Field(
        description="Where staged files go: s3://bucket/prefix, or file:///path for a local stage."
    )
    dataset: str = Field(
        default="records", description="Folder under the stage URI that holds this table's days."
    )
    server_side_encryption: str | None = Field(
        default=None,
        description="S3 server-side encryption for staged files: AES256 (SSE-S3) or aws:kms (SSE-KMS).",
    )
    sse_kms_key_id: str | None = Field(default=None, description="KMS key for aws:kms encryption.")

    @field_validator("dataset")
    @classmethod
    def _plain_identifier(cls, name: str) -> str:
        return validate_identifier(name, "s3_stage.dataset")

    def for_table(self, table: TableSpec) -> "S3Stage":
        """The stage's folder for `table`: <stage_uri>/<table name>/dt=<day>/."""
        return self.model_copy(update={"dataset": table.name})

    @property
    def location(self) -> StageLocation:
        try:
            return StageLocation.parse(self.stage_uri)
        except ValueError as error:
            raise StageError(str(error)) from None

    def storage(self) -> StageStorage:
        """The stage's storage; a stage URI that cannot work is a StageError (not retried)."""
        location = self.location
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
                    f"S3 refused {doing} at {self.stage_uri} ({code}): check the bucket, the credentials and "
                    f"the encryption settings (DATAVAULT_S3_SSE, DATAVAULT_S3_SSE_KMS_KEY_ID). {error}"
                ) from None
            raise StageUnavailableError(f"S3 failed while {doing} at {self.stage_uri}: {error}") from None
        except BotoCoreError as error:
            where = f" (endpoint {self.s3.endpoint_url})" if self.s3.endpoint_url else ""
            raise StageUnavailableError(
                f"S3 is unreachable while {doing} at {self.stage_uri}{where}: {error}"
            ) from None

    def read_manifest(self, storage: StageStorage, partition_key: str) -> StagedPartition:
        """The day's current staging; a StageError if it has none, or if its files are not as listed."""
        with self.s3_errors(f"reading the stage manifest of {partition_key}"):
            where = storage.location.uri_of(manifest_name(self.dataset, partition_key))
            data = storage.read_bytes(manifest_name(self.dataset, partition_key))
            if data is None:
                raise StageError(
                    f"Partition {partition_key} has no stage manifest at {where}: it was never staged, or its "
                    f'staging did not finish. Materialize ["s3", "datavault", "{self.dataset}"] for this '
                    "partition first."
                )
            manifest = StagedPartition.parse(data, where)
            if manifest.partition_key != partition_key:
                raise StageError(
                    f"The stage manifest {where} describes {manifest.partition_key}, not {partition_key}."
                )
            present = storage.sizes(f"{manifest.directory}/")
        for staged in manifest.files:
            if present.get(staged.name) != staged.bytes:
                raise StageError(
                    f"Staged file {staged.uri} for {partition_key} is missing or has changed size since it "
                    f"was staged ({present.get(staged.name)} bytes now, {staged.bytes} in the manifest). "
                    "Re-materialize the S3 stage for this partition."
                )
        return manifest

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


@dataclass
class StagedDays:
    """The days a load asks for, and their manifests read on demand.

    The load reads a day's manifest only once it holds the day's lock: a re-staging of that day by another
    run has then finished or not begun. Read before the lock, the manifest may be one that a re-staging has
    just deleted, and the day would look never staged.
    """

    partition_keys: list[str]
    stage: "S3Stage"
    _storage: StageStorage | None = field(default=None, repr=False)

    def read(self, partition_key: str) -> StagedPartition:
        """The day's current manifest; a StageError if the day has none or its files are not as listed."""
        if self._storage is None:
            self._storage = self.stage.storage()
        return self.stage.read_manifest(self._storage, partition_key)


class S3StageIOManager(dg.ConfigurableIOManager):
    """Writes the PostgreSQL stream as Parquet files in the stage, and hands manifests downstream.

    `handle_output` streams each day of a `SourceExtract` through `ParquetDayWriter`, so no day is ever held
    in memory. `load_input` returns the days as `StagedDays`, or, for an input annotated `polars.LazyFrame`, a
    lazy scan of their files.
    """

    stage: dg.ResourceDependency[S3Stage]
    locks: dg.ResourceDependency[PartitionLocks]
    target_file_size_mb: int = Field(
        default=150,
        description="Target size of a staged file: a day is cut into files of equal size near it "
        "(2/3 to 1.6 times; see ParquetDayWriter). Snowflake recommends 100-250 MB.",
    )
    row_group_rows: int = Field(default=131072, description="Rows per Parquet row group, at most.")
    row_group_mb: int = Field(
        default=16,
        description="Uncompressed MB per Parquet row group, at most: the day's rows held in memory "
        "before they are encoded.",
    )

    def stage_day(
        self,
        storage: StageStorage,
        day: SourceDay,
        run_id: str | None = None,
        lock: PartitionLock | None = None,
    ) -> StagedPartition:
        """Stage one day. `lock` (the day's PartitionLock) is checked before the manifest makes it visible."""
        started = time.monotonic()
        key = day.window.partition_key
        directory = day_directory(self.stage.dataset, key)
        staging_id = uuid.uuid4().hex[:12]
        # Invalidate first: a half-staged day has no manifest, so no load can find it.
        storage.delete([f"{directory}/{MANIFEST_NAME}"])
        writer = ParquetDayWriter(
            storage,
            directory,
            day.schema,
            self.target_file_size_mb * 1024 * 1024,
            self.row_group_rows,
            self.row_group_mb * 1024 * 1024,
            expected_rows=day.postgres.estimate_day_rows(day.window),
            file_suffix=f"-{staging_id}",
        )
        with day.open() as batches:
            try:
                for batch in batches:
                    writer.write(batch)
                files = writer.close()
            except BaseException as error:
                writer.abort(error)
                raise
        manifest = StagedPartition(
            partition_key=key,
            staging_id=staging_id,
            window_start=day.window.start.isoformat(),
            window_end=day.window.end.isoformat(),
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
        storage.write_bytes(f"{directory}/{MANIFEST_NAME}", manifest.model_dump_json(indent=1).encode())
        # Older stagings' files go once the new one is visible: a load that pinned one of them fails (and
        # its retry reads this manifest) rather than loading a mix.
        current = {f.name for f in files}
        storage.delete(
            [
                name
                for name in storage.sizes(f"{directory}/")
                if name.endswith(".parquet") and name not in current
            ]
        )
        return manifest

    def for_table(self, table: TableSpec) -> "S3StageIOManager":
        """This IO manager on `table`'s folder of the stage and `table`'s day locks."""
        return self.model_copy(
            update={"stage": self.stage.for_table(table), "locks": self.locks.for_table(table)}
        )

    def handle_output(self, context: dg.OutputContext, obj: SourceExtract) -> None:
        if not isinstance(obj, SourceExtract):
            raise TypeError(f"The S3 stage stores a SourceExtract from PostgreSQL, got {type(obj).__name__}.")
        self.for_table(table_of(context.definition_metadata, context.asset_key))._stage_days(context, obj)

    def _stage_days(self, context: dg.OutputContext, obj: SourceExtract) -> None:
        manifests: list[StagedPartition] = []
        started = time.monotonic()
        with asset_errors(f"Staging to {self.stage.stage_uri}"):
            storage = self.stage.storage()
            for number, day in enumerate(obj.days, start=1):
                key = day.window.partition_key
                with (
                    self.locks.hold(key, holder=f"stage {key} run {context.run_id[:8]}") as lock,
                    self.stage.s3_errors(f"staging {key}"),
                ):
                    manifest = self.stage_day(storage, day, run_id=context.run_id, lock=lock)
                manifests.append(manifest)
                context.log.info(
                    f"Staged {manifest.partition_key} ({number}/{len(obj.days)} days): {manifest.rows:,} "
                    f"rows in {len(manifest.files)} file(s), {manifest.bytes / 1e6:.1f} MB, "
                    f"{manifest.seconds:.2f}s ({manifest.rows / max(manifest.seconds, 1e-6):,.0f} rows/s)"
                )
        seconds = time.monotonic() - started
        context.add_output_metadata(
            materialization_metadata(
                manifests,
                rows=sum(m.rows for m in manifests),
                seconds=seconds,
                seconds_key="stage_seconds",
                column_type=lambda c: c.arrow_type,
                range_uri=f"{self.stage.location.uri}/{self.stage.dataset}",
                day_columns={
                    "rows": lambda i: manifests[i].rows,
                    "files": lambda i: len(manifests[i].files),
                    "bytes": lambda i: manifests[i].bytes,
                    "seconds": lambda i: manifests[i].seconds,
                },
                extra={
                    "staged_files": sum(len(m.files) for m in manifests),
                    "staged_uris": dg.MetadataValue.json([f.uri for m in manifests for f in m.files][:1000]),
                    "rows_per_second": round(sum(m.rows for m in manifests) / seconds) if seconds > 0 else 0,
                },
            )
        )

    def load_input(self, context: dg.InputContext) -> StagedDays | pl.LazyFrame:
        stage = self.stage.for_table(table_of(context.upstream_output.definition_metadata, context.asset_key))
        days = StagedDays(list(context.asset_partition_keys), stage)
        if context.dagster_type.typing_type is not pl.LazyFrame:
            return days
        with asset_errors("Reading the stage manifests"):
            return stage.scan([days.read(key) for key in days.partition_keys])
