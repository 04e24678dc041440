"""Contender: dlt 1.31's fastest way to move a PostgreSQL table to Parquet files, for one day.

`sql_table` with the connectorx backend and `return_type="arrow_stream"`, loaded to a local filesystem
destination as Parquet; the day is selected with a query adapter (a WHERE on created_at), so dlt reads
exactly the rows the stage step reads. Prints one JSON line; the row count is read back from the files.

    python -m bench.contenders.dlt_sql_table --dsn DSN --day 2025-06-02 --out /tmp/dlt --chunk-size 50000
"""

import argparse
import json
import os
import time
from datetime import date, timedelta

started_process = time.perf_counter()
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no network here; never phone home

import dlt  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from dlt.sources.sql_database import sql_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--day", required=True)
    parser.add_argument(
        "--out", required=True, help="a folder: dlt's pipelines dir and its filesystem bucket"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=50_000, help="sql_table's chunk_size (the arrow batch)"
    )
    args = parser.parse_args()
    imported = time.perf_counter()

    start = f"{args.day}T00:00:00+00:00"
    end = (date.fromisoformat(args.day) + timedelta(days=1)).isoformat() + "T00:00:00+00:00"

    def one_day(query, table):
        return query.where(
            sa.text(f"created_at >= '{start}'::timestamptz AND created_at < '{end}'::timestamptz")
        )

    started = time.perf_counter()
    records = sql_table(
        credentials=args.dsn,
        table="records",
        schema="public",
        backend="connectorx",
        backend_kwargs={"return_type": "arrow_stream"},
        chunk_size=args.chunk_size,
        query_adapter_callback=one_day,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        pipelines_dir=os.path.join(args.out, "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url="file://" + os.path.join(args.out, "bucket")),
        dataset_name="datavault",
    )
    pipeline.run(records, loader_file_format="parquet")
    seconds = time.perf_counter() - started

    files = [
        os.path.join(folder, name)
        for folder, _, names in os.walk(os.path.join(args.out, "bucket"))
        for name in names
        if name.endswith(".parquet")
    ]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "import_seconds": imported - started_process,
                "rows": rows,
                "files": len(files),
                "staged_bytes": sum(os.path.getsize(f) for f in files),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
