"""Which environment this is, and the resources for it: decided here and nowhere else.

Both environments build the same resources from the same environment variables (`EnvVar`, so secrets
are resolved at run time and never stored in the definitions). `local` first fills in any variable
that is unset with the embedded stack's values (`datavault-analytics stack env`); `prod` requires them.
"""

import os

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_snowflake import SnowflakeResource

from datavault_analytics.resources.postgres import PostgresResource, PostgresSourceIOManager
from datavault_analytics.resources.s3_stage import S3StageIOManager
from datavault_analytics.resources.snowflake import SnowflakeLoader

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


class ConfigurationError(ValueError):
    """The environment is unknown or incomplete."""


def get_environment() -> str:
    environment = os.getenv("DATAVAULT_ENV", "local").strip().lower()
    if environment not in ENVIRONMENTS:
        raise ConfigurationError(f"DATAVAULT_ENV={environment!r} is not one of {', '.join(ENVIRONMENTS)}.")
    return environment


def _optional(name: str) -> str | None:
    return os.environ.get(name) or None


def apply_environment_defaults(environment: str | None = None) -> str:
    """`local`: fill in unset variables from the embedded stack. `prod`: check that none is missing."""
    environment = environment or get_environment()
    if environment == "local":
        from datavault_analytics.local_stack.stack import local_environment

        for name, value in local_environment().items():
            os.environ.setdefault(name, value)
    else:
        _check_required()
    return environment


def _check_required() -> None:
    missing = [name for name in REQUIRED_VARIABLES if not os.environ.get(name)]
    if not (os.environ.get("SNOWFLAKE_PASSWORD") or os.environ.get("SNOWFLAKE_PRIVATE_KEY")
            or os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")):
        missing.append("SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY / SNOWFLAKE_PRIVATE_KEY_PATH)")
    if missing:
        raise ConfigurationError(
            "DATAVAULT_ENV=prod needs these environment variables, which are unset: " + ", ".join(missing)
            + ". See the README's 'Configuration' section."
        )


def _snowflake_resource() -> SnowflakeResource:
    emulator = {}
    if host := _optional("SNOWFLAKE_HOST"):
        # An emulator (fakesnow) or a private endpoint: the connector's host/port/protocol settings.
        emulator = {"host": host, "port": int(os.getenv("SNOWFLAKE_PORT", "443")),
                    "protocol": os.getenv("SNOWFLAKE_PROTOCOL", "https")}
    auth: dict = {}
    if _optional("SNOWFLAKE_PRIVATE_KEY_PATH"):
        auth["private_key_path"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PATH")
    elif _optional("SNOWFLAKE_PRIVATE_KEY"):
        auth["private_key"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY")
    else:
        auth["password"] = dg.EnvVar("SNOWFLAKE_PASSWORD")
    if auth.keys() & {"private_key", "private_key_path"} and _optional("SNOWFLAKE_PRIVATE_KEY_PASSWORD"):
        auth["private_key_password"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PASSWORD")
    return SnowflakeResource(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        user=dg.EnvVar("SNOWFLAKE_USER"),
        role=dg.EnvVar("SNOWFLAKE_ROLE"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
        database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        # Pass the field by its alias: `schema_=` is accepted here but dropped when a run resolves config.
        schema=dg.EnvVar("SNOWFLAKE_SCHEMA"),
        login_timeout=int(os.getenv("SNOWFLAKE_LOGIN_TIMEOUT", "60")),
        additional_snowflake_connection_args={
            **emulator,
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "TIMEZONE": "UTC"},
        },
        **auth,
    )


def build_resources(environment: str | None = None) -> dict:
    """The resources for `environment` (default: DATAVAULT_ENV). Opens no connection."""
    environment = apply_environment_defaults(environment)
    postgres = PostgresResource(dsn=dg.EnvVar("DATAVAULT_PG_DSN"))
    s3 = S3Resource(
        endpoint_url=_optional("DATAVAULT_S3_ENDPOINT_URL"),
        region_name=_optional("AWS_DEFAULT_REGION") or _optional("AWS_REGION"),
    )
    snowflake = _snowflake_resource()
    stage_uri = dg.EnvVar("DATAVAULT_STAGE_URI")
    return {
        "postgres": postgres,
        "s3": s3,
        "snowflake": snowflake,
        "postgres_io_manager": PostgresSourceIOManager(postgres=postgres),
        "s3_stage_io_manager": S3StageIOManager(
            s3=s3,
            stage_uri=stage_uri,
            # Staged ciphertext is encrypted at rest in S3 too; the local S3 emulator does not need it.
            server_side_encryption=os.getenv("DATAVAULT_S3_SSE", "AES256" if environment == "prod" else "") or None,
            sse_kms_key_id=_optional("DATAVAULT_S3_SSE_KMS_KEY_ID"),
        ),
        "snowflake_loader": SnowflakeLoader(
            snowflake=snowflake,
            stage_uri=stage_uri,
            storage_integration=_optional("SNOWFLAKE_STORAGE_INTEGRATION"),
        ),
    }
