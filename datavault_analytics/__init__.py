"""DataVault Analytics: DataVault's PostgreSQL records -> S3 Parquet stage -> Snowflake, on Dagster."""
