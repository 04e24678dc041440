"""The code location: assembles assets, jobs and the environment's resources. Nothing else happens here."""

import dagster as dg

from datavault_analytics import assets
from datavault_analytics.environment import build_resources
from datavault_analytics.jobs import records_daily_job

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    jobs=[records_daily_job],
    resources=build_resources(),
    # A run's two steps are sequential; one process per run saves a Python start-up per step.
    executor=dg.in_process_executor,
)
