"""Which environment this is, and every setting: read from the environment once, here and nowhere else,
by pydantic-settings (`EnvironmentVariables`), then checked together (`Settings.from_environment`).

`SETTINGS` is read when the code location loads, and `build_resources` makes the resources from it. Secrets
stay `EnvVar`s. Nothing writes `os.environ`: the local stack's variables come from `stack env` (CLI, make).
"""

from collections.abc import Mapping
from typing import Literal

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_snowflake import SnowflakeResource
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datavault_analytics.errors import ConfigurationError
from datavault_analytics.resources.partition_locks import PartitionLocks
from datavault_analytics.resources.postgres import PostgresResource, PostgresSourceIOManager
from datavault_analytics.resources.s3_stage import S3Stage, S3StageIOManager
from datavault_analytics.resources.snowflake import SnowflakeLoader
from datavault_analytics.resources.table_spec import TableSpec
from datavault_analytics.stage_retention import StageRetention

ENVIRONMENTS = ("local", "prod")
REQUIRED_VARIABLES = (
    "DATAVAULT_PG_DSN",
    "DATAVAULT_STAGE_URI",
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_USER",
    "SNOWFLAKE_ROLE",
    "SNOWFLAKE_WAREHOUSE",
    "SNOWFLAKE_DATABASE",
    "SNOWFLAKE_SCHEMA",
)
S3_SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Settings(BaseModel):
    """Every setting a user may change, with its environment variable (docs/configuration.md)."""

    model_config = ConfigDict(frozen=True)

    environment: Literal["local", "prod"]
    missing_variables: tuple[
        str, ...
    ] = ()  # what prod requires and the environment lacks (build_resources refuses)
    # Shared by every table; per-table settings are in each table's defs.yaml
    observed_days: int = 7  # DATAVAULT_OBSERVED_DAYS
    drift_budget_seconds_per_hour: float = 180  # DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR, all tables' scans
    backfill_days_per_run: int = 0  # DATAVAULT_BACKFILL_DAYS_PER_RUN; 0: a range is one run
    max_retries: int = 3  # DATAVAULT_MAX_RETRIES
    retry_delay_seconds: float = 15  # DATAVAULT_RETRY_DELAY_SECONDS
    # PostgreSQL and the partition locks
    pg_sslmode: str | None = None  # DATAVAULT_PG_SSLMODE
    pg_sslrootcert: str | None = None  # DATAVAULT_PG_SSLROOTCERT
    pg_max_mb_per_second: float | None = None  # DATAVAULT_PG_MAX_MB_PER_SECOND: the extract's throttle
    pg_max_burst_ms: float = 0.3  # DATAVAULT_PG_MAX_BURST_MS: our reads' pieces of work; 0: whole statements
    pg_time_share: float = 1.0  # DATAVAULT_PG_TIME_SHARE: the share of the time our reads work
    pg_statement_timeout_seconds: int = 1800  # DATAVAULT_PG_STATEMENT_TIMEOUT_SECONDS
    pg_idle_in_transaction_timeout_seconds: int = 60  # DATAVAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS
    pg_lock_timeout_seconds: int = 30  # DATAVAULT_PG_LOCK_TIMEOUT_SECONDS
    lock_dsn_variable: str = "DATAVAULT_PG_DSN"  # DATAVAULT_LOCK_DSN when set
    lock_wait_seconds: float = 1800  # DATAVAULT_LOCK_WAIT_SECONDS
    # The S3 stage
    s3_endpoint_url: str | None = None  # DATAVAULT_S3_ENDPOINT_URL
    aws_region: str | None = None  # AWS_DEFAULT_REGION, else AWS_REGION
    s3_sse: str | None = None  # DATAVAULT_S3_SSE: AES256 by default in prod
    s3_sse_kms_key_id: str | None = None  # DATAVAULT_S3_SSE_KMS_KEY_ID
    stage_retention_hours: float | None = 72  # DATAVAULT_STAGE_RETENTION_HOURS
    # Snowflake
    snowflake_host: str | None = None  # SNOWFLAKE_HOST, with SNOWFLAKE_PORT and SNOWFLAKE_PROTOCOL
    snowflake_port: int = 443
    snowflake_protocol: str = "https"
    snowflake_ocsp_fail_open: bool = True  # SNOWFLAKE_OCSP_FAIL_OPEN
    snowflake_auth: Literal["password", "private_key", "private_key_path"] = "password"
    snowflake_private_key_has_password: bool = False  # SNOWFLAKE_PRIVATE_KEY_PASSWORD is set
    snowflake_login_timeout: int = 60  # SNOWFLAKE_LOGIN_TIMEOUT
    snowflake_statement_timeout_seconds: int = 3600  # DATAVAULT_SNOWFLAKE_STATEMENT_TIMEOUT_SECONDS
    snowflake_storage_integration: str | None = None  # SNOWFLAKE_STORAGE_INTEGRATION
    snowflake_lock_timeout_seconds: int = 300  # DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS
    snowflake_time_travel_days: int = 1  # DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS, when the table is created
    snowflake_transient_table: bool = False  # DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE, when the table is created

    @classmethod
    def from_environment(
        cls, environment: str | None = None, environ: Mapping[str, str] | None = None
    ) -> "Settings":
        """The settings in the environment (or `environ`), for `environment` (default: DATAVAULT_ENV)."""
        env = EnvironmentVariables.read(environ)
        name = (environment or env.DATAVAULT_ENV).strip().lower()
        if name not in ENVIRONMENTS:
            raise ConfigurationError(f"DATAVAULT_ENV={name!r} is not one of {', '.join(ENVIRONMENTS)}.")
        sse, kms_key = env.s3_encryption(name)
        host, protocol = env.SNOWFLAKE_HOST, env.SNOWFLAKE_PROTOCOL
        if host and protocol != "https" and host not in _LOOPBACK_HOSTS:
            raise ConfigurationError(
                f"SNOWFLAKE_PROTOCOL={protocol!r} is only allowed for an emulator on this machine "
                f"(SNOWFLAKE_HOST=127.0.0.1 or localhost), not {host}: Snowflake is reached over TLS "
                "(https)."
            )
        transient, time_travel = (
            env.DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE,
            env.DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS,
        )
        if transient and time_travel > 1:
            raise ConfigurationError(
                f"DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS={time_travel}: a TRANSIENT table "
                "(DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE) keeps at most 1 day of Time Travel; set 0 or 1."
            )
        auth = (
            "private_key_path"
            if env.SNOWFLAKE_PRIVATE_KEY_PATH
            else "private_key"
            if env.SNOWFLAKE_PRIVATE_KEY
            else "password"
        )
        return cls(
            environment=name,
            missing_variables=env.missing_required() if name == "prod" else (),
            observed_days=env.DATAVAULT_OBSERVED_DAYS,
            drift_budget_seconds_per_hour=env.DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR,
            backfill_days_per_run=env.DATAVAULT_BACKFILL_DAYS_PER_RUN,
            max_retries=env.DATAVAULT_MAX_RETRIES,
            retry_delay_seconds=env.DATAVAULT_RETRY_DELAY_SECONDS,
            pg_sslmode=env.DATAVAULT_PG_SSLMODE,
            pg_sslrootcert=env.DATAVAULT_PG_SSLROOTCERT,
            pg_max_mb_per_second=env.DATAVAULT_PG_MAX_MB_PER_SECOND,
            pg_max_burst_ms=env.DATAVAULT_PG_MAX_BURST_MS,
            pg_time_share=env.DATAVAULT_PG_TIME_SHARE,
            pg_statement_timeout_seconds=env.DATAVAULT_PG_STATEMENT_TIMEOUT_SECONDS,
            pg_idle_in_transaction_timeout_seconds=env.DATAVAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS,
            pg_lock_timeout_seconds=env.DATAVAULT_PG_LOCK_TIMEOUT_SECONDS,
            lock_dsn_variable="DATAVAULT_LOCK_DSN" if env.DATAVAULT_LOCK_DSN else "DATAVAULT_PG_DSN",
            lock_wait_seconds=env.DATAVAULT_LOCK_WAIT_SECONDS,
            s3_endpoint_url=env.DATAVAULT_S3_ENDPOINT_URL,
            aws_region=env.AWS_DEFAULT_REGION or env.AWS_REGION,
            s3_sse=sse,
            s3_sse_kms_key_id=kms_key,
            stage_retention_hours=env.DATAVAULT_STAGE_RETENTION_HOURS,
            snowflake_host=host,
            snowflake_port=env.SNOWFLAKE_PORT,
            snowflake_protocol=protocol,
            snowflake_ocsp_fail_open=env.SNOWFLAKE_OCSP_FAIL_OPEN,
            snowflake_auth=auth,
            snowflake_private_key_has_password=auth != "password"
            and bool(env.SNOWFLAKE_PRIVATE_KEY_PASSWORD),
            snowflake_login_timeout=env.SNOWFLAKE_LOGIN_TIMEOUT,
            snowflake_statement_timeout_seconds=env.DATAVAULT_SNOWFLAKE_STATEMENT_TIMEOUT_SECONDS,
            snowflake_storage_integration=env.SNOWFLAKE_STORAGE_INTEGRATION,
            snowflake_lock_timeout_seconds=env.DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS,
            snowflake_time_travel_days=time_travel,
            snowflake_transient_table=transient,
        )


class EnvironmentVariables(BaseSettings):
    """Every environment variable the settings read, by its name, typed and read by pydantic-settings.
    Secrets are read only to know whether they are set; the resources take them as `EnvVar`s."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, str_strip_whitespace=True, extra="ignore", frozen=True
    )

    DATAVAULT_ENV: str = "local"
    DATAVAULT_OBSERVED_DAYS: int = 7
    DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR: float = Field(180, gt=0)
    DATAVAULT_BACKFILL_DAYS_PER_RUN: int = Field(0, ge=0)
    DATAVAULT_MAX_RETRIES: int = Field(3, ge=0)
    DATAVAULT_RETRY_DELAY_SECONDS: float = Field(15, ge=0)
    DATAVAULT_PG_DSN: SecretStr | None = None
    DATAVAULT_PG_SSLMODE: str | None = None
    DATAVAULT_PG_SSLROOTCERT: str | None = None
    DATAVAULT_PG_MAX_MB_PER_SECOND: float | None = Field(None, gt=0)  # unset: no limit
    DATAVAULT_PG_MAX_BURST_MS: float = Field(0.3, ge=0)
    DATAVAULT_PG_TIME_SHARE: float = Field(1.0, gt=0, le=1)
    DATAVAULT_PG_STATEMENT_TIMEOUT_SECONDS: int = 1800
    DATAVAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS: int = 60
    DATAVAULT_PG_LOCK_TIMEOUT_SECONDS: int = 30
    DATAVAULT_LOCK_DSN: SecretStr | None = None
    DATAVAULT_LOCK_WAIT_SECONDS: float = 1800
    DATAVAULT_STAGE_URI: str | None = None
    DATAVAULT_S3_ENDPOINT_URL: str | None = None
    AWS_DEFAULT_REGION: str | None = None
    AWS_REGION: str | None = None
    DATAVAULT_S3_SSE: str | None = None
    DATAVAULT_S3_SSE_KMS_KEY_ID: str | None = None
    DATAVAULT_STAGE_RETENTION_HOURS: float | None = 72  # "none": kept
    SNOWFLAKE_ACCOUNT: str | None = None
    SNOWFLAKE_USER: str | None = None
    SNOWFLAKE_ROLE: str | None = None
    SNOWFLAKE_WAREHOUSE: str | None = None
    SNOWFLAKE_DATABASE: str | None = None
    SNOWFLAKE_SCHEMA: str | None = None
    SNOWFLAKE_PASSWORD: SecretStr | None = None
    SNOWFLAKE_PRIVATE_KEY: SecretStr | None = None
    SNOWFLAKE_PRIVATE_KEY_PATH: str | None = None
    SNOWFLAKE_PRIVATE_KEY_PASSWORD: SecretStr | None = None
    SNOWFLAKE_HOST: str | None = None
    SNOWFLAKE_PORT: int = 443
    SNOWFLAKE_PROTOCOL: str = "https"
    SNOWFLAKE_OCSP_FAIL_OPEN: bool = True
    SNOWFLAKE_LOGIN_TIMEOUT: int = 60
    SNOWFLAKE_STORAGE_INTEGRATION: str | None = None
    DATAVAULT_SNOWFLAKE_STATEMENT_TIMEOUT_SECONDS: int = Field(3600, gt=0)
    DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS: int = 300
    DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS: int = Field(1, ge=0)
    DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE: bool = False

    @field_validator("DATAVAULT_STAGE_RETENTION_HOURS", mode="before")
    @classmethod
    def _hours_or_none(cls, value):
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> "EnvironmentVariables":
        """The process environment's variables, or `environ`'s; a bad value names its variable."""
        try:
            if environ is None:
                return cls()
            return cls.model_validate({k: v for k, v in environ.items() if v.strip()})
        except ValidationError as error:
            raise ConfigurationError(
                "; ".join(
                    f"{'.'.join(map(str, e['loc']))}={e['input']!r}: {e['msg']}" for e in error.errors()
                )
            ) from None

    def missing_required(self) -> tuple[str, ...]:
        missing = [name for name in REQUIRED_VARIABLES if not getattr(self, name)]
        if not (self.SNOWFLAKE_PASSWORD or self.SNOWFLAKE_PRIVATE_KEY or self.SNOWFLAKE_PRIVATE_KEY_PATH):
            missing.append("SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY / SNOWFLAKE_PRIVATE_KEY_PATH)")
        return tuple(missing)

    def s3_encryption(self, environment: str) -> tuple[str | None, str | None]:
        """(ServerSideEncryption, SSEKMSKeyId) for staged objects: AES256 (SSE-S3) unless set, in prod."""
        value = self.DATAVAULT_S3_SSE or ("AES256" if environment == "prod" else "none")
        key_id = self.DATAVAULT_S3_SSE_KMS_KEY_ID
        if value.lower() == "none":
            if key_id:
                raise ConfigurationError(
                    "DATAVAULT_S3_SSE_KMS_KEY_ID is set, but DATAVAULT_S3_SSE=none turns encryption off."
                )
            return None, None
        if value not in S3_SSE_MODES:
            raise ConfigurationError(
                f"DATAVAULT_S3_SSE={value!r} is not one of {', '.join(S3_SSE_MODES)} or none."
            )
        if key_id and not value.startswith("aws:kms"):
            raise ConfigurationError(
                f"DATAVAULT_S3_SSE_KMS_KEY_ID needs DATAVAULT_S3_SSE=aws:kms, not {value}."
            )
        return value, key_id


SETTINGS = Settings.from_environment()


def _snowflake_resource(settings: Settings) -> SnowflakeResource:
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
            # The parameters the SQL relies on are pinned by the loader on every connection (session_parameters).
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        },
        **auth,
    )


def build_resources(settings: Settings = SETTINGS) -> dict:
    """The resources for `settings`. Opens no connection."""
    if settings.missing_variables:
        raise ConfigurationError(
            "DATAVAULT_ENV=prod needs these environment variables, which are unset: "
            + ", ".join(settings.missing_variables)
            + ". See docs/configuration.md."
        )
    # Each table's assets bind these to their table (`for_table`).
    table = TableSpec()
    postgres = PostgresResource(
        dsn=dg.EnvVar("DATAVAULT_PG_DSN"),
        table=table,
        sslmode=settings.pg_sslmode,
        sslrootcert=settings.pg_sslrootcert,
        statement_timeout_seconds=settings.pg_statement_timeout_seconds,
        idle_in_transaction_timeout_seconds=settings.pg_idle_in_transaction_timeout_seconds,
        lock_timeout_seconds=settings.pg_lock_timeout_seconds,
        max_mb_per_second=settings.pg_max_mb_per_second,
        max_burst_ms=settings.pg_max_burst_ms,
        time_share=settings.pg_time_share,
    )
    locks = PartitionLocks(
        dsn=dg.EnvVar(settings.lock_dsn_variable),
        sslmode=settings.pg_sslmode,
        sslrootcert=settings.pg_sslrootcert,
        wait_seconds=settings.lock_wait_seconds,
        table=table,
    )
    s3 = S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region)
    stage = S3Stage(
        s3=s3,
        stage_uri=dg.EnvVar("DATAVAULT_STAGE_URI"),
        server_side_encryption=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
    )
    snowflake = _snowflake_resource(settings)
    return {
        "postgres": postgres,
        "partition_locks": locks,
        "s3": s3,
        "s3_stage": stage,
        "snowflake": snowflake,
        "postgres_io_manager": PostgresSourceIOManager(postgres=postgres),
        "s3_stage_io_manager": S3StageIOManager(stage=stage, locks=locks),
        "stage_retention": StageRetention(
            stage=stage, locks=locks, retention_hours=settings.stage_retention_hours
        ),
        "snowflake_loader": SnowflakeLoader(
            snowflake=snowflake,
            stage=stage,
            table=table,
            storage_integration=settings.snowflake_storage_integration,
            lock_timeout_seconds=settings.snowflake_lock_timeout_seconds,
            time_travel_days=settings.snowflake_time_travel_days,
            transient_table=settings.snowflake_transient_table,
        ),
    }
