"""Staged files are deleted once their day has been in Snowflake for `retention_hours`.

When a day was loaded is Dagster's own record: its latest materialization of the Snowflake asset. A day
re-staged since (its manifest is newer than that load) waits for its next load.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from datavault_analytics.pipeline.check_history import latest_load
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.stage.manifest import MANIFEST_NAME, StageError, day_directory
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics.table.spec import TableSpec


def staged_days(names: list[str], dataset: str) -> list[str]:
    days = []
    for name in names:
        directory, _, file = name.rpartition("/")
        key = directory.rpartition("/dt=")[2]
        if file == MANIFEST_NAME and directory == day_directory(dataset, key):
            try:
                days.append(DayWindow.for_key(key).partition_key)
            except ValueError:
                continue  # not ours to judge: leave it
    return sorted(days)


class StageRetention(dg.ConfigurableResource):
    """Deletes the staged files of days loaded `retention_hours` ago, skipping days another run holds."""

    stage: dg.ResourceDependency[S3Stage]
    locks: dg.ResourceDependency[PartitionLocks]
    retention_hours: float | None = Field(
        default=72,
        description="A loaded day's staged files are deleted by the first load that runs this many hours after the "
        "day was loaded (0: by the next load). None keeps them (an S3 lifecycle rule can expire them).",
    )

    def for_table(self, table: TableSpec) -> "StageRetention":
        """Retention of `table`'s folder of the stage, under `table`'s day locks."""
        return self.model_copy(
            update={"stage": self.stage.for_table(table), "locks": self.locks.for_table(table)}
        )

    def purge_expired(
        self,
        instance: dg.DagsterInstance,
        loaded_asset: dg.AssetKey,
        *,
        holder: str,
        keep: frozenset[str] = frozenset(),
        now: datetime | None = None,
    ) -> list[str]:
        """Delete expired days' staged files (the manifest first, so a purge cut short leaves no manifest
        without its files); return their keys. `keep`: days this run loaded, left for its checks."""
        if self.retention_hours is None:
            return []
        now = now or datetime.now(UTC)
        storage = self.stage.storage()
        purged = []
        with self.stage.s3_errors("deleting staged files past their retention"):
            for key in staged_days(
                list(storage.sizes(f"{self.stage.table_folder}/")), self.stage.table_folder
            ):
                if key in keep or not self._expired(storage, instance, loaded_asset, key, now):
                    continue
                with self.locks.try_hold(key, holder=f"{holder} {key}") as lock:
                    # Re-checked under the lock: the day may have been re-staged in between.
                    if lock is None or not self._expired(storage, instance, loaded_asset, key, now):
                        continue
                    files = storage.sizes(f"{day_directory(self.stage.table_folder, key)}/")
                    storage.delete(sorted(files, key=lambda name: not name.endswith(MANIFEST_NAME)))
                    purged.append(key)
        return purged

    def _expired(self, storage, instance, loaded_asset, key: str, now: datetime) -> bool:
        loaded_at = latest_load(instance, loaded_asset, key)
        if loaded_at is None:
            return False
        try:
            staged_at = datetime.fromisoformat(self.stage.read_manifest(storage, key).staged_at)
        except StageError:
            return False  # incomplete or changed: a staging in progress, or not ours to judge
        loaded = datetime.fromtimestamp(loaded_at, UTC)
        return staged_at <= loaded and loaded + timedelta(hours=self.retention_hours) <= now
