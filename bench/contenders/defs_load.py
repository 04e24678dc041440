"""Contender: loading the code location with N tables, in a fresh process, as a code server does.

    python -m bench.contenders.defs_load --tables 50

Writes N generated `defs.yaml` (copies of retrieval_log's, under other names) into a temporary defs package
beside the real `defs/resources.py`, then loads it the way `definitions.py` does and resolves every job (what
the code server does before it answers). Prints one JSON line: the seconds to import Dagster and this
project's modules, and the seconds to build and resolve the definitions.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

started = time.perf_counter()

import dagster as dg  # noqa: E402

import datavault_analytics.definitions  # noqa: E402, F401 - what every code server imports first
from bench.contenders.generated_tables import REAL_DEFS, write_tables  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, required=True)
    args = parser.parse_args()
    imported = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        package = Path(root) / "bench_defs"
        package.mkdir()
        (package / "__init__.py").write_text("")
        shutil.copy(REAL_DEFS / "resources.py", package / "resources.py")
        write_tables(package, args.tables)
        sys.path.insert(0, root)
        import bench_defs

        built = time.perf_counter()
        tree = dg.ComponentTree(defs_module=bench_defs, project_root=Path(root), code_location_name="bench")
        defs = dg.Definitions.merge(tree.build_defs(), dg.Definitions(executor=dg.in_process_executor))
        jobs = defs.get_repository_def().get_all_jobs()
        done = time.perf_counter()
    print(
        json.dumps(
            {
                "tables": args.tables,
                "jobs": len(jobs),
                "import_seconds": round(imported - started, 3),
                "build_seconds": round(done - built, 3),
                "total_seconds": round(done - started, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
