"""The nemesis: from one seed, a schedule of faults, often several at once, each healed after a while.

`schedule(seed, seconds)` is a pure function of its arguments: the same seed replays the same faults at
the same offsets. Which run worker or engineer's process a kill hits is picked at that moment, by a
random number drawn from the same seed, among the processes alive then.
"""

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from datavault_analytics.run_launcher import run_worker
from soak.system import System


@dataclass(frozen=True)
class FaultKind:
    name: str
    target: str  # faults on one target never overlap
    seconds: tuple[float, float]  # how long until the heal


KINDS = [
    FaultKind("kill run worker", "run worker", (0, 0)),
    FaultKind("pause run worker", "run worker", (2, 12)),
    FaultKind("kill daemon", "daemon", (1, 8)),
    FaultKind("pause daemon", "daemon", (2, 12)),
    FaultKind("kill code server", "code server", (1, 8)),
    FaultKind("pause code server", "code server", (2, 12)),
    FaultKind("kill engineer's process", "engineer", (0, 0)),
    FaultKind("pause engineer's process", "engineer", (2, 12)),
    FaultKind("restart PostgreSQL", "postgres", (1, 8)),
    FaultKind("terminate pipeline sessions", "postgres", (0, 0)),
    FaultKind("restart S3 (stage lost)", "moto", (1, 6)),
    FaultKind("restart Snowflake", "snowflake", (1, 8)),
    FaultKind("S3 reset mid-body", "s3 network", (2, 10)),
    FaultKind("S3 HTTP 503", "s3 network", (2, 10)),
    FaultKind("S3 blackhole", "s3 network", (2, 10)),
    FaultKind("S3 latency", "s3 network", (3, 15)),
    FaultKind("Snowflake reset mid-body", "snowflake network", (2, 10)),
    FaultKind("Snowflake HTTP 503", "snowflake network", (2, 10)),
    FaultKind("Snowflake blackhole", "snowflake network", (2, 10)),
    FaultKind("Snowflake latency", "snowflake network", (3, 15)),
    FaultKind("disk full (TMPDIR)", "disk", (3, 15)),
    FaultKind("alert receiver down", "alerts", (10, 60)),
    FaultKind("lock sessions lost", "lock network", (3, 20)),
    FaultKind("schema migration", "schema", (0, 0)),
]
BY_NAME = {k.name: k for k in KINDS}
MIGRATION_EVERY_SECONDS = 20.0  # at most this long between two migrations (schedule)
NETWORK_FAULTS = {  # kind -> (which proxy, its mode)
    f"{side} {name}": (side.lower(), mode)
    for side in ("S3", "Snowflake")
    for name, mode in (
        ("reset mid-body", "reset"),
        ("HTTP 503", "http503"),
        ("blackhole", "blackhole"),
        ("latency", "latency"),
    )
}


@dataclass(frozen=True)
class PlannedFault:
    at: float  # seconds after the nemesis starts
    kind: str
    heal_after: float
    pick: float  # chooses among the processes alive at that moment, for kills and pauses


def schedule(seed: int, seconds: float, warmup: float = 20.0) -> list[PlannedFault]:
    """Faults every 2-8 s, one to three at a time, none overlapping another on the same target; and a schema
    migration at least every MIGRATION_EVERY_SECONDS, as DataVault's application deploys them, so that every
    soak sees columns added, widened and dropped while runs go on."""
    rng = random.Random(f"nemesis-{seed}")
    busy_until: dict[str, float] = {}
    plan, at, migrated_at = [], warmup, warmup
    while True:
        at += rng.uniform(2, 8)
        if at >= seconds:
            return plan
        kinds = rng.sample(KINDS, rng.choice((1, 1, 2, 2, 3)))
        if at - migrated_at >= MIGRATION_EVERY_SECONDS and BY_NAME["schema migration"] not in kinds:
            kinds.append(BY_NAME["schema migration"])
        for kind in kinds:
            heal_after, pick = round(rng.uniform(*kind.seconds), 2), rng.random()
            if busy_until.get(kind.target, -1) >= at:
                continue
            busy_until[kind.target] = at + heal_after + 1
            plan.append(PlannedFault(round(at, 2), kind.name, heal_after, pick))
            migrated_at = at if kind.target == "schema" else migrated_at


@dataclass
class Nemesis:
    system: System
    instance: dg.DagsterInstance
    engineer_processes: Callable[[], list]  # the engineer's running CLI processes
    log: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    _heals: list[tuple[float, str, Callable[[], None]]] = field(default_factory=list)
    _migrations: int = 0  # the next step of System.migrate_source's cycle
    _started: float = 0.0

    def say(self, message: str) -> None:
        line = f"[{time.monotonic() - self._started:7.1f}s] {message}"
        self.log.append(line)
        print(line, flush=True)

    def run(self, plan: list[PlannedFault], stop_at: float) -> None:
        """Carry out the plan until `stop_at` (monotonic), healing each fault when its time comes."""
        self._started = time.monotonic()
        pending = list(plan)
        while time.monotonic() < stop_at:
            now = time.monotonic() - self._started
            while pending and pending[0].at <= now:
                fault = pending.pop(0)
                try:
                    self._inject(fault)
                except Exception as error:  # a fault that cannot be applied now is logged, never fatal
                    self.say(f"inject {fault.kind}: could not ({type(error).__name__}: {str(error)[:200]})")
            self._heal_due(now)
            time.sleep(0.2)

    def final_heal(self) -> None:
        for _, what, heal in sorted(self._heals, key=lambda h: h[0]):
            self._safely(f"heal {what}", heal)
        self._heals.clear()
        self._safely("final heal: every process running", self._everything_up)

    def _everything_up(self) -> None:
        system = self.system
        system.s3_proxy.heal()
        system.snowflake_proxy.heal()
        system.alerts.bring_up()
        system.lock_proxy.heal()
        system.free_tmp()
        system.start_source()
        system.start_snowflake()
        system.restart_process(system.daemon)
        system.restart_code_server()
        for pid in self._worker_pids() + [p.pid for p in self.engineer_processes()]:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _heal_due(self, now: float) -> None:
        due = [h for h in self._heals if h[0] <= now]
        self._heals = [h for h in self._heals if h[0] > now]
        for _, what, heal in due:
            self._safely(f"heal {what}", heal)

    def _safely(self, what: str, action: Callable[[], object]) -> object:
        try:
            result = action()
            self.say(what + (f": {result}" if result not in (None, True) else ""))
            return result
        except Exception as error:  # a fault that cannot be applied now is logged, never fatal
            self.say(f"{what}: could not ({type(error).__name__}: {str(error)[:200]})")
            return None

    def _later(self, fault: PlannedFault, what: str, heal: Callable[[], None]) -> None:
        self._heals.append((time.monotonic() - self._started + fault.heal_after, what, heal))

    def _inject(self, fault: PlannedFault) -> None:
        system, kind = self.system, fault.kind
        if kind in NETWORK_FAULTS:
            side, mode = NETWORK_FAULTS[kind]
            proxy = system.s3_proxy if side == "s3" else system.snowflake_proxy
            proxy.inject(mode, latency_seconds=0.2 + fault.pick)
            self._record(fault, f"for {fault.heal_after:g} s")
            self._later(fault, kind, proxy.heal)
        elif kind in ("kill daemon", "pause daemon", "kill code server", "pause code server"):
            process = system.daemon if "daemon" in kind else system.code_server
            number = signal.SIGKILL if kind.startswith("kill") else signal.SIGSTOP
            if process.signal(number):
                self._record(fault, f"pid {process.pid}, healed in {fault.heal_after:g} s")
                restart = (
                    system.restart_code_server
                    if "code server" in kind
                    else (lambda: system.restart_process(system.daemon))
                )
                self._later(fault, kind, restart)
        elif kind in ("kill run worker", "pause run worker"):
            pids = self._worker_pids()
            if pids:
                self._signal_one(fault, pids)
        elif kind in ("kill engineer's process", "pause engineer's process"):
            pids = [p.pid for p in self.engineer_processes()] + self._dg_launch_pids()
            if pids:
                self._signal_one(fault, sorted(set(pids)))
        elif kind == "restart PostgreSQL":
            system.crash_source()
            self._record(fault, f"down for {fault.heal_after:g} s")
            self._later(fault, kind, system.start_source)
        elif kind == "terminate pipeline sessions":
            self._safely(f"inject {kind}", lambda: f"{system.terminate_pipeline_sessions()} session(s)")
            self.injected.append(kind)
        elif kind == "restart S3 (stage lost)":
            system.moto.stop()
            self._record(fault, f"down for {fault.heal_after:g} s")
            self._later(fault, kind, system.restart_moto)
        elif kind == "restart Snowflake":
            system.kill_snowflake()
            self._record(fault, f"down for {fault.heal_after:g} s")
            self._later(fault, kind, system.start_snowflake)
        elif kind == "schema migration":
            try:
                done = system.migrate_source(self._migrations)
            except Exception as error:  # e.g. its lock not had within 5 s: the same step is tried next time
                self.say(f"inject {kind}: could not ({type(error).__name__}: {str(error)[:160]})")
                return
            self._migrations += 1
            self._record(fault, done)
        elif kind == "lock sessions lost":
            # PostgreSQL sees the day locks' sessions end and frees their locks; their runs hear nothing.
            system.lock_proxy.inject("lost")
            self._record(fault, f"for {fault.heal_after:g} s")
            self._later(fault, kind, system.lock_proxy.heal)
        elif kind == "alert receiver down":
            system.alerts.take_down()
            self._record(fault, f"HTTP 503 for {fault.heal_after:g} s")
            self._later(fault, kind, system.alerts.bring_up)
        elif kind == "disk full (TMPDIR)":
            if system.tmpfs_mounted:
                system.fill_tmp()
                self._record(fault, f"for {fault.heal_after:g} s")
                self._later(fault, kind, system.free_tmp)

    def _record(self, fault: PlannedFault, detail: str) -> None:
        self.injected.append(fault.kind)
        self.say(f"inject {fault.kind} ({detail})")

    def _signal_one(self, fault: PlannedFault, pids: list[int]) -> None:
        pid = pids[int(fault.pick * len(pids)) % len(pids)]
        number = signal.SIGKILL if fault.kind.startswith("kill") else signal.SIGSTOP
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            return
        self._record(
            fault, f"pid {pid}" + ("" if number == signal.SIGKILL else f", resumed in {fault.heal_after:g} s")
        )
        if number == signal.SIGSTOP:
            self._later(fault, f"{fault.kind} pid {pid}", lambda: os.kill(pid, signal.SIGCONT))

    def _worker_pids(self) -> list[int]:
        """The pids of the runs Dagster has as STARTED: their workers (a `dg launch` process included)."""
        try:
            runs = self.instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        except Exception:
            return []
        pids = []
        for run in runs:
            worker = run_worker(self.instance, run.run_id)
            if worker is not None and worker.is_alive():
                pids.append(worker.pid)
        return sorted(pids)

    def _dg_launch_pids(self) -> list[int]:
        """The engineer's `dg launch` processes (started by `datavault-analytics backfill`) of this soak."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            launches = any(w.endswith(b"/dg") for w in words[:2]) and b"launch" in words[1:3]
            if launches and cwd.startswith(str(self.system.root)):
                found.append(int(entry.name))
        return found
