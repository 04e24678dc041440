"""A table's daily job: stage and load a day (or a range of days), then its checks."""

import dagster as dg

from datavault_analytics.table.pipeline import TablePipeline


def build_table_job(pipeline: TablePipeline):
    return dg.define_asset_job(
        name=pipeline.job_name,
        selection=dg.AssetSelection.assets(pipeline.stage_key, pipeline.snowflake_key),
        description=f"PostgreSQL -> S3 Parquet stage -> Snowflake for the selected day(s) of {pipeline.spec.source_name}.",
    )
