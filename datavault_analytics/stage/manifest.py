"""A staged day's manifest: what the Snowflake load receives instead of the bytes, and the stage's layout.

<stage_uri>/<dataset>/dt=2026-11-01/part-00000-<staging id>.parquet, ...
<stage_uri>/<dataset>/dt=2026-11-01/_manifest.json    <- written last; the only way a load finds files
"""

import re

import dagster as dg
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from datavault_analytics.errors import StageError
from datavault_analytics.identifiers import validate_identifier
from datavault_analytics.postgres.catalog import SourceColumn
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics.type_mapping import TypeMapping, mapping_for

MANIFEST_NAME = "_manifest.json"
_FILE_NAME = re.compile(r"part-[0-9]{5}[A-Za-z0-9_-]*\.parquet")
MANIFEST_VERSION = 2


class StagedColumn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    postgres_type: str
    arrow_type: str
    snowflake_type: str
    nullable: bool
    description: str | None = None  # the PostgreSQL column's comment

    def mapping(self) -> TypeMapping:
        """The type mapping this column was staged with: its type's, or the override it records."""
        mapping = mapping_for(self.name, self.postgres_type)
        if mapping.snowflake_type == self.snowflake_type:
            return mapping
        return mapping_for(self.name, self.postgres_type, self.snowflake_type)


class StagedFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # relative to the stage root, e.g. records/dt=2026-11-01/part-00000-<staging id>.parquet
    uri: str
    rows: int
    bytes: int


class StagedPartition(BaseModel):
    """One staging of one day. Its file names are its own (they carry `staging_id`), so a load that pinned
    this manifest loads exactly these files, or fails if a newer staging has replaced them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = MANIFEST_VERSION
    partition_key: str
    staging_id: str
    window_start: str
    window_end: str
    stage_uri: str
    directory: str  # relative to the stage root
    columns: list[StagedColumn]
    files: list[StagedFile]
    rows: int
    bytes: int
    staged_at: str
    seconds: float
    run_id: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "StagedPartition":
        if self.version != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {self.version!r}")
        if not self.columns:
            raise ValueError("it lists no columns")
        if sum(f.rows for f in self.files) != self.rows:
            raise ValueError("its files' rows differ from its total")
        return self

    @classmethod
    def parse(cls, data: bytes, where: str) -> "StagedPartition":
        try:
            return cls.model_validate_json(data)
        except ValidationError as error:
            reasons = "; ".join(
                e["msg"].removeprefix("Value error, ") for e in error.errors(include_url=False)
            )
            raise StageError(
                f"The stage manifest {where} is empty or malformed ({reasons}). Re-materialize the S3 stage "
                "for this partition to rewrite it."
            ) from None

    def refuse_unless_own(self, directory: str, uri_of, mapping_of, where: str) -> None:
        """Raise StageError unless this manifest is what our staging of its day writes: files in the day's own
        `directory`, at the stage's URIs (`uri_of(name)`), and column types that are the table's mapping
        (`mapping_of(name, postgres_type)`). Its text reaches Snowflake's SQL, so nothing else may."""
        problems = []
        if self.directory != directory:
            problems.append(f"its directory {self.directory!r} is not the day's, {directory!r}")
        for staged in self.files:
            if not _FILE_NAME.fullmatch(
                staged.name.removeprefix(f"{directory}/")
            ) or not staged.name.startswith(f"{directory}/"):
                problems.append(f"file {staged.name!r} is not a staged file of the day")
            elif staged.uri != uri_of(staged.name):
                problems.append(f"file {staged.name!r} has URI {staged.uri!r}, not {uri_of(staged.name)!r}")
        for column in self.columns:
            try:
                validate_identifier(column.name, "column")
                mapping = mapping_of(column.name, column.postgres_type)
            except (ValueError, TypeError) as error:
                problems.append(f"column {column.name!r}: {error}")
                continue
            if (str(mapping.arrow_type), mapping.snowflake_type) != (
                column.arrow_type,
                column.snowflake_type,
            ):
                problems.append(
                    f"column {column.name!r} ({column.postgres_type}) is listed as {column.arrow_type} / "
                    f"{column.snowflake_type}, not {mapping.arrow_type} / {mapping.snowflake_type}"
                )
        if problems:
            raise StageError(
                f"The stage manifest {where} is not one our staging wrote: {'; '.join(problems)}. Nothing was "
                "loaded from it. Re-materialize the S3 stage for this partition to rewrite it."
            )

    @property
    def window(self) -> DayWindow:
        return DayWindow.for_key(self.partition_key)

    @property
    def uri(self) -> str:
        return f"{self.stage_uri}/{self.directory}"

    def column_schema(self, type_of=lambda c: c.arrow_type) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    c.name,
                    type_of(c),
                    description=c.description,
                    constraints=dg.TableColumnConstraints(nullable=c.nullable),
                )
                for c in self.columns
            ]
        )


def staged_columns(columns: list[SourceColumn]) -> list[StagedColumn]:
    """How the source's columns are staged, and typed in Snowflake."""
    return [
        StagedColumn(
            name=c.name,
            postgres_type=c.postgres_type,
            arrow_type=str(c.mapping.arrow_type),
            snowflake_type=c.mapping.snowflake_type,
            nullable=c.nullable,
            description=c.description,
        )
        for c in columns
    ]


def day_directory(dataset: str, partition_key: str) -> str:
    return f"{dataset}/dt={partition_key}"


def manifest_name(dataset: str, partition_key: str) -> str:
    return f"{day_directory(dataset, partition_key)}/{MANIFEST_NAME}"
