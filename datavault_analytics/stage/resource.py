"""The S3 Parquet stage: where PostgreSQL's rows wait, as Parquet files, for Snowflake's COPY INTO.

`S3Stage` is the stage's location, storage and manifests for one table's folder. docs/stage.md describes the
layout; io_manager.py writes and hands on the days.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import dagster as dg
import polars as pl
import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field, field_validator

from datavault_analytics.errors import StageError, StageUnavailableError, UnboundTableError
from datavault_analytics.identifiers import validate_identifier
from datavault_analytics.stage.manifest import (
    StagedPartition,
    day_directory,
    manifest_name,
)
from datavault_analytics.stage.storage import (
    LocalStageStorage,
    S3StageStorage,
    StageLocation,
    StageStorage,
)
from datavault_analytics.table.spec import TableSpec
from datavault_analytics.type_mapping import mapping_for

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


class S3Stage(dg.ConfigurableResource):
    """Where staged files live (s3://bucket/prefix, or file:///path), and how they are read and written."""

    s3: dg.ResourceDependency[S3Resource]
    stage_uri: str = Field(
        description="Where staged files go: s3://bucket/prefix, or file:///path for a local stage."
    )
    dataset: str | None = Field(
        default=None, description="Folder under the stage URI that holds the bound table's days (for_table)."
    )
    table_spec: TableSpec | None = Field(
        default=None, description="The bound table (for_table): its column types check a manifest."
    )
    server_side_encryption: str | None = Field(
        default=None,
        description="S3 server-side encryption for staged files: AES256 (SSE-S3) or aws:kms (SSE-KMS).",
    )
    sse_kms_key_id: str | None = Field(default=None, description="KMS key for aws:kms encryption.")

    @field_validator("dataset")
    @classmethod
    def _plain_identifier(cls, name: str | None) -> str | None:
        return None if name is None else validate_identifier(name, "s3_stage.dataset")

    def for_table(self, table: TableSpec) -> "S3Stage":
        """The stage's folder for `table`: <stage_uri>/<table name>/dt=<day>/."""
        return self.model_copy(update={"dataset": table.name, "table_spec": table})

    @property
    def table_folder(self) -> str:
        """The bound table's folder; unbound, the stage refuses to read or write any table's days."""
        if self.dataset is None:
            raise UnboundTableError(
                "S3Stage is shared by every table and was not bound to one: call `.for_table(pipeline.spec)` "
                "before it reads or writes a table's days."
            )
        return self.dataset

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
        folder = self.table_folder  # bound to a table, or refused before reading
        with self.s3_errors(f"reading the stage manifest of {partition_key}"):
            where = storage.location.uri_of(manifest_name(folder, partition_key))
            data = storage.read_bytes(manifest_name(folder, partition_key))
            if data is None:
                raise StageError(
                    f"Partition {partition_key} has no stage manifest at {where}: it was never staged, or its "
                    f'staging did not finish. Materialize ["s3", "datavault", "{self.table_folder}"] for this '
                    "partition first."
                )
            manifest = StagedPartition.parse(data, where)
            if manifest.partition_key != partition_key:
                raise StageError(
                    f"The stage manifest {where} describes {manifest.partition_key}, not {partition_key}."
                )
            manifest.refuse_unless_own(
                day_directory(folder, partition_key),
                storage.location.uri_of,
                self.table_spec.mapping_of if self.table_spec else mapping_for,
                where,
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
            schema = pa.schema([pa.field(c.name, c.mapping().arrow_type) for c in columns])
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
