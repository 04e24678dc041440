"""Ports, pids and waiting: the small OS helpers that every part of the local stack shares."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from datavault_analytics.local_stack.errors import LocalStackError

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (tests run every server on one of these)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def port_answers(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_is_alive(pid: int | None) -> bool:
    """Whether pid is a live process (a zombie counts as dead). Never reaps: safe on others' children."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # An exited process that nobody has reaped yet still answers kill(pid, 0).
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _reap_if_our_child(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def terminate_pid(pid: int, timeout: float = 20.0, first_signal: int = signal.SIGTERM) -> None:
    """Ask pid to stop with first_signal, wait up to timeout, then SIGKILL it."""
    if not pid_is_alive(pid):
        return
    try:
        os.kill(pid, first_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap_if_our_child(pid)  # we signalled it: if it is our child, its exit status is ours to collect
        if not pid_is_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _reap_if_our_child(pid)
        if not pid_is_alive(pid):
            return
        time.sleep(0.05)


def log_tail(log_path: Path | None, lines: int = 5) -> str:
    """The last lines of a log file, for error messages; empty when there is none."""
    if log_path is None:
        return ""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.strip().splitlines()[-lines:] if line.strip()]
    return " | ".join(tail)


def wait_until(
    is_ready: Callable[[], bool],
    *,
    part: str,
    address: str,
    log_path: Path | None,
    timeout: float = 60.0,
    process: subprocess.Popen | None = None,
) -> None:
    """Poll is_ready until it is true; fail fast if process exits, and say which part, where, and its log."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if is_ready():
            return
        if process is not None and process.poll() is not None:
            raise LocalStackError(
                f"{part} exited with code {process.returncode} before answering at {address}; "
                f"see its log {log_path}" + _tail_suffix(log_path)
            )
        if time.monotonic() >= deadline:
            raise LocalStackError(
                f"{part} did not answer at {address} within {timeout:.0f} s; see its log {log_path}"
                + _tail_suffix(log_path)
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _tail_suffix(log_path: Path | None) -> str:
    tail = log_tail(log_path)
    return f" (last lines: {tail})" if tail else ""
