"""Reads in bursts (`max_burst_ms`): how big the next piece of a read is, so that one takes about that long, and
whether anyone else is working on the database meanwhile (`OthersAtWork`), which decides how long it may be."""

from dataclasses import dataclass, field

import psycopg

from datavault_analytics.postgres.sessions import LOCK_SESSION_NAME_PREFIX, SESSION_NAME_PREFIX

# The extract and the fingerprints FETCH from a cursor, the cheap tier counts time slices.
FIRST_BURST_ROWS = 64
LEAST_PIECE_ROWS = 16
MOST_BURST_ROWS = 65_536
FIRST_SLICE_SECONDS = 60.0
# A cheap-tier slice holds at most this many bursts' rows: its bound against a width grown over sparse time.
SLICE_ROWS_BOUND = 4
# While alone, the cheap tier counts at most this many days in one statement.
MOST_DAYS_AT_ONCE = 512
# A session of another application that changed state (ran a statement) within this long counts as at work.
# Retrieve's clients each run many a second; an idle connection pool does not.
QUIET_SECONDS = 1.0


@dataclass
class BurstSize:
    """The size of the next piece of a read (rows to FETCH, or seconds of time to count), set after each piece
    so that one takes about `seconds`, or `alone_seconds` while `others` finds no one else at work. A step at
    most halves or doubles it, so one slow piece (a cold page) does not swing it; the first sign of other work
    cuts it at once. A piece of LEAST_PIECE_ROWS rows or fewer is never cut finer: its time is the statement's
    own cost, which a smaller piece would not shorten."""

    seconds: float
    size: float
    least: float
    most: float
    others: "OthersAtWork | None" = None
    alone_seconds: float = 0.0
    target: float = field(init=False)

    def __post_init__(self) -> None:
        self.target = self.seconds

    def next(self) -> float:
        """The next piece's size, for the time it may take now."""
        target = self.alone_seconds if self.others is not None and self.others.alone else self.seconds
        if target != self.target:
            self.size = min(self.most, max(self.least, self.size * target / self.target))
            self.target = target
        return self.size

    def after(self, took: float, rows: int) -> None:
        if took > self.target and rows <= LEAST_PIECE_ROWS:
            return
        factor = min(2.0, max(0.5, self.target / max(took, 1e-6)))
        self.size = min(self.most, max(self.least, self.size * factor))


# Sessions of other applications that are working or were within QUIET_SECONDS. One whose state this role may
# not see (another role's, without pg_read_all_stats) counts as at work: what cannot be seen is not quiet.
# Our own sessions (their application_name: sessions.py, and the day locks') do not count: they are not
# latency-bound.
_AT_WORK_SQL = """
SELECT count(*) FROM pg_catalog.pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND coalesce(application_name, '') NOT LIKE %s || '%%'
  AND coalesce(application_name, '') NOT LIKE %s || '%%'
  AND NOT coalesce(
    state IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
    AND state_change < statement_timestamp() - make_interval(secs => %s), false)
"""


@dataclass
class OthersAtWork:
    """Whether another application works on the database, read from pg_stat_activity on a session of its own
    (`conn`, psycopg, a kept one: a new session's start and end are each a piece of several ms on the
    database's CPU). Each look is its own transaction, as pg_stat_activity is read once per transaction.

    While no one else does, a read of ours may take the CPU in long pieces at whole-statement speed. Retrieve's
    first query after that waits for one such piece, and from then on the read goes on in short bursts: `alone`
    turns False at the first sign of other work and stays so, with no more looks."""

    conn: psycopg.Connection
    alone: bool = True
    looks: int = field(default=0, init=False)

    def look(self) -> bool:
        """Whether still alone, looking again if so."""
        if self.alone:
            self.alone = not self.now()
        return self.alone

    def now(self) -> bool:
        """Whether another application is at work now."""
        self.looks += 1
        [working] = self.conn.execute(
            _AT_WORK_SQL, (SESSION_NAME_PREFIX, LOCK_SESSION_NAME_PREFIX, QUIET_SECONDS)
        ).fetchone()
        if not self.conn.autocommit:
            self.conn.rollback()
        return working > 0
