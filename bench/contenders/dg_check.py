"""Contender: `dg check defs` on a copy of this project whose defs folder holds N generated tables.

    python -m bench.contenders.dg_check --tables 50

Prints one JSON line: the wall seconds of `dg check defs`, as a developer or CI runs it from the project root.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.contenders.generated_tables import project_with_tables

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        project = project_with_tables(Path(root), args.tables)
        started = time.perf_counter()
        checked = subprocess.run(
            [str(BIN / "dg"), "check", "defs"],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(project), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        seconds = time.perf_counter() - started
    if checked.returncode != 0:
        sys.exit(
            f"dg check defs failed with {args.tables} tables:\n{checked.stdout[-3000:]}{checked.stderr[-3000:]}"
        )
    print(json.dumps({"tables": args.tables, "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
