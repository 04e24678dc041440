"""A launched run followed through the Dagster instance: the days it has loaded (its `LOADED_DAYS_TAG`), the
retries and failures of its steps (their events). Nothing here reads the wording of a log line."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from datavault_analytics.names import LOADED_DAYS_TAG, RANGE_END_TAG, RANGE_START_TAG

RETRIED_OR_FAILED = {dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_FAILURE}


@dataclass
class Progress:
    """What changed since the last look."""

    loaded: dict[str, int] = field(default_factory=dict)  # day -> rows, newly loaded
    retries: list[str] = field(default_factory=list)  # the error each new retry follows
    failure: str | None = None  # the last step failure's error, if a step failed for good


@dataclass
class RunProgress:
    """The run of the range [first, last] created at or after `since` (epoch seconds), once it exists."""

    instance: dg.DagsterInstance
    first: str
    last: str
    since: float
    run_id: str | None = None
    _loaded: dict[str, int] = field(default_factory=dict)
    _events_seen: int = 0

    def poll(self) -> Progress:
        progress = Progress()
        if self.run_id is None and (run := self._find_run()) is not None:
            self.run_id = run.run_id
        if self.run_id is None:
            return progress
        run = self.instance.get_run_by_id(self.run_id)
        loaded = json.loads(run.tags.get(LOADED_DAYS_TAG, "{}")) if run else {}
        progress.loaded = {day: rows for day, rows in loaded.items() if day not in self._loaded}
        self._loaded |= progress.loaded
        events = [
            record.dagster_event
            for record in self.instance.all_logs(self.run_id, of_type=RETRIED_OR_FAILED)
            if record.dagster_event is not None
        ]
        for event in events[self._events_seen :]:
            error = _error_text(getattr(event.event_specific_data, "error", None))
            text = error or event.message or "no error recorded"
            if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
                progress.retries.append(text)
            else:
                progress.failure = text
        self._events_seen = len(events)
        return progress

    def _find_run(self) -> dg.DagsterRun | None:
        runs = self.instance.get_runs(
            filters=dg.RunsFilter(
                tags={RANGE_START_TAG: self.first, RANGE_END_TAG: self.last},
                created_after=datetime.fromtimestamp(self.since, UTC),
            ),
            limit=1,
        )
        return runs[0] if runs else None


def _error_text(error) -> str | None:
    """`Class: message` of a step's error (a SerializableErrorInfo), the error it was raised from if Dagster
    wrapped it (a retry policy's request carries the error it retries after as its cause or context)."""
    while (
        error is not None and error.cls_name == "RetryRequestedFromPolicy" and (error.cause or error.context)
    ):
        error = error.cause or error.context
    if error is None:
        return None
    message = error.message.strip()
    qualified, _, rest = message.partition(": ")
    return f"{error.cls_name}: {rest}" if qualified.endswith(error.cls_name) else message
