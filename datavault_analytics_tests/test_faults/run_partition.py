"""Materialize the stage and Snowflake assets for one day, in this process: what the fault tests kill.

    python -m datavault_analytics_tests.test_faults.run_partition 2026-11-01 [--select both|stage|load]
        [--file-mb N] [--row-group-rows N] [--table records] [--checks]

The resources are `build_resources(Settings.from_environment("prod"))` from the environment the test sets, as in production; only the
staged file size may be made small, so that a day spans several files. The run is recorded in the Dagster
instance at $DAGSTER_HOME (event log, compute logs). Exit code 0 if the run succeeded, 1 if not.
"""

import argparse
import sys

import dagster as dg

from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.pipeline.assets import build_table_assets
from datavault_analytics.pipeline.checks import build_table_checks
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.stage.io_manager import S3StageIOManager

SELECTIONS = ("both", "stage", "load")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("partition")
    parser.add_argument("--select", choices=SELECTIONS, default="both")
    parser.add_argument("--table", default="records")
    parser.add_argument("--file-mb", type=int)
    parser.add_argument("--row-group-rows", type=int, default=131072)
    parser.add_argument("--checks", action="store_true", help="run the table's checks too, as the job does")
    args = parser.parse_args(argv)

    resources = build_resources(Settings.from_environment("prod"))
    if args.file_mb:
        resources["s3_stage_io_manager"] = S3StageIOManager(
            stage=resources["s3_stage"],
            locks=resources["partition_locks"],
            target_file_size_mb=args.file_mb,
            row_group_rows=args.row_group_rows,
        )
    table = configured_table(args.table)
    selection = {
        "both": [table.stage_key, table.snowflake_key],
        "stage": [table.stage_key],
        "load": [table.snowflake_key],
    }[args.select]
    result = dg.materialize(
        [*build_table_assets(table), *([build_table_checks(table)] if args.checks else [])],
        resources=resources,
        selection=dg.AssetSelection.assets(*selection),
        partition_key=args.partition,
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )
    print(f"RUN {result.run_id} {'SUCCESS' if result.success else 'FAILURE'}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
