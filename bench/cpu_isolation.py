"""The benchmark's PostgreSQL on a CPU of its own, as DataVault's database runs in production: on its own
machine, while the pipeline, S3 and Snowflake run elsewhere.

With `taskset`'s system call (sched_setaffinity, for every thread): the postmaster and every process it has
forked go to the first CPU, this benchmark and everything it started (the pipeline's runs, the emulators,
the Retrieve and ingest clients) to the others. Processes forked later inherit their parent's CPUs: new
backends stay on PostgreSQL's CPU, new runs on the others. `held()` reads each process's
`Cpus_allowed_list` back from /proc to show that it held.
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

    def _processes(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        postgres = _tree(self.postmaster)
        ours = {p.pid for p in postgres}
        others = [p for p in _tree(os.getpid()) if p.pid not in ours]
        return postgres, others

    def apply(self, isolated: bool) -> None:
        postgres, others = self._processes()
        for process in postgres:
            _pin(process, self.postgres if isolated else self.all)
        for process in others:
            _pin(process, self.others if isolated else self.all)

    def held(self) -> dict:
        """How many processes are where they should be, each side: read back from /proc, now."""
        postgres, others = self._processes()
        on = {p.pid: _allowed(p.pid) for p in postgres}
        off = {p.pid: _allowed(p.pid) for p in others}
        return {
            "postgres_cpus": sorted(self.postgres),
            "postgres_processes": len(on),
            "postgres_processes_on_their_cpu": sum(1 for c in on.values() if c == self.postgres),
            "other_processes": len(off),
            "other_processes_off_it": sum(1 for c in off.values() if c is not None and not c & self.postgres),
        }


@contextmanager
def postgres_on_its_own_cpu(postmaster: int) -> Iterator[Isolation]:
    isolation = Isolation(postmaster)
    isolation.apply(isolated=True)
    try:
        yield isolation
    finally:
        isolation.apply(isolated=False)
