"""Drift: finding the days of history where Snowflake no longer equals PostgreSQL, and planning their repair.

One scan (a run of the table's drift scan job, launched by its drift sensor every `drift.scan_seconds`;
sensors.py) has two tiers:
- cheap, every day of history: row count and latest `updated_at` per day on both sides, one statement each;
  this finds erasures, backdated rows and updates that bump `updated_at`;
- content, a few days per scan, the least recently verified first: the full fingerprint over every column
  (fingerprint.py); this finds what touches no `updated_at`, e.g. a payload rewritten in place.
Days found different are re-materialized through the job, batched into a few range runs. What a scan must
remember between scans (`ScanState`) is small: where the content tier is, and the days being repaired.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property

import dagster as dg
from pydantic import BaseModel, Field

from datavault_analytics.names import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.verification.fingerprint import NO_ROWS, DaySummary

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class Repair(BaseModel):
    """A day the scan has asked to reload: how often in a row, for the same PostgreSQL content."""

    attempts: int = 0
    source: str  # the day's PostgreSQL summary when last requested; a change starts the count again
    reported: bool = False  # given up on, and said so once


class ScanState(BaseModel):
    """The drift sensor's cursor."""

    scans: int = 0
    scan_run_key: str | None = None  # the scan run the sensor launched and waits for
    scan_requested_at: float | None = None  # when it was requested (seconds since the epoch)
    last_scan_at: float | None = (
        None  # when the latest scan was requested; the next is due scan_seconds later
    )
    next_content_day: str | None = None  # where the content tier's round over history goes on
    content_drifted: dict[str, str] = Field(default_factory=dict)  # day -> why, until verified equal again
    repairs: dict[str, Repair] = Field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "ScanState":
        return cls.model_validate_json(cursor) if cursor else cls()


@dataclass(frozen=True)
class CheapTier:
    """Each day's summary on both sides, and the days whose summaries differ."""

    postgres: dict[str, DaySummary]
    snowflake: dict[str, DaySummary]
    days: list[str]

    @cached_property
    def drifted(self) -> dict[str, str]:
        """day -> what differs, for every day whose count or latest update differs."""
        found = {}
        for day in self.days:
            source, target = self.postgres.get(day, NO_ROWS), self.snowflake.get(day, NO_ROWS)
            if source.rows != target.rows:
                found[day] = f"PostgreSQL has {source.rows:,} rows, Snowflake {target.rows:,}"
            elif source.latest_update_us != target.latest_update_us:
                found[day] = (
                    "a row was updated in PostgreSQL after the day's last load (latest updated_at differs)"
                )
        return found

    def has_rows(self, day: str) -> bool:
        return self.postgres.get(day, NO_ROWS).rows > 0 or self.snowflake.get(day, NO_ROWS).rows > 0


def content_days(
    state: ScanState, cheap: CheapTier, busy: set[str], per_scan: int
) -> tuple[list[str], list[str]]:
    """The days whose content to verify this scan, as (again, next in the round): first days found different
    by content before (once their repair is done), then the next days of the round over history. Days being
    loaded, days the cheap tier found different (reloaded anyway) and days empty on both sides are skipped."""
    drifted = cheap.drifted
    eligible = [d for d in cheap.days if d not in busy and d not in drifted and cheap.has_rows(d)]
    again = [d for d in eligible if d in state.content_drifted][:per_scan]
    start = state.next_content_day or (eligible[0] if eligible else "")
    ordered = [d for d in eligible if d >= start] + [d for d in eligible if d < start]
    in_round = [d for d in ordered if d not in again][: per_scan - len(again)]
    return again, in_round


def next_content_day(in_round: list[str], state: ScanState) -> str | None:
    """Where the next scan's round goes on: the day after the last one this scan verified in the round."""
    if not in_round:
        return state.next_content_day
    return (date.fromisoformat(in_round[-1]) + timedelta(days=1)).isoformat()


def days_in_flight(instance: dg.DagsterInstance, asset_keys: Iterable[dg.AssetKey]) -> set[str]:
    """Every day that a queued or running run of these assets targets (the scan never asks for it again)."""
    keys = set(asset_keys)
    days: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        if run.asset_selection is not None and not keys & set(run.asset_selection):
            continue
        tags = run.tags
        if PARTITION_TAG in tags:
            days.add(tags[PARTITION_TAG])
        elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            days.update(_days_between(tags[RANGE_START_TAG], tags[RANGE_END_TAG]))
    return days


def _days_between(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


@dataclass(frozen=True)
class RepairPlan:
    ranges: list[tuple[str, str]]  # each one run, [first, last]
    waiting: list[str] = field(default_factory=list)  # drifted days left for the next scan

    @property
    def days(self) -> list[str]:
        return [d for first, last in self.ranges for d in _days_between(first, last)]


def plan_ranges(
    days: Iterable[str],
    max_gap_days: int,
    max_days_per_run: int,
    max_runs: int,
    avoid: Iterable[str] = (),
) -> RepairPlan:
    """Batch drifted days into range runs, oldest first.

    Days at most `max_gap_days` apart share a run (reloading a few equal days costs less than a run's
    start), unless a day to `avoid` (being loaded, or given up on) lies between; a run spans at most
    `max_days_per_run` days, and one scan asks for at most `max_runs` runs; the days beyond wait for the
    next scan."""
    drifted = sorted({date.fromisoformat(d) for d in days})
    avoided = sorted(date.fromisoformat(d) for d in avoid)
    ranges: list[list[date]] = []
    for day in drifted:
        if (
            ranges
            and (day - ranges[-1][1]).days - 1 <= max_gap_days
            and (day - ranges[-1][0]).days < max_days_per_run
            and not any(ranges[-1][1] < a < day for a in avoided)
        ):
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    chosen = ranges[:max_runs]
    waiting = [d.isoformat() for d in drifted if not any(first <= d <= last for first, last in chosen)]
    return RepairPlan([(first.isoformat(), last.isoformat()) for first, last in chosen], waiting)
