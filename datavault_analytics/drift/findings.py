"""What a drift scan run publishes for its sensor: the repairs to launch and the sensor's next state, as the
metadata of an observation of the source asset."""

from dataclasses import dataclass, field

import dagster as dg
from pydantic import BaseModel

from datavault_analytics.drift.plan import ScanState
from datavault_analytics.names import (
    DRIFT_TRIGGER,
    DRIFTED_DAYS_TAG,
    FINDINGS_KEY,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TRIGGER_TAG,
)
from datavault_analytics.table.pipeline import TablePipeline


class RepairRange(BaseModel):
    first: str
    last: str
    drifted_days: int  # how many of its days differ (the others are equal days reloaded in passing)


class ScanFindings(BaseModel):
    """What a scan run publishes for the sensor: the repairs to launch and the state for the next scan."""

    state: ScanState
    repairs: list[RepairRange]
    summary: str


@dataclass
class ScanOutcome:
    findings: ScanFindings
    evaluations: list[dg.AssetCheckEvaluation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # days given up on, for the run's log
    job_name: str | None = None

    @property
    def cursor(self) -> str:
        return self.findings.state.model_dump_json()

    @property
    def run_requests(self) -> list[dg.RunRequest]:
        return repair_requests(self.findings, self.job_name)


def repair_requests(findings: ScanFindings, job_name: str | None = None) -> list[dg.RunRequest]:
    scan = findings.state.scans
    return [
        dg.RunRequest(
            job_name=job_name,
            run_key=f"drift-{scan}-{r.first}-{r.last}",
            tags={
                RANGE_START_TAG: r.first,
                RANGE_END_TAG: r.last,
                TRIGGER_TAG: DRIFT_TRIGGER,
                DRIFTED_DAYS_TAG: str(r.drifted_days),
            },
        )
        for r in findings.repairs
    ]


def published_findings(
    instance: dg.DagsterInstance, pipeline: TablePipeline, run_id: str
) -> ScanFindings | None:
    """The findings a finished scan run published (None: it published none, e.g. the budget was spent)."""
    records = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=pipeline.source_key), limit=50)
    for record in records.records:
        if record.run_id == run_id and record.asset_observation is not None:
            value = record.asset_observation.metadata.get(FINDINGS_KEY)
            if value is not None:
                return ScanFindings.model_validate(value.value)
    return None
