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


S3_SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _flag(name: str, default: bool) -> bool:
    value = os.getenv(name, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigurationError(f"{name}={value!r} is not true or false.")
    return value in ("true", "1", "yes")


def _float_or_none(name: str, default: float | None) -> float | None:
    value = os.getenv(name, "").strip().lower()
    if not value:
        return default
    if value == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a number of hours (or none).") from None


def s3_encryption(environment: str) -> tuple[str | None, str | None]:
    """(ServerSideEncryption, SSEKMSKeyId) for staged objects: AES256 (SSE-S3) unless set, in prod.

    DATAVAULT_S3_SSE: AES256, aws:kms or aws:kms:dsse (with DATAVAULT_S3_SSE_KMS_KEY_ID for a
    customer-managed key), or `none` to turn it off; unset means AES256 in prod and none in local.
    """
    value = os.getenv("DATAVAULT_S3_SSE", "").strip() or ("AES256" if environment == "prod" else "none")
    key_id = _optional("DATAVAULT_S3_SSE_KMS_KEY_ID")
    if value.lower() == "none":
        if key_id:
            raise ConfigurationError("DATAVAULT_S3_SSE_KMS_KEY_ID is set, but DATAVAULT_S3_SSE=none turns encryption off.")
        return None, None
    if value not in S3_SSE_MODES:
        raise ConfigurationError(f"DATAVAULT_S3_SSE={value!r} is not one of {', '.join(S3_SSE_MODES)} or none.")
    if key_id and not value.startswith("aws:kms"):
        raise ConfigurationError(f"DATAVAULT_S3_SSE_KMS_KEY_ID needs DATAVAULT_S3_SSE=aws:kms, not {value}.")
    return value, key_id


def _snowflake_resource() -> SnowflakeResource:
    emulator = {}
    if host := _optional("SNOWFLAKE_HOST"):
        # An emulator (fakesnow) or a private endpoint: the connector's host/port/protocol settings.
        protocol = os.getenv("SNOWFLAKE_PROTOCOL", "https")
        if protocol != "https" and host not in _LOOPBACK_HOSTS:
            raise ConfigurationError(
                f"SNOWFLAKE_PROTOCOL={protocol!r} is only allowed for an emulator on this machine "
                f"(SNOWFLAKE_HOST=127.0.0.1 or localhost), not {host}: Snowflake is reached over TLS (https)."
            )
        emulator = {"host": host, "port": int(os.getenv("SNOWFLAKE_PORT", "443")), "protocol": protocol}
    # TLS to Snowflake is always on (https). OCSP revocation checks fail open by default, as in the
    # connector; SNOWFLAKE_OCSP_FAIL_OPEN=false makes an unverifiable certificate stop the connection.
    tls = {"ocsp_fail_open": _flag("SNOWFLAKE_OCSP_FAIL_OPEN", True)}
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
            **tls,
            # The parameters the SQL relies on are pinned by the loader on every connection (session_parameters).
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        },
        **auth,
    )


def build_resources(environment: str | None = None) -> dict:
    """The resources for `environment` (default: DATAVAULT_ENV). Opens no connection."""
    environment = apply_environment_defaults(environment)
    sse, sse_kms_key_id = s3_encryption(environment)
    postgres = PostgresResource(
        dsn=dg.EnvVar("DATAVAULT_PG_DSN"),
        # TLS: libpq's sslmode (verify-full in production) and the CA file that verifies the server.
        sslmode=_optional("DATAVAULT_PG_SSLMODE"),
        sslrootcert=_optional("DATAVAULT_PG_SSLROOTCERT"),
        # The per-day partition locks (locks.py): on the source, unless that is a pool of servers.
        lock_dsn=dg.EnvVar("DATAVAULT_LOCK_DSN") if _optional("DATAVAULT_LOCK_DSN") else None,
        lock_wait_seconds=float(os.getenv("DATAVAULT_LOCK_WAIT_SECONDS", "1800")),
    )
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
            # Staged ciphertext is encrypted at rest in S3 too: SSE-S3 by default in prod (see s3_encryption).
            server_side_encryption=sse,
            sse_kms_key_id=sse_kms_key_id,
            retention_hours=_float_or_none("DATAVAULT_STAGE_RETENTION_HOURS", 72),
        ),
        "snowflake_loader": SnowflakeLoader(
            snowflake=snowflake,
            stage_uri=stage_uri,
            storage_integration=_optional("SNOWFLAKE_STORAGE_INTEGRATION"),
            lock_timeout_seconds=int(os.getenv("DATAVAULT_SNOWFLAKE_LOCK_TIMEOUT_SECONDS", "300")),
        ),
    }
