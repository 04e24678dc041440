"""What every session of ours on DataVault's PostgreSQL is: its TLS settings and its name in pg_stat_activity."""

from psycopg.conninfo import make_conninfo

from datavault_analytics.errors import PostgresConfigError

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# The application_name of every session of ours starts so (a day lock's with its own prefix): postgres/bursts.py
# tells ours from other applications' by it.
SESSION_NAME_PREFIX = "datavault-analytics "
LOCK_SESSION_NAME_PREFIX = "datavault lock "
# Each day's sessions are kept for the next day's read (kept_sessions.py), under this name while idle.
KEPT_SESSION_NAME = f"{SESSION_NAME_PREFIX}kept for the next read"


# What our reads rely on, pinned in every session (extract included) so that no server or database default
# changes a value: a naive `timestamp` is UTC wall-clock time against the day's UTC window; dates, intervals,
# bytea and floats read as text have one form (type_mapping.py).
PINNED_PARAMETERS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "iso_8601",
    "bytea_output": "hex",
    "extra_float_digits": "3",
}


def session_name(purpose: str) -> str:
    """A session's `application_name`: what it does, for which day and run."""
    return f"{SESSION_NAME_PREFIX}{purpose}"[:63]


def with_tls(dsn: str, sslmode: str | None, sslrootcert: str | None) -> str:
    """`dsn` (a URI or key=value string) with the given TLS settings, which override the DSN's own."""
    settings = {k: v for k, v in (("sslmode", sslmode), ("sslrootcert", sslrootcert)) if v}
    if not settings:
        return dsn
    if sslmode and sslmode not in SSL_MODES:
        raise PostgresConfigError(f"postgres.sslmode={sslmode!r} is not one of {', '.join(SSL_MODES)}.")
    return make_conninfo(dsn, **settings)
