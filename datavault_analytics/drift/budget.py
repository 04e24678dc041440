"""The drift budget: seconds of DataVault's database that the scans of every table may take per hour
(DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR). Each scan run tags the seconds it took when it ends."""

import time
from datetime import UTC, datetime

import dagster as dg

from datavault_analytics.names import SCAN_SECONDS_TAG, SCAN_TRIGGER, TRIGGER_TAG


def budget_spent(instance: dg.DagsterInstance, now: float | None = None) -> float:
    """Seconds the scan runs of every table took in the past hour (each run tags its own when it ends)."""
    since = datetime.fromtimestamp((now or time.time()) - 3600, tz=UTC)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: SCAN_TRIGGER}, created_after=since))
    return sum(float(r.tags.get(SCAN_SECONDS_TAG, 0) or 0) for r in runs)


def budget_left(instance: dg.DagsterInstance, budget: float) -> tuple[bool, str]:
    """Whether a scan may start now, and if not, why."""
    spent = budget_spent(instance)
    if spent < budget:
        return True, ""
    return False, (
        f"The drift budget is spent: the scans of every table took {spent:,.1f} s of DataVault's database in "
        f"the past hour, of {budget:,.1f} s (DATAVAULT_DRIFT_BUDGET_SECONDS_PER_HOUR); the scan waits."
    )
