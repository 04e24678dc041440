"""Contender: one day's content fingerprint, on one side, as the checks compute it (or as they did before).

    python -m bench.contenders.fingerprint --side postgres --dsn DSN --day 2025-06-02
    python -m bench.contenders.fingerprint --side snowflake --dsn DSN --day 2025-06-02 --snowflake-port P ...

`--before` runs the fingerprint the checks used until December 2026 (SHA-256 over id and ciphertext,
concatenated in id order with string_agg / LISTAGG), for the before-and-after figures. Prints one JSON line.
"""

import argparse
import json
import time

started_process = time.perf_counter()

from dagster_aws.s3 import S3Resource  # noqa: E402
from dagster_snowflake import SnowflakeResource  # noqa: E402

from datavault_analytics.components.datavault_table import configured_table  # noqa: E402
from datavault_analytics.postgres.resource import PostgresResource  # noqa: E402
from datavault_analytics.snowflake.loader import SnowflakeLoader  # noqa: E402
from datavault_analytics.stage.manifest import staged_columns  # noqa: E402
from datavault_analytics.stage.resource import S3Stage  # noqa: E402
from datavault_analytics.table.day_window import DayWindow  # noqa: E402

RECORDS_SPEC = configured_table("records").spec  # the table the bench reads and loads

BEFORE_POSTGRES = (
    "SELECT count(*), encode(sha256(convert_to(string_agg(encode(sha256(convert_to(id::text || ':' || "
    "encode(ciphertext, 'hex'), 'UTF8')), 'hex'), '' ORDER BY id::text COLLATE \"C\"), 'UTF8')), 'hex') "
    "FROM records WHERE created_at >= %s AND created_at < %s"
)
BEFORE_SNOWFLAKE = (
    "SELECT COUNT(*), SHA2(LISTAGG(SHA2(TO_VARCHAR(ID) || ':' || LOWER(HEX_ENCODE(CIPHERTEXT)), 256), '') "
    "WITHIN GROUP (ORDER BY TO_VARCHAR(ID)), 256) FROM RECORDS WHERE CREATED_AT >= %s AND CREATED_AT < %s"
)


def loader(args) -> SnowflakeLoader:
    snowflake = SnowflakeResource(
        account="fakesnow",
        user="bench",
        password="bench",
        database="DATAVAULT_BENCH",
        schema=args.schema,
        additional_snowflake_connection_args={
            "host": "127.0.0.1",
            "port": args.snowflake_port,
            "protocol": "http",
        },
    )
    return SnowflakeLoader(
        snowflake=snowflake, stage=S3Stage(s3=S3Resource(), stage_uri="s3://unused/prefix")
    ).for_table(RECORDS_SPEC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("postgres", "snowflake"), required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--day", required=True)
    parser.add_argument("--snowflake-port", type=int)
    parser.add_argument("--schema", default="FINGERPRINT")
    parser.add_argument("--before", action="store_true")
    args = parser.parse_args()
    imported = time.perf_counter()

    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=args.dsn)
    columns, window = postgres.source_columns(), DayWindow.for_key(args.day)
    started = time.perf_counter()  # connecting counts, on both sides, before and after: the checks do it too
    if args.side == "postgres":
        if args.before:
            with postgres.connect() as conn:
                rows, digest = conn.execute(BEFORE_POSTGRES, (window.start, window.end)).fetchone()
        else:
            fingerprint = postgres.fingerprints([window], columns)[args.day]
            rows, digest = fingerprint.rows, str(fingerprint)
    else:
        snowflake = loader(args)
        if args.before:
            with snowflake.snowflake.get_connection() as conn:
                cursor = conn.cursor()
                cursor.execute(BEFORE_SNOWFLAKE, (window.start_ntz, window.end_ntz))
                rows, digest = cursor.fetchone()
        else:
            fingerprint, _ = snowflake.fingerprints([window], staged_columns(columns))[args.day]
            rows, digest = fingerprint.rows, str(fingerprint)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"seconds": seconds, "import_seconds": imported - started_process, "rows": rows, "digest": digest}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
