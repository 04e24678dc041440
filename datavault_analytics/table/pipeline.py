"""One table's pipeline, as its component resolved it: the table, its partitions, its own settings and the
shared settings it was built with. Every builder (assets, checks, job, schedule, drift) takes one, so two
tables never share a name (names.py)."""

from dataclasses import dataclass
from functools import cached_property

import dagster as dg

from datavault_analytics.names import TableNames
from datavault_analytics.settings import Settings
from datavault_analytics.table.config import DriftConfig, FreshnessConfig, ScheduleConfig
from datavault_analytics.table.partitions import daily_partitions
from datavault_analytics.table.spec import TableSpec


@dataclass(frozen=True)
class TablePipeline(TableNames):
    spec: TableSpec
    start_date: str
    schedule: ScheduleConfig
    freshness: FreshnessConfig
    drift: DriftConfig
    description: str | None
    group: str
    owners: tuple[str, ...]
    settings: Settings  # shared by every table, read when the definitions are built

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def partitions(self) -> dg.DailyPartitionsDefinition:
        return daily_partitions(self.start_date)

    @property
    def retry_policy(self) -> dg.RetryPolicy:
        """Transient failures are retried with backoff; errors that retrying cannot fix are non-retryable."""
        return dg.RetryPolicy(
            max_retries=self.settings.max_retries,
            delay=self.settings.retry_delay_seconds,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS,
        )

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        """A range of days is one run by default (what `dg launch --partition-range` requires); a deployment
        sets DATAVAULT_BACKFILL_DAYS_PER_RUN (31 in deploy/helm/values.yaml) so a UI backfill fans out."""
        days = self.settings.backfill_days_per_run
        return dg.BackfillPolicy.multi_run(days) if days > 0 else dg.BackfillPolicy.single_run()

    @property
    def runs_by_default(self) -> bool:
        """Schedules and sensors run by default in prod; locally they are off unless DATAVAULT_AUTOMATION=on,
        one switch for every table's."""
        return self.settings.automation_on
