"""Errors that retrying cannot fix, and how a step reports them.

`RetryPolicy` retries a step on any exception, which is right for a server that is briefly down and
wrong for bad input. Errors deriving from `PermanentError` (bad configuration, an unmapped type, schema
drift, a broken stage, a malformed partition key) become a `dagster.Failure` that is not retried, with
a message naming the step.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg


class PermanentError(Exception):
    """An error that the same inputs will always raise again: fix the input, then re-run."""


@contextmanager
def reported_as(step: str) -> Iterator[None]:
    try:
        yield
    except PermanentError as error:
        raise dg.Failure(description=f"{step}: {error}", allow_retries=False) from None
