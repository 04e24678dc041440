"""Errors that retrying cannot fix, errors that it may, and how a step reports them.

`RetryPolicy` retries a step on any exception, which is right for a server that is briefly down and
wrong for bad input. Errors deriving from `PermanentError` (bad configuration, an unmapped type, schema
drift, a broken stage, a malformed partition key) become a `dagster.Failure` that is not retried, with
a message naming the step.

Errors deriving from `TransientError` say which part failed (PostgreSQL, S3, Snowflake, the partition
lock); `reported_as` adds the step they failed at, and they are retried. Both kinds pass through
`redaction.redact_known_secrets` on the way out, so no configured secret reaches a log or the UI.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from datavault_analytics.redaction import redact_known_secrets


class PermanentError(Exception):
    """An error that the same inputs will always raise again: fix the input, then re-run."""


class TransientError(RuntimeError):
    """A part (PostgreSQL, S3, Snowflake) was unreachable or failed mid-way: a retry may succeed.

    The message names the part; `reported_as` adds the step. Nothing half-done is left behind: a stage
    without its manifest is never loaded, and a load that fails rolls its transaction back.
    """

    step: str | None = None

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} [step: {self.step}]" if self.step else message


@contextmanager
def reported_as(step: str) -> Iterator[None]:
    try:
        yield
    except PermanentError as error:
        raise dg.Failure(description=redact_known_secrets(f"{step}: {error}"), allow_retries=False) from None
    except TransientError as error:
        if error.step is None:  # the innermost step names it best
            error.step = step
        error.args = tuple(redact_known_secrets(str(a)) for a in error.args)
        raise
