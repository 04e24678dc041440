"""The stage's IO manager: writes each day handed to it, under the day's lock, and hands the Snowflake asset
the days to load as `StagedDays`, whose manifests the load reads under the same lock."""

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import polars as pl
from pydantic import Field

from datavault_analytics.errors import asset_errors
from datavault_analytics.pipeline.metadata import run_metadata, staged_day_metadata
from datavault_analytics.postgres.extract import SourceDay, SourceExtract
from datavault_analytics.postgres.locks import PartitionLock, PartitionLocks
from datavault_analytics.stage.manifest import MANIFEST_NAME, StagedPartition, day_directory, staged_columns
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.stage.storage import StageStorage
from datavault_analytics.stage.writer import ParquetDayWriter
from datavault_analytics.table.spec import TableSpec, table_of


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
        directory = day_directory(self.stage.table_folder, key)
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
        for manifest in manifests:
            context.step_context.add_asset_metadata(
                staged_day_metadata(manifest),
                asset_key=context.asset_key,
                partition_key=manifest.partition_key,
            )
        context.add_output_metadata(run_metadata(manifests, lambda c: c.arrow_type))
        rows, seconds = sum(m.rows for m in manifests), time.monotonic() - started
        context.log.info(
            f"Staged {len(manifests)} day(s): {rows:,} rows in {seconds:.2f}s ({rows / max(seconds, 1e-6):,.0f} rows/s)"
        )

    def load_input(self, context: dg.InputContext) -> StagedDays | pl.LazyFrame:
        stage = self.stage.for_table(table_of(context.upstream_output.definition_metadata, context.asset_key))
        days = StagedDays(list(context.asset_partition_keys), stage)
        if context.dagster_type.typing_type is not pl.LazyFrame:
            return days
        with asset_errors("Reading the stage manifests"):
            return stage.scan([days.read(key) for key in days.partition_keys])
