"""Reads in bursts (`max_burst_ms`): how big the next piece of a read is, so that one takes about that long."""

from dataclasses import dataclass

# The extract and the fingerprints FETCH from a cursor, the cheap tier counts time slices.
# Bursts (max_burst_ms): the extract and the fingerprints FETCH from a cursor, the cheap tier counts time slices.
FIRST_BURST_ROWS = 64
LEAST_PIECE_ROWS = 16
MOST_BURST_ROWS = 65_536
FIRST_SLICE_SECONDS = 60.0


@dataclass
class BurstSize:
    """The size of the next piece of a read (rows to FETCH, or seconds of time to count), set after each piece
    so that one takes about `seconds`. A step at most halves or doubles it, so one slow piece (a cold page)
    does not swing it. A piece of LEAST_PIECE_ROWS rows or fewer is never cut finer: its time is the
    statement's own cost, which a smaller piece would not shorten."""

    seconds: float
    size: float
    least: float
    most: float

    def after(self, took: float, rows: int) -> None:
        if took > self.seconds and rows <= LEAST_PIECE_ROWS:
            return
        factor = min(2.0, max(0.5, self.seconds / max(took, 1e-6)))
        self.size = min(self.most, max(self.least, self.size * factor))
