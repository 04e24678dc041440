"""Keep credentials out of every message: errors, logs and metadata pass through `redact`."""

import re
from urllib.parse import urlsplit

_URI_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@", re.I)
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.I)


def secrets_of(value: str | None) -> list[str]:
    """The secret parts of a setting: a URI's password, or the whole value."""
    if not value:
        return []
    if "://" in value:
        password = urlsplit(value).password
        return [password] if password else []
    return [value]


def redact(text: str, *secret_settings: str | None) -> str:
    """`text` with URI passwords, `password=...` pairs and the given secrets replaced by ***."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _KEYWORD_PASSWORD.sub(r"\1***", text)
    for setting in secret_settings:
        for secret in secrets_of(setting):
            if len(secret) >= 3:
                text = text.replace(secret, "***")
    return text
