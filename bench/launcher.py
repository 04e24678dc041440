"""Starts each measured process from a small process, so that its peak RSS is its own.

Linux carries a process's RSS high-water mark across fork() and exec(): a contender forked from the
benchmark's runner (hundreds of MB once it has imported the pipeline) would report at least the
runner's peak. This launcher is started before the runner imports anything heavy; it reads one JSON
request a line on stdin, runs it, and answers with the wall time and wait4()'s ru_maxrss.
"""

import json
import os
import subprocess
import sys
import threading
import time


def run(request: dict) -> dict:
    with open(request["log_path"], "ab") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            request["command"], stdout=subprocess.PIPE, stderr=stderr, env=request["env"], cwd=request["cwd"]
        )
        output: list[bytes] = []
        reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
        reader.start()
        deadline = started + request["timeout"]
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        reader.join(timeout=10)
    stdout = output[0] if output else b""
    return {
        "elapsed": elapsed,
        "maxrss_kb": usage.ru_maxrss,
        "returncode": os.waitstatus_to_exitcode(status),
        "stdout": stdout.decode(errors="replace"),
    }


def main() -> None:
    for line in sys.stdin:
        sys.stdout.write(json.dumps(run(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
