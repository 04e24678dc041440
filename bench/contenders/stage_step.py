"""Contender: the pipeline's own stage step, PostgreSQL -> Parquet files in a stage, for one day.

Runs exactly what the stage asset runs for a day (`S3StageIOManager.stage_day`: catalog, stream, encode,
write, manifest), outside Dagster so that only the data movement is timed. Prints one JSON line.

    python -m bench.contenders.stage_step --dsn DSN --day 2025-06-02 --stage-uri file:///tmp/stage
    python -m bench.contenders.stage_step ... --stage-uri s3://bucket/prefix --s3-endpoint http://127.0.0.1:P
    python -m bench.contenders.stage_step ... --max-burst-ms 0   # the extract as one statement, not in bursts
"""

import argparse
import json
import time

started_process = time.perf_counter()

from dagster_aws.s3 import S3Resource  # noqa: E402

from datavault_analytics.components.datavault_table import configured_table  # noqa: E402
from datavault_analytics.postgres.extract import SourceDay  # noqa: E402
from datavault_analytics.postgres.locks import PartitionLocks  # noqa: E402
from datavault_analytics.postgres.resource import PostgresResource  # noqa: E402
from datavault_analytics.stage.io_manager import S3StageIOManager  # noqa: E402
from datavault_analytics.stage.resource import S3Stage  # noqa: E402
from datavault_analytics.table.day_window import DayWindow  # noqa: E402
from datavault_analytics.table.spec import TableSpec  # noqa: E402

RECORDS_SPEC = configured_table("records").spec  # the table the bench reads and loads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--day", required=True)
    parser.add_argument("--stage-uri", required=True)
    parser.add_argument("--s3-endpoint")
    parser.add_argument(
        "--max-burst-ms", type=float, help="PostgresResource.max_burst_ms; unset: the default"
    )
    parser.add_argument(
        "--alone-burst-ms", type=float, help="PostgresResource.alone_burst_ms; unset: the default"
    )
    parser.add_argument("--table", help="schema.table to stage instead of records (bench/types.py)")
    parser.add_argument("--partition-column", default="created_at")
    parser.add_argument("--primary-key", default="id")
    args = parser.parse_args()
    imported = time.perf_counter()
    spec = RECORDS_SPEC
    if args.table:
        schema, name = args.table.split(".")
        spec = TableSpec(
            postgres_schema=schema,
            postgres_table=name,
            snowflake_table=name.upper(),
            partition_column=args.partition_column,
            primary_key=[args.primary_key],
        )

    bursts = {
        name: value
        for name, value in (("max_burst_ms", args.max_burst_ms), ("alone_burst_ms", args.alone_burst_ms))
        if value is not None
    }
    postgres = PostgresResource(table_spec=spec, dsn=args.dsn, **bursts)
    stage = S3Stage(
        s3=S3Resource(endpoint_url=args.s3_endpoint, region_name="us-east-1"), stage_uri=args.stage_uri
    )
    io_manager = S3StageIOManager(stage=stage, locks=PartitionLocks(dsn=args.dsn)).for_table(spec)
    started = time.perf_counter()
    storage = stage.storage()
    day = SourceDay(postgres, postgres.source_columns(), DayWindow.for_key(args.day))
    manifest = io_manager.stage_day(storage, day)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "import_seconds": imported - started_process,
                "rows": manifest.rows,
                "files": len(manifest.files),
                "staged_bytes": manifest.bytes,
                "file_mb": [round(f.bytes / 1e6, 1) for f in manifest.files],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
