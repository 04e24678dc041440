"""Errors that retrying cannot fix, errors that it may, and the one place each asset converts them.

docs/errors.md explains the split; in short, `PermanentError` becomes a non-retryable `dagster.Failure`,
`TransientError` is retried by the asset's RetryPolicy, and both are redacted on the way out.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from datavault_analytics.redaction import redact_known_secrets


class ConfigurationError(ValueError):
    """The environment is unknown or incomplete, or a setting cannot work."""


class PermanentError(Exception):
    """An error that the same inputs will always raise again: fix the input, then re-run."""


class TransientError(RuntimeError):
    """A part (PostgreSQL, S3, Snowflake, the partition lock) was unreachable or failed mid-way: a retry may
    succeed. Nothing half-done is left behind: a stage without its manifest is never loaded, and a load that
    fails rolls its transaction back."""

    step: str | None = None

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} [step: {self.step}]" if self.step else message


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
