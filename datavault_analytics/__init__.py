"""DataVault Analytics: DataVault's PostgreSQL tables -> S3 Parquet stage -> Snowflake, on Dagster."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Dagster's notices about the beta and preview features this project uses (BackfillPolicy, partitioned
# asset checks, components) concern this code, not whoever loads it: silenced once, for the code server,
# `dg`, the CLI and the run workers alike, which all import this package first.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
