"""Run monitoring on one machine: Dagster's DefaultRunLauncher, taught to see a run worker that died.

The DefaultRunLauncher cannot check a worker's health, so run monitoring never sees a worker killed by the
OOM killer or a SIGKILL: the run stays STARTED for ever, its days stay "in flight" to the drift sensor,
and its pool slots stay claimed. Every run worker records its pid in an engine event when it starts
(a launched run's worker, and a `dg launch` process alike); this launcher looks that process up.
It judges processes on its own machine, which is where the DefaultRunLauncher starts them.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from datavault_analytics.dagster_internals import CheckRunHealthResult, WorkerStatus

# A process that started later than the event naming its pid (plus this slack) is another process with a
# reused pid: the worker is gone.
START_TIME_SLACK_SECONDS = 2.0


@dataclass(frozen=True)
class RunWorker:
    pid: int
    recorded_at: float  # when the run recorded this pid (epoch seconds)

    def is_alive(self) -> bool:
        """Whether this very process still runs (a stopped process does; a zombie does not)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return False
        started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started <= self.recorded_at + START_TIME_SLACK_SECONDS


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def run_worker(instance: dg.DagsterInstance, run_id: str) -> RunWorker | None:
    """The process executing the run: the latest pid its engine events recorded, or None before any."""
    for record in reversed(instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        pid = (data.metadata or {}).get("pid") if data else None
        if pid is not None and str(pid.value).isdigit():
            return RunWorker(int(pid.value), record.timestamp)
    return None


class LocalRunLauncher(dg.DefaultRunLauncher):
    """The DefaultRunLauncher, with `check_run_worker_health`: a run whose worker process is gone is marked
    failed by Dagster's own run monitoring, which frees its pool slots and lets run retries re-run it."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run.run_id)
        if worker is None:  # started, but its worker has not said so yet
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded yet")
        if worker.is_alive():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {worker.pid} is running")
        gone_for = time.time() - worker.recorded_at
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker pid {worker.pid} (recorded {gone_for:.0f} s ago) is no longer running on this "
            "machine: it was killed or crashed",
        )
