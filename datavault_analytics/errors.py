"""Every error the pipeline raises on purpose, and the one place an asset converts them.

Two kinds, never both (a test holds every class here to that):
- `PermanentError`: the same inputs raise it again. Bad configuration, an unmapped type, schema drift, a
  broken stage, a malformed partition key. It becomes a `dagster.Failure` that is not retried.
- `TransientError`: a part (PostgreSQL, S3, Snowflake, the partition lock) was unreachable or failed
  mid-way; the asset's RetryPolicy retries it. Nothing half-done is left behind: a stage without its
  manifest is never loaded, and a load that fails rolls its transaction back.

docs/errors.md lists each class with what an operator does about it.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from datavault_analytics.redaction import redact_known_secrets


class PermanentError(Exception):
    """An error that the same inputs will always raise again: fix the input, then re-run."""


class TransientError(RuntimeError):
    """A part was unreachable or failed mid-way: a retry may succeed."""

    step: str | None = None

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} [step: {self.step}]" if self.step else message


# -- permanent: fix something, then re-run ---------------------------------------------------------


class ConfigurationError(PermanentError, ValueError):
    """The environment is unknown or incomplete, or a setting cannot work."""


class InvalidIdentifierError(PermanentError, ValueError):
    """A configured table, schema, column or object name is not a plain SQL identifier."""


class InvalidPartitionKeyError(PermanentError, ValueError):
    """A partition key that is not a day of this pipeline's partitions."""


class UnboundTableError(PermanentError, RuntimeError):
    """A shared resource was asked to read or write a table before it was bound to one (`for_table`)."""


class UnmappedTypeError(PermanentError, TypeError):
    """A source column has a PostgreSQL type this pipeline does not know how to carry."""


class UnloadableValueError(PermanentError, ValueError):
    """A source value that its Snowflake type cannot hold exactly (postgres/values.py)."""


class SourceSchemaError(PermanentError, ValueError):
    """The source table is missing, or its columns cannot be carried as they are."""


class PostgresConfigError(PermanentError, ValueError):
    """A PostgreSQL setting cannot work as given."""


class StageError(PermanentError, RuntimeError):
    """The stage is missing, incomplete or inconsistent, or S3 refused the request for a reason that a retry
    does not change (credentials, bucket, encryption key)."""


class SnowflakeConfigError(PermanentError, ValueError):
    """The Snowflake settings cannot work as given (stage URL, stage object pointing elsewhere, a key)."""


class SchemaDriftError(PermanentError, ValueError):
    """The stage's columns no longer fit the Snowflake table in a way that is safe to apply on our own."""


class SnowflakeLockTimeoutError(PermanentError, RuntimeError):
    """A transaction that is not one of our loads held the table's lock past LOCK_TIMEOUT; the message says
    how to end it.

    Not retried: a load ends our own dead loads' transactions before it begins (a live one's is
    SnowflakeTableBusyError), so this one is someone else's, which Snowflake ends only after 4 idle hours.
    """


# -- transient: retried ----------------------------------------------------------------------------


class PostgresSourceError(TransientError):
    """PostgreSQL could not be read; the message says at which step and never includes credentials."""


class PartitionLockError(TransientError):
    """The day's lock could not be taken or was lost: PostgreSQL unreachable, or the connection dropped."""


class PartitionBusyError(TransientError):
    """Another run held the day's lock for longer than this step would wait."""


class StageUnavailableError(TransientError):
    """S3 could not be reached or failed mid-way; nothing half-staged is ever loaded, so a retry is safe."""


class AlertDeliveryError(TransientError):
    """The alert webhook did not take an alert; the alert sensor sends it again on its next tick."""


class SnowflakeTableBusyError(TransientError):
    """Another live load of the table held its lock past LOCK_TIMEOUT (many loads of one table at once); the
    day is retried later, and nothing was changed."""


class SnowflakeLoadError(TransientError):
    """Snowflake failed while a day was loaded or read; the day's previous contents are untouched."""


@contextmanager
def asset_errors(step: str) -> Iterator[None]:
    """At an asset's (or IO manager's, or check's) boundary: name the step and redact, once."""
    try:
        yield
    except PermanentError as error:
        raise dg.Failure(description=redact_known_secrets(f"{step}: {error}"), allow_retries=False) from None
    except TransientError as error:
        if error.step is None:
            error.step = step
        error.args = tuple(redact_known_secrets(str(a)) for a in error.args)
        raise
