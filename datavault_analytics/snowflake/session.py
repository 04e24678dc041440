"""A Snowflake session as the loader's SQL needs it: every parameter it relies on pinned, whatever the
account's defaults, and errors that say where."""

from collections.abc import Iterator
from contextlib import contextmanager

from datavault_analytics.errors import SnowflakeConfigError, SnowflakeLoadError


def session_parameters(lock_timeout_seconds: int, query_tag: str) -> dict[str, str]:
    """Every session parameter the loader's SQL relies on, as SQL values, with why."""
    return {
        # Parquet timestamps adjusted to UTC arrive as TIMESTAMP_LTZ and are converted into the TIMESTAMP_NTZ
        # columns in this zone (the account default is usually America/Los_Angeles); days are UTC days.
        "TIMEZONE": "'UTC'",
        # A statement waiting for a table lock (a dead run's open transaction) fails after this, not 12 hours.
        "LOCK_TIMEOUT": str(int(lock_timeout_seconds)),
        # The run and the day in the query history, so a dead run's statements and transaction can be found.
        "QUERY_TAG": _sql_string(query_tag[:2000]),
        # No query of ours converts binary to text implicitly (fingerprints hex-encode by name); pinned so
        # that a future one would read the same on every account.
        "BINARY_OUTPUT_FORMAT": "'HEX'",
        # A killed run's running statement stops with its client instead of going on (the default, FALSE).
        "ABORT_DETACHED_QUERY": "TRUE",
    }


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class SnowflakeSession:
    """SnowflakeLoader's connection (a mixin: `self` is the loader)."""

    @contextmanager
    def connection(self, query_tag: str = "datavault-analytics") -> Iterator:
        """A connection with every session parameter of `session_parameters` pinned, whatever the account's."""
        with self.snowflake.get_connection() as conn:
            settings = session_parameters(self.lock_timeout_seconds, query_tag)
            conn.cursor().execute("ALTER SESSION SET " + " ".join(f"{k} = {v}" for k, v in settings.items()))
            yield conn

    @property
    def where(self) -> str:
        """The account (and host, for an emulator or private endpoint), for messages."""
        host = (self.snowflake.additional_snowflake_connection_args or {}).get("host")
        return f"account {self.snowflake.account}" + (f" at {host}" if host else "")

    def _settings_error(self, error: BaseException) -> SnowflakeConfigError:
        """A ValueError while connecting comes from the settings (a private key that does not load, with
        its passphrase), not from the network: retrying cannot help."""
        return SnowflakeConfigError(f"The Snowflake connection settings cannot work ({self.where}): {error}")

    def _fail(self, message: str, error: BaseException | None = None) -> SnowflakeLoadError:
        return SnowflakeLoadError(message + (f": {error}" if error else ""))
