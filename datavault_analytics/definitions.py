"""The code location: assembles the assets, checks, job, schedule, sensor and the environment's resources."""

import dagster as dg

from datavault_analytics import assets
from datavault_analytics.checks import snowflake_records_checks
from datavault_analytics.environment import SETTINGS, build_resources
from datavault_analytics.jobs import records_daily_job
from datavault_analytics.schedules import records_daily_schedule
from datavault_analytics.sensors import drift_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=[snowflake_records_checks],
    jobs=[records_daily_job],
    schedules=[records_daily_schedule],
    sensors=[drift_sensor],
    resources=build_resources(SETTINGS),
    # A run's two steps are sequential; one process per run saves a Python start-up per step.
    executor=dg.in_process_executor,
)
