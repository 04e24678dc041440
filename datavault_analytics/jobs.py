"""The main job: stage and load a day (or a range of days) of DataVault records."""

import dagster as dg

from datavault_analytics.assets import SNOWFLAKE_KEY, STAGE_KEY

records_daily_job = dg.define_asset_job(
    name="datavault_records_daily",
    selection=dg.AssetSelection.assets(STAGE_KEY, SNOWFLAKE_KEY),
    description="PostgreSQL -> S3 Parquet stage -> Snowflake for the selected day(s).",
)
