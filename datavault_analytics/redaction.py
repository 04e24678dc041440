"""Keep credentials out of every message: `redact` removes URI passwords, `password=` pairs and given secrets.

`redact_known_secrets` also removes the values of the secret variables (SECRET_VARIABLES): the one place
outside `environment.py` that reads the environment, since secrets are never copied into the settings.
"""

import os
import re
from urllib.parse import unquote, urlsplit

_URI_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@", re.I
)
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.I)
MIN_SECRET_LENGTH = 3  # shorter values would blank out ordinary words
# The environment variables whose values (or, for a DSN, whose password) are secrets.
SECRET_VARIABLES = (
    "DATAVAULT_PG_DSN",
    "DATAVAULT_LOCK_DSN",
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_PRIVATE_KEY",
    "SNOWFLAKE_PRIVATE_KEY_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def secrets_of(value: str | None) -> list[str]:
    """The secret parts of a setting: a URI's or a keyword DSN's password, else the whole value.

    A multi-line value (a PEM private key) also yields each of its long lines, so a fragment is caught too.
    """
    if not value:
        return []
    if "://" in value:  # a URI with a password: the password, as written and decoded
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password:
            return sorted({password, unquote(password)})
    if keyword := _KEYWORD_PASSWORD.search(value):  # a libpq keyword/value DSN: its password
        return [keyword[2].strip("'")]
    lines = [line.strip() for line in value.splitlines() if len(line.strip()) >= 16 and "-----" not in line]
    return [value, *lines]


def redact(text: str, *secret_settings: str | None) -> str:
    """`text` with URI passwords, `password=...` pairs and the given secrets replaced by ***."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _KEYWORD_PASSWORD.sub(r"\1***", text)
    secrets = {s for setting in secret_settings for s in secrets_of(setting)}
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: a line of a key after the key
        if len(secret) < MIN_SECRET_LENGTH or not secret.strip("*"):
            continue
        while secret in text:  # a replacement next to a '*' of the secret can form it again
            text = text.replace(secret, "***")
    return text


def dsn_location(dsn: str) -> str:
    """Where a PostgreSQL DSN points (host:port/dbname), without user or password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:  # unparsable: say so rather than echo it
        return "an unparsable DSN"
    host = str(parts.get("host") or parts.get("hostaddr") or "localhost")
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


def redact_known_secrets(text: str, *secret_settings: str | None) -> str:
    """`redact`, also removing the values of every variable in SECRET_VARIABLES that is set."""
    return redact(text, *secret_settings, *(os.environ.get(name) for name in SECRET_VARIABLES))
