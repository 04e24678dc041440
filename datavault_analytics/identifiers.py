"""SQL identifiers that come from configuration: validated once, then always quoted.

A name must be a plain identifier (letters, digits, underscores, at most 63 characters); anything else is
refused with an error that names the setting.
"""

import re

from datavault_analytics.errors import InvalidIdentifierError

_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_identifier(name: str, setting: str) -> str:
    """Return `name` unchanged if it is a plain identifier; otherwise raise, naming the setting."""
    if not isinstance(name, str) or not _PLAIN_IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(
            f"{setting}={name!r} is not a plain SQL identifier: use letters, digits and underscores only, "
            "not starting with a digit, at most 63 characters."
        )
    return name


def quote_postgres(name: str) -> str:
    """A PostgreSQL identifier, quoted. PostgreSQL folds unquoted names to lower case."""
    return '"' + validate_identifier(name, "identifier").lower() + '"'


def quote_snowflake(name: str) -> str:
    """A Snowflake identifier, quoted. Snowflake folds unquoted names to upper case."""
    return '"' + validate_identifier(name, "identifier").upper() + '"'
