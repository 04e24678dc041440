"""What deserves an alert, read from the Dagster instance's event log after a storage id: a run that failed for
good, a failed check (a drift day given up on is one), a schema change a load applied, a freshness deadline
missed. A refused schema change fails its run, and is told as that run's failure."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from datavault_analytics.alerts.webhook import Alert
from datavault_analytics.names import DOMAIN, RANGE_END_TAG, RANGE_START_TAG
from datavault_analytics.redaction import redact_known_secrets

WATCHED = (
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.FRESHNESS_STATE_CHANGE,
)
BATCH = 200  # events of each kind read per tick


def new_records(instance: dg.DagsterInstance, after: int) -> list[dg.EventLogRecord]:
    """The watched events after storage id `after`, oldest first. If a kind has more than a batch, the list
    stops at that batch's last id, so that no event of another kind is skipped past."""
    records, stop_at = [], None
    for event_type in WATCHED:
        found = instance.get_event_records(
            dg.EventRecordsFilter(event_type=event_type, after_cursor=after), ascending=True, limit=BATCH
        )
        if len(found) == BATCH:
            stop_at = min(stop_at or found[-1].storage_id, found[-1].storage_id)
        records += found
    records.sort(key=lambda r: r.storage_id)
    return [r for r in records if stop_at is None or r.storage_id <= stop_at]


def latest_storage_id(instance: dg.DagsterInstance) -> int:
    """The newest watched event's storage id, 0 if none: where a new alert sensor starts."""
    newest = [
        instance.get_event_records(dg.EventRecordsFilter(event_type=t), ascending=False, limit=1)
        for t in WATCHED
    ]
    return max((found[0].storage_id for found in newest if found), default=0)


def _table_of(key: dg.AssetKey | None) -> str | None:
    """A DataVault table's name from one of its asset keys ([system, "datavault", table]), else None."""
    return key.path[2] if key is not None and len(key.path) == 3 and key.path[1] == DOMAIN else None


def alert_for(instance: dg.DagsterInstance, record: dg.EventLogRecord) -> Alert | None:
    event = record.event_log_entry.dagster_event
    if event is None:
        return None
    data = event.event_specific_data
    if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        table = _table_of(data.asset_key)
        if data.passed or table is None:
            return None
        day = data.partition or "?"
        return Alert(
            "check failed",
            table,
            day,
            f"{data.check_name} failed for {table} on {day}: {redact_known_secrets(data.description or '')}"[
                :1500
            ],
            key=f"check failed|{table}|{day}|{data.check_name}",
            details={"check": data.check_name, "run_id": record.run_id or None},
        )
    if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
        materialization = data.materialization
        table, changes = _table_of(materialization.asset_key), materialization.metadata.get("schema_changes")
        if table is None or changes is None:
            return None
        day = materialization.partition or "?"
        return Alert(
            "schema changed",
            table,
            day,
            f"loading {table} {day} applied: {'; '.join(changes.value)}",
            key=f"schema changed|{table}|{'; '.join(changes.value)}",
            details={"changes": list(changes.value), "run_id": record.run_id},
        )
    if event.event_type == dg.DagsterEventType.FRESHNESS_STATE_CHANGE:
        table = _table_of(data.key)
        if table is None or str(getattr(data.new_state, "value", data.new_state)) != "FAIL":
            return None
        changed = datetime.fromtimestamp(data.state_change_timestamp, UTC)
        day = (changed.date() - timedelta(days=1)).isoformat()
        return Alert(
            "freshness missed",
            table,
            day,
            f"{table}: {day} was not loaded into Snowflake by its freshness deadline",
            key=f"freshness missed|{table}|{day}",
        )
    if event.event_type == dg.DagsterEventType.RUN_FAILURE:
        return _run_failure(instance, record)
    return None


def _run_failure(instance: dg.DagsterInstance, record: dg.EventLogRecord) -> Alert | None:
    run = instance.get_run_by_id(record.run_id)
    if run is None or run.tags.get("dagster/will_retry") == "true":  # not the last try yet
        return None
    planned = instance.get_records_for_run(
        record.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    keys = {*(run.asset_selection or ()), *(p.asset_key for p in planned)}
    tables = sorted({t for k in keys if (t := _table_of(k))})
    if not tables:
        return None
    first = run.tags.get(RANGE_START_TAG) or run.tags.get("dagster/partition") or "?"
    last = run.tags.get(RANGE_END_TAG) or first
    day = first if first == last else f"{first}..{last}"
    steps = instance.get_records_for_run(record.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    reasons = [
        s.event_log_entry.dagster_event.event_specific_data.error.message.strip()
        for s in steps
        if s.event_log_entry.dagster_event and s.event_log_entry.dagster_event.event_specific_data.error
    ]
    reason = redact_known_secrets(reasons[0] if reasons else (record.event_log_entry.message or ""))
    return Alert(
        "run failed",
        ", ".join(tables),
        day,
        f"{run.job_name} for {', '.join(tables)} {day} failed after its retries: {reason}"[:1500],
        key=f"run failed|{','.join(tables)}|{day}",
        details={"run_id": run.run_id, "job": run.job_name},
    )
