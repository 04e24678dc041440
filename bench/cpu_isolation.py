"""The benchmark's PostgreSQL on a CPU of its own, as DataVault's database runs in production: on its own
machine, while the pipeline, S3 and Snowflake run elsewhere.

With `taskset`'s system call (sched_setaffinity, for every thread): the postmaster and every process it has
forked go to the first CPU, this benchmark and everything it started (the pipeline's runs, the emulators,
the Retrieve and ingest clients) to the others. Processes forked later inherit their parent's CPUs: new
backends stay on PostgreSQL's CPU, new runs on the others. `held()` reads each process's
`Cpus_allowed_list` back from /proc to show that it held.

DataVault's Retrieve and ingest clients (`beside_postgres`) run on PostgreSQL's CPU too, at SCHED_FIFO. On the
other CPU, the pipeline's processes delayed them: a real-time task waits while the task it preempts is in the
kernel (writing files, faulting pages), and under `perf sched` the clients waited 0.5 ms or more 851 times in
30 s of the stage step (their wakeup's p99 1.17 ms, against 0.044 ms idle), nearly all behind the stage
step's own processes. On PostgreSQL's CPU only the database's work can delay them, as on the separate
machines they have in production. What they cost that CPU, a few per cent, is the same in every phase.

The rest of the machine's threads that may move (other processes, and kernel threads that are not bound to
one CPU, such as this machine's proactive memory reclaim, `kdamond`, which runs in pieces of 1 to 4 ms) move
off PostgreSQL's CPU too, as `cset shield` does, and get their own CPUs back at the end. Side by side in one
run, idle for 30 s each, three rounds: Retrieve's p99.9 was 0.97, 0.62 and 0.77 ms with them moved, against
1.37, 1.09 and 1.44 ms without. A bench killed with SIGKILL cannot give them back; they keep off CPU 0
until they end (or `taskset -a -p <mask> <pid>`).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _pin(process: psutil.Process, cpus: set[int]) -> None:
    try:
        for thread in os.listdir(f"/proc/{process.pid}/task"):
            os.sched_setaffinity(int(thread), cpus)
    except (OSError, psutil.Error):
        pass  # it ended meanwhile


def _allowed(pid: int) -> set[int] | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            line = next(x for x in status if x.startswith("Cpus_allowed_list:"))
    except (OSError, StopIteration):
        return None
    cpus: set[int] = set()
    for part in line.split(":", 1)[1].strip().split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


class Isolation:
    def __init__(self, postmaster: int):
        self.postmaster = postmaster
        everything = sorted(os.sched_getaffinity(0))
        if len(everything) < 2:
            raise RuntimeError("PostgreSQL cannot have a CPU of its own on a machine with one CPU")
        self.all = set(everything)
        self.postgres = {everything[0]}
        self.others = self.all - self.postgres
        self.clients: set[int] = set()
        self.moved: dict[int, set[int]] = {}  # the rest of the machine's threads, with the CPUs they had

    def beside_postgres(self, pid: int) -> None:
        """Run this process (a hot-path client, started by us) on PostgreSQL's CPU from now on."""
        self.clients.add(pid)
        self.apply(isolated=True)

    def _processes(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        postgres = _tree(self.postmaster)
        for pid in list(self.clients):
            try:
                postgres += _tree(pid)
            except psutil.Error:
                self.clients.discard(pid)  # it ended
        ours = {p.pid for p in postgres}
        others = [p for p in _tree(os.getpid()) if p.pid not in ours]
        return postgres, others

    def apply(self, isolated: bool) -> None:
        postgres, others = self._processes()
        for process in postgres:
            _pin(process, self.postgres if isolated else self.all)
        for process in others:
            _pin(process, self.others if isolated else self.all)

    def shield(self) -> None:
        """Move every other thread on the machine that may move off PostgreSQL's CPU, remembering its CPUs."""
        postgres, others = self._processes()
        ours = {p.pid for p in postgres + others}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) in ours:
                continue
            try:
                threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue  # it ended
            for thread in threads:
                try:
                    cpus = os.sched_getaffinity(thread)
                    if cpus & self.postgres:
                        os.sched_setaffinity(thread, (cpus - self.postgres) or self.others)
                        self.moved[thread] = cpus
                except OSError:
                    pass  # it ended, or it is bound to its CPU (a per-CPU kernel thread)

    def unshield(self) -> None:
        for thread, cpus in self.moved.items():
            try:
                os.sched_setaffinity(thread, cpus)
            except OSError:
                pass  # it ended
        self.moved.clear()

    def held(self) -> dict:
        """How many processes are where they should be, each side: read back from /proc, now."""
        postgres, others = self._processes()
        # a process that ended between the listing and the reading (a backend closing) is not counted
        on = {p.pid: cpus for p in postgres if (cpus := _allowed(p.pid)) is not None}
        off = {p.pid: cpus for p in others if (cpus := _allowed(p.pid)) is not None}
        return {
            "postgres_cpus": sorted(self.postgres),
            "postgres_processes": len(on),
            "postgres_processes_on_their_cpu": sum(1 for c in on.values() if c == self.postgres),
            "other_processes": len(off),
            "other_processes_off_it": sum(1 for c in off.values() if not c & self.postgres),
            "machine_threads_moved": len(self.moved),
        }


@contextmanager
def postgres_on_its_own_cpu(postmaster: int) -> Iterator[Isolation]:
    isolation = Isolation(postmaster)
    isolation.apply(isolated=True)
    isolation.shield()
    try:
        yield isolation
    finally:
        isolation.unshield()
        isolation.apply(isolated=False)
