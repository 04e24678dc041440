"""Every name this project gives to Dagster: asset keys, jobs, schedules, sensors, checks, run tags, metadata
keys, resource keys and the pool. The definitions test pins them: a deployment's history, its UI bookmarks and
its alerting depend on them, so they never change by accident.
"""

import dagster as dg

DOMAIN = "datavault"

# The systems each table lives in: the first part of its asset keys, and the asset's kind in the UI.
POSTGRES, S3, SNOWFLAKE = "postgres", "s3", "snowflake"

# The four per-day checks of a table's Snowflake asset.
ROW_COUNT = "row_count_matches_postgres"
CONTENT_HASH = "content_hash_matches_postgres"
NO_DUPLICATE_IDS = "no_duplicate_ids"
MANIFEST_MATCHES_LOAD = "staged_manifest_matches_load"
CHECK_NAMES = (ROW_COUNT, CONTENT_HASH, NO_DUPLICATE_IDS, MANIFEST_MATCHES_LOAD)

# Run tags. Dagster's own name a run's day or range of days; ours say why a run was launched.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
RUN_KEY_TAG = "dagster/run_key"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
TRIGGER_TAG = "datavault/trigger"  # schedule, drift or drift-scan
SCHEDULE_TRIGGER, DRIFT_TRIGGER, SCAN_TRIGGER = "schedule", "drift", "drift-scan"
TABLE_TAG = "datavault/table"
LATE_ROW_DAYS_TAG = "datavault/late_row_days"
DRIFTED_DAYS_TAG = "datavault/drifted_days"  # on a repair run: how many of its days differ
SCAN_SECONDS_TAG = "datavault/scan_seconds"  # on a finished scan run: the seconds its statements took
LOADED_DAYS_TAG = "datavault/loaded_days"  # on a loading run, as it goes: JSON {day: rows} of the days loaded

# Metadata keys that code reads back (the rest are for people and named where they are written).
TABLE_METADATA_KEY = "datavault/table"  # every asset's definition metadata: its TableSpec
SOURCE_FINGERPRINTS = "postgres_fingerprints"  # on a load: PostgreSQL's side of the checks, read meanwhile
FINDINGS_KEY = "drift_scan"  # on a scan's observation: the repairs and the sensor's next state

# The resources every table shares (resources.py builds them), by the key the definitions bind them to.
POSTGRES_RESOURCE = "postgres"
PARTITION_LOCKS = "partition_locks"
S3_RESOURCE = "s3"
S3_STAGE = "s3_stage"
SNOWFLAKE_RESOURCE = "snowflake"
SNOWFLAKE_LOADER = "snowflake_loader"
STAGE_RETENTION = "stage_retention"
ALERT_WEBHOOK = "alert_webhook"
ALERT_SENSOR_NAME = "datavault_alerts"
POSTGRES_IO_MANAGER = "postgres_io_manager"
S3_STAGE_IO_MANAGER = "s3_stage_io_manager"

# The Dagster pool of every op that reads DataVault's database in bulk (extracts, drift scans), of every
# table: its limit bounds how many do at once.
POSTGRES_POOL = "datavault_postgres"


class TableNames:
    """The names of one table's definitions, from `name` (the source table's name; records keeps the names
    an existing deployment has). Mixed into TablePipeline."""

    name: str

    def asset_key(self, system: str) -> dg.AssetKey:
        """[system, "datavault", <table name>]"""
        return dg.AssetKey([system, DOMAIN, self.name])

    @property
    def source_key(self) -> dg.AssetKey:
        return self.asset_key(POSTGRES)

    @property
    def stage_key(self) -> dg.AssetKey:
        return self.asset_key(S3)

    @property
    def snowflake_key(self) -> dg.AssetKey:
        return self.asset_key(SNOWFLAKE)

    @property
    def job_name(self) -> str:
        return f"datavault_{self.name}_daily"

    @property
    def schedule_name(self) -> str:
        return f"datavault_{self.name}_daily_schedule"

    @property
    def drift_sensor_name(self) -> str:
        return f"datavault_{self.name}_drift_sensor"

    @property
    def drift_scan_job_name(self) -> str:
        return f"datavault_{self.name}_drift_scan"

    @property
    def drift_scan_op_name(self) -> str:
        return f"scan_{self.name}_for_drift"

    @property
    def checks_name(self) -> str:
        return f"snowflake_{self.name}_checks"

    @property
    def failed_staging_hook_name(self) -> str:
        return f"{self.name}_verifications_survive_failed_staging"
