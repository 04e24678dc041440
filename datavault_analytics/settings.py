"""Every setting shared by all tables, with its environment variable: the one class that reads them.

Each field names its variable (`validation_alias`) and carries its bounds and description. A knob that a
resource has is declared on the resource, once, and read here with `_knob`, which takes its default, bounds
and description from there. Settings are read when the definitions are built (`Settings.from_environment()`
in defs/resources.py and in the component), never at import. Secrets are read only to know whether they are
set: the resources take them as `EnvVar`s. Nothing writes `os.environ`. docs/configuration.md lists them.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from datavault_analytics.errors import ConfigurationError
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.retention import StageRetention

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


def _knob(resource: type, field: str, variable: str) -> Any:
    """The resource's field, as the setting read from `variable`: its default, bounds and description."""
    return FieldInfo.merge_field_infos(resource.model_fields[field], validation_alias=variable)


def _variable(variable: str, default: Any = None, description: str | None = None, **bounds) -> Any:
    return Field(default, validation_alias=variable, description=description, **bounds)


class Settings(BaseSettings):
    """Every setting a user may change, each read from its environment variable."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        str_strip_whitespace=True,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    environment: str = _variable("DATAVAULT_ENV", "local", "local (the embedded stack) or prod.")
    automation: bool | None = _variable(
        "DATAVAULT_AUTOMATION",
        None,
        "Whether every table's schedule and drift sensor start running when the code location loads: "
        "on/off; unset: on in prod, off locally (where `make dev AUTOMATION=on` turns them all on).",
    )
    alert_webhook_url: SecretStr | None = _variable(
        "DATAVAULT_ALERT_WEBHOOK_URL",
        None,
        "Where alerts are POSTed (Slack's incoming-webhook JSON); unset: no alerts are sent.",
    )
    # Shared by every table; per-table settings are in each table's defs.yaml (table/config.py).
    observed_days: int = _variable(
        "DATAVAULT_OBSERVED_DAYS", 7, "Recent days each observation of a source records.", ge=1
    )
    drift_budget_seconds_per_hour: float = _variable(
        "DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR",
        180,
        "Seconds of DataVault's database the drift scans of every table may take per hour.",
        gt=0,
    )
    backfill_days_per_run: int = _variable(
        "DATAVAULT_BACKFILL_DAYS_PER_RUN", 0, "Days per run of a UI backfill; 0: a range is one run.", ge=0
    )
    max_retries: int = _variable(
        "DATAVAULT_MAX_RETRIES", 3, "Retries of a step after a transient error.", ge=0
    )
    retry_delay_seconds: float = _variable(
        "DATAVAULT_RETRY_DELAY_SECONDS", 15, "First retry's delay; each next one doubles.", ge=0
    )
    # PostgreSQL and the partition locks
    pg_dsn: SecretStr | None = _variable("DATAVAULT_PG_DSN", description="libpq URI of DataVault's database.")
    lock_dsn: SecretStr | None = _variable(
        "DATAVAULT_LOCK_DSN", description="Where the day locks are taken; default: DATAVAULT_PG_DSN."
    )
    pg_sslmode: str | None = _knob(PostgresResource, "sslmode", "DATAVAULT_PG_SSLMODE")
    pg_sslrootcert: str | None = _knob(PostgresResource, "sslrootcert", "DATAVAULT_PG_SSLROOTCERT")
    pg_max_mb_per_second: float | None = _knob(
        PostgresResource, "max_mb_per_second", "DATAVAULT_PG_MAX_MB_PER_SECOND"
    )
    pg_max_burst_ms: float = _knob(PostgresResource, "max_burst_ms", "DATAVAULT_PG_MAX_BURST_MS")
    pg_alone_burst_ms: float = _knob(PostgresResource, "alone_burst_ms", "DATAVAULT_PG_ALONE_BURST_MS")
    pg_time_share: float = _knob(PostgresResource, "time_share", "DATAVAULT_PG_TIME_SHARE")
    pg_statement_timeout_seconds: int = _knob(
        PostgresResource, "statement_timeout_seconds", "DATAVAULT_PG_STATEMENT_TIMEOUT_SECONDS"
    )
    pg_idle_in_transaction_timeout_seconds: int = _knob(
        PostgresResource,
        "idle_in_transaction_timeout_seconds",
        "DATAVAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS",
    )
    pg_lock_timeout_seconds: int = _knob(
        PostgresResource, "lock_timeout_seconds", "DATAVAULT_PG_LOCK_TIMEOUT_SECONDS"
    )
    lock_wait_seconds: float = _knob(PartitionLocks, "wait_seconds", "DATAVAULT_LOCK_WAIT_SECONDS")
    # The S3 stage
    stage_uri: str | None = _variable(
        "DATAVAULT_STAGE_URI", description="s3://bucket/prefix, or file:///path."
    )
    s3_endpoint_url: str | None = _variable(
        "DATAVAULT_S3_ENDPOINT_URL", description="An S3-compatible endpoint (an emulator); unset: AWS."
    )
    aws_default_region: str | None = _variable("AWS_DEFAULT_REGION", description="The bucket's region.")
    aws_region_fallback: str | None = _variable(
        "AWS_REGION", description="Read when AWS_DEFAULT_REGION is not."
    )
    s3_sse_mode: str | None = _variable(
        "DATAVAULT_S3_SSE",
        description="AES256, aws:kms, aws:kms:dsse or none; unset: AES256 in prod, none locally.",
    )
    s3_sse_kms_key_id: str | None = _variable(
        "DATAVAULT_S3_SSE_KMS_KEY_ID", description="KMS key for aws:kms."
    )
    stage_retention_hours: float | None = _knob(
        StageRetention, "retention_hours", "DATAVAULT_STAGE_RETENTION_HOURS"
    )
    # Snowflake: where, and who (the resource reads each as an EnvVar; here only whether it is set)
    snowflake_account: str | None = _variable("SNOWFLAKE_ACCOUNT")
    snowflake_user: str | None = _variable("SNOWFLAKE_USER")
    snowflake_role: str | None = _variable("SNOWFLAKE_ROLE")
    snowflake_warehouse: str | None = _variable("SNOWFLAKE_WAREHOUSE")
    snowflake_database: str | None = _variable("SNOWFLAKE_DATABASE")
    snowflake_schema: str | None = _variable("SNOWFLAKE_SCHEMA")
    snowflake_password: SecretStr | None = _variable("SNOWFLAKE_PASSWORD")
    snowflake_private_key: SecretStr | None = _variable("SNOWFLAKE_PRIVATE_KEY")
    snowflake_private_key_path: str | None = _variable("SNOWFLAKE_PRIVATE_KEY_PATH")
    snowflake_private_key_password: SecretStr | None = _variable("SNOWFLAKE_PRIVATE_KEY_PASSWORD")
    snowflake_host: str | None = _variable(
        "SNOWFLAKE_HOST",
        description="An emulator or private endpoint, with SNOWFLAKE_PORT and SNOWFLAKE_PROTOCOL.",
    )
    snowflake_port: int = _variable("SNOWFLAKE_PORT", 443)
    snowflake_protocol: str = _variable(
        "SNOWFLAKE_PROTOCOL", "https", "https; http only for an emulator here."
    )
    snowflake_ocsp_fail_open: bool = _variable("SNOWFLAKE_OCSP_FAIL_OPEN", True)
    snowflake_login_timeout: int = _variable("SNOWFLAKE_LOGIN_TIMEOUT", 60, "Seconds to log in.", gt=0)
    snowflake_statement_timeout_seconds: int = _variable(
        "DATAVAULT_SNOWFLAKE_STATEMENT_TIMEOUT_SECONDS",
        3600,
        "Upper bound on one Snowflake statement, the connector's retries included.",
        gt=0,
    )
    snowflake_storage_integration: str | None = _knob(
        SnowflakeLoader, "storage_integration", "SNOWFLAKE_STORAGE_INTEGRATION"
    )
    snowflake_lock_timeout_seconds: int = _knob(
        SnowflakeLoader, "lock_timeout_seconds", "DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS"
    )
    snowflake_time_travel_days: int = _knob(
        SnowflakeLoader, "time_travel_days", "DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS"
    )
    snowflake_transient_table: bool = _knob(
        SnowflakeLoader, "transient_table", "DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE"
    )

    @property
    def automation_on(self) -> bool:
        """Whether schedules and sensors run when the code location loads (DATAVAULT_AUTOMATION)."""
        return self.environment == "prod" if self.automation is None else self.automation

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in ENVIRONMENTS:
            raise ValueError(f"DATAVAULT_ENV={name!r} is not one of {', '.join(ENVIRONMENTS)}.")
        return name

    @field_validator("stage_retention_hours", mode="before")
    @classmethod
    def _hours_or_none(cls, value):
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

    @model_validator(mode="after")
    def _settings_that_work_together(self) -> "Settings":
        host, protocol = self.snowflake_host, self.snowflake_protocol
        if host and protocol != "https" and host not in _LOOPBACK_HOSTS:
            raise ValueError(
                f"SNOWFLAKE_PROTOCOL={protocol!r} is only allowed for an emulator on this machine "
                f"(SNOWFLAKE_HOST=127.0.0.1 or localhost), not {host}: Snowflake is reached over TLS (https)."
            )
        if self.snowflake_transient_table and self.snowflake_time_travel_days > 1:
            raise ValueError(
                f"DATAVAULT_SNOWFLAKE_TIME_TRAVEL_DAYS={self.snowflake_time_travel_days}: a TRANSIENT table "
                "(DATAVAULT_SNOWFLAKE_TRANSIENT_TABLE) keeps at most 1 day of Time Travel; set 0 or 1."
            )
        self._s3_encryption()
        return self

    @classmethod
    def from_environment(
        cls, environment: str | None = None, environ: Mapping[str, str] | None = None
    ) -> "Settings":
        """The settings in the process environment (or `environ`), for `environment` (default: DATAVAULT_ENV).
        A value that cannot work is a ConfigurationError naming its variable."""
        override = {"DATAVAULT_ENV": environment} if environment else {}
        try:
            if environ is None:
                return cls(**override)
            return cls.model_validate({**{k: v for k, v in environ.items() if v.strip()}, **override})
        except ValidationError as error:
            raise ConfigurationError("; ".join(_reason(e) for e in error.errors(include_url=False))) from None

    # -- what follows from the variables -----------------------------------------------------------

    @property
    def missing_variables(self) -> tuple[str, ...]:
        """What prod requires and the environment lacks (build_resources refuses); nothing locally."""
        if self.environment != "prod":
            return ()
        present = {
            "DATAVAULT_PG_DSN": self.pg_dsn,
            "DATAVAULT_STAGE_URI": self.stage_uri,
            "SNOWFLAKE_ACCOUNT": self.snowflake_account,
            "SNOWFLAKE_USER": self.snowflake_user,
            "SNOWFLAKE_ROLE": self.snowflake_role,
            "SNOWFLAKE_WAREHOUSE": self.snowflake_warehouse,
            "SNOWFLAKE_DATABASE": self.snowflake_database,
            "SNOWFLAKE_SCHEMA": self.snowflake_schema,
        }
        missing = [name for name in REQUIRED_VARIABLES if not present[name]]
        if self.snowflake_auth == "password" and not self.snowflake_password:
            missing.append("SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY / SNOWFLAKE_PRIVATE_KEY_PATH)")
        return tuple(missing)

    @property
    def lock_dsn_variable(self) -> str:
        return "DATAVAULT_LOCK_DSN" if self.lock_dsn else "DATAVAULT_PG_DSN"

    @property
    def aws_region(self) -> str | None:
        return self.aws_default_region or self.aws_region_fallback

    @property
    def s3_sse(self) -> str | None:
        """ServerSideEncryption of staged objects: AES256 (SSE-S3) unless set, in prod."""
        return self._s3_encryption()

    @property
    def snowflake_auth(self) -> str:
        """Which secret authenticates: a key file, a key, or the password."""
        if self.snowflake_private_key_path:
            return "private_key_path"
        return "private_key" if self.snowflake_private_key else "password"

    @property
    def snowflake_private_key_has_password(self) -> bool:
        return self.snowflake_auth != "password" and bool(self.snowflake_private_key_password)

    def _s3_encryption(self) -> str | None:
        value = self.s3_sse_mode or ("AES256" if self.environment == "prod" else "none")
        key_id = self.s3_sse_kms_key_id
        if value.lower() == "none":
            if key_id:
                raise ValueError(
                    "DATAVAULT_S3_SSE_KMS_KEY_ID is set, but DATAVAULT_S3_SSE=none turns encryption off."
                )
            return None
        if value not in S3_SSE_MODES:
            raise ValueError(f"DATAVAULT_S3_SSE={value!r} is not one of {', '.join(S3_SSE_MODES)} or none.")
        if key_id and not value.startswith("aws:kms"):
            raise ValueError(f"DATAVAULT_S3_SSE_KMS_KEY_ID needs DATAVAULT_S3_SSE=aws:kms, not {value}.")
        return value


def _reason(error: dict) -> str:
    """One validation error, naming its variable (errors are located by the variable's name); a secret's value
    is never shown."""
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error" or not error["loc"]:
        return message
    variable = str(error["loc"][0])
    secret = variable in _SECRET_VARIABLES
    return f"{variable}={'<secret>' if secret else repr(error['input'])}: {message}"


_SECRET_VARIABLES = {
    field.validation_alias
    for field in Settings.model_fields.values()
    if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
}
