"""The resources every table shares, made from the settings. Opens no connection.

Each table's assets bind the shared ones to their table (`for_table`); unbound, a resource refuses to read
or write any table.
"""

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_snowflake import SnowflakeResource

from datavault_analytics import names
from datavault_analytics.alerts.webhook import AlertWebhook
from datavault_analytics.errors import ConfigurationError
from datavault_analytics.postgres.io_manager import PostgresSourceIOManager
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.settings import Settings
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.io_manager import S3StageIOManager
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.stage.retention import StageRetention


def snowflake_resource(settings: Settings) -> SnowflakeResource:
    emulator = {}
    if settings.snowflake_host:  # an emulator (fakesnow) or a private endpoint
        emulator = {
            "host": settings.snowflake_host,
            "port": settings.snowflake_port,
            "protocol": settings.snowflake_protocol,
        }
    auth = {settings.snowflake_auth: dg.EnvVar(f"SNOWFLAKE_{settings.snowflake_auth.upper()}")}
    if settings.snowflake_private_key_has_password:
        auth["private_key_password"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PASSWORD")
    return SnowflakeResource(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        user=dg.EnvVar("SNOWFLAKE_USER"),
        role=dg.EnvVar("SNOWFLAKE_ROLE"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
        database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        # Pass the field by its alias: `schema_=` is accepted here but dropped when a run resolves config.
        schema=dg.EnvVar("SNOWFLAKE_SCHEMA"),
        login_timeout=settings.snowflake_login_timeout,
        # The connector re-sends a statement that got no answer or an HTTP error, by default forever: a run
        # would hang, holding its load transaction. This bounds every statement, its retries included.
        network_timeout=settings.snowflake_statement_timeout_seconds,
        additional_snowflake_connection_args={
            **emulator,
            # TLS is always on (https); OCSP checks fail open unless SNOWFLAKE_OCSP_FAIL_OPEN=false.
            "ocsp_fail_open": settings.snowflake_ocsp_fail_open,
            # The parameters the SQL relies on are pinned by the loader on every connection (session.py).
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        },
        **auth,
    )


def build_resources(settings: Settings) -> dict:
    """The shared resources for `settings`, by their keys (names.py)."""
    if settings.missing_variables:
        raise ConfigurationError(
            "DATAVAULT_ENV=prod needs these environment variables, which are unset: "
            + ", ".join(settings.missing_variables)
            + ". See docs/configuration.md."
        )
    postgres = PostgresResource(
        dsn=dg.EnvVar("DATAVAULT_PG_DSN"),
        sslmode=settings.pg_sslmode,
        sslrootcert=settings.pg_sslrootcert,
        statement_timeout_seconds=settings.pg_statement_timeout_seconds,
        idle_in_transaction_timeout_seconds=settings.pg_idle_in_transaction_timeout_seconds,
        lock_timeout_seconds=settings.pg_lock_timeout_seconds,
        max_mb_per_second=settings.pg_max_mb_per_second,
        max_burst_ms=settings.pg_max_burst_ms,
        alone_burst_ms=settings.pg_alone_burst_ms,
        time_share=settings.pg_time_share,
    )
    locks = PartitionLocks(
        dsn=dg.EnvVar(settings.lock_dsn_variable),
        sslmode=settings.pg_sslmode,
        sslrootcert=settings.pg_sslrootcert,
        wait_seconds=settings.lock_wait_seconds,
    )
    s3 = S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region)
    stage = S3Stage(
        s3=s3,
        stage_uri=dg.EnvVar("DATAVAULT_STAGE_URI"),
        server_side_encryption=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
    )
    snowflake = snowflake_resource(settings)
    return {
        names.POSTGRES_RESOURCE: postgres,
        names.PARTITION_LOCKS: locks,
        names.S3_RESOURCE: s3,
        names.S3_STAGE: stage,
        names.SNOWFLAKE_RESOURCE: snowflake,
        names.POSTGRES_IO_MANAGER: PostgresSourceIOManager(postgres=postgres),
        names.S3_STAGE_IO_MANAGER: S3StageIOManager(stage=stage, locks=locks),
        names.STAGE_RETENTION: StageRetention(
            stage=stage, locks=locks, retention_hours=settings.stage_retention_hours
        ),
        names.SNOWFLAKE_LOADER: SnowflakeLoader(
            snowflake=snowflake,
            stage=stage,
            storage_integration=settings.snowflake_storage_integration,
            lock_timeout_seconds=settings.snowflake_lock_timeout_seconds,
            time_travel_days=settings.snowflake_time_travel_days,
            transient_table=settings.snowflake_transient_table,
        ),
        names.ALERT_WEBHOOK: AlertWebhook(
            url=dg.EnvVar("DATAVAULT_ALERT_WEBHOOK_URL") if settings.alert_webhook_url else None
        ),
    }
