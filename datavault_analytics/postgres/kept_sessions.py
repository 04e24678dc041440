"""Sessions on DataVault's PostgreSQL kept open from one day's read to the next, for a few seconds.

A backend's start, and its exit after a read, are each one piece of 1 to 5 ms on the database's CPU (perf
sched on the benchmark's isolated database: an extract of a 100k-row day ended with a 4.5 to 5.4 ms exit;
ADBC's first connection, which loads the type catalog, took 6.5 ms in pieces of up to 1.8 ms). A Retrieve
that wakes during one waits for it. A backfill reads a day every second or so, with a few sessions a day, so
the next day reuses the last day's idle session instead. A session is kept only after a read that ended
cleanly, outside any transaction; one unused for KEEP_SECONDS is closed, so a long-lived process (the
daemon, the code server) holds none. The partition locks' sessions are not kept: a lock ends with its
session, which is what makes a killed or interrupted step never leave a day locked.
"""

import threading
from collections.abc import Hashable
from typing import Any

KEEP_SECONDS = 10.0


class KeptSessions:
    """At most one idle session (a connection with `close()`) per key, closed when unused too long."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: dict[Hashable, tuple[Any, threading.Timer]] = {}

    def take(self, key: Hashable) -> Any | None:
        """The idle session kept for `key`, now the caller's; None if there is none."""
        with self._lock:
            kept = self._idle.pop(key, None)
        if kept is None:
            return None
        session, timer = kept
        timer.cancel()
        return session

    def keep(self, key: Hashable, session: Any) -> None:
        """Keep an idle session for the next read; the one already kept for `key` (if any) is closed."""
        timer = threading.Timer(KEEP_SECONDS, self._expire, (key, session))
        timer.daemon = True
        with self._lock:
            previous = self._idle.pop(key, None)
            self._idle[key] = (session, timer)
        timer.start()
        if previous is not None:
            previous[1].cancel()
            self.discard(previous[0])

    def discard(self, session: Any) -> None:
        try:
            session.close()
        except Exception:  # already broken: the server has ended it
            pass

    def _expire(self, key: Hashable, session: Any) -> None:
        with self._lock:
            kept = self._idle.get(key)
            if kept is None or kept[0] is not session:
                return  # taken meanwhile
            del self._idle[key]
        self.discard(session)
