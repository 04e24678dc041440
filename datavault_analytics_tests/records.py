"""DataVault's `records` table as the code location builds it, from its real defs.yaml: what most tests run."""

from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.drift.scan import build_drift_scan_job
from datavault_analytics.drift.sensor import build_drift_sensor
from datavault_analytics.pipeline.assets import build_table_assets
from datavault_analytics.pipeline.checks import build_table_checks, check_specs
from datavault_analytics.pipeline.job import build_table_job
from datavault_analytics.pipeline.schedule import build_table_schedule

RECORDS = configured_table("records")
SOURCE_KEY, STAGE_KEY, SNOWFLAKE_KEY = RECORDS.source_key, RECORDS.stage_key, RECORDS.snowflake_key
PARTITIONS = RECORDS.partitions
ALL_ASSETS = build_table_assets(RECORDS)
CHECKS = build_table_checks(RECORDS)
CHECK_SPECS = check_specs(RECORDS)
JOB = build_table_job(RECORDS)
SCHEDULE = build_table_schedule(RECORDS, JOB)
DRIFT_SCAN_JOB = build_drift_scan_job(RECORDS)
DRIFT_SENSOR = build_drift_sensor(RECORDS, JOB, DRIFT_SCAN_JOB)
RECORDS_SPEC = RECORDS.spec
