"""One isolated pipeline per test, on the session's real servers.

Each `Pipeline` has its own PostgreSQL database (with DataVault's DDL), S3 bucket and Snowflake schema,
and sets the same environment variables production reads. `materialize` runs the real assets with the
real resources through Dagster, in process.
"""

import time
import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime
from types import SimpleNamespace

import boto3
import dagster as dg
import psycopg

from datavault_analytics.local_stack.seed import SOURCE_DDL, seed_records, seed_retrieval_log
from datavault_analytics.pipeline.assets import build_table_assets
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.table.day_window import day_windows
from datavault_analytics.table.pipeline import TablePipeline
from datavault_analytics.verification.reconciliation import reconcile
from datavault_analytics_tests import records

ALL_ASSETS = records.ALL_ASSETS
# The columns of DataVault's records table (datavault_analytics/sql/records.sql), in catalog order.
RECORDS_COLUMNS = ["id", "owner_id", "key", "ciphertext", "nonce", "created_at", "updated_at"]
# The shared resources that read or write one table (`for_table`).
TABLE_BOUND = {
    "postgres",
    "partition_locks",
    "s3_stage",
    "snowflake_loader",
    "stage_retention",
    "s3_stage_io_manager",
}
SNOWFLAKE_PASSWORD = "sf-pass-" + uuid.uuid4().hex[:8]


def create_source_database(pg_server, name: str) -> str:
    """A new database in the test cluster holding DataVault's empty tables; returns its DSN."""
    pg_server.create_database(name)
    dsn = pg_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for ddl in SOURCE_DDL:
            conn.execute(ddl.read_text())
    return dsn


def wait_until_no_other_application_works(dsn: str) -> None:
    """Until pg_stat_activity shows no session of another application at work (postgres/bursts.py), so that a
    read in bursts takes its longer pieces; this session is named as ours, so it does not count."""
    from datavault_analytics.postgres.bursts import OthersAtWork

    with psycopg.connect(dsn, autocommit=True, application_name="datavault-analytics test") as conn:
        ends = time.monotonic() + 30
        while OthersAtWork(conn).now():
            assert time.monotonic() < ends, "another application kept working on the test's database"
            time.sleep(0.2)


class Pipeline:
    def __init__(self, pg_server, s3_endpoint: str, snowflake_server, monkeypatch):
        suffix = uuid.uuid4().hex[:10]
        self.database = f"dv_{suffix}"
        self.dsn = create_source_database(pg_server, self.database)
        self.bucket = f"stage-{suffix}"
        self.s3_endpoint = s3_endpoint
        self.s3 = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        self.s3.create_bucket(Bucket=self.bucket)
        self.stage_uri = f"s3://{self.bucket}/analytics"
        self.snowflake_server = snowflake_server
        self.sf_database, self.sf_schema = "DATAVAULT", f"T_{suffix.upper()}"
        self.env = {
            "DATAVAULT_ENV": "prod",
            "DATAVAULT_PG_DSN": self.dsn,
            "DATAVAULT_STAGE_URI": self.stage_uri,
            "DATAVAULT_S3_ENDPOINT_URL": s3_endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SNOWFLAKE_ACCOUNT": "fakesnow",
            "SNOWFLAKE_USER": "loader",
            "SNOWFLAKE_PASSWORD": SNOWFLAKE_PASSWORD,
            "SNOWFLAKE_ROLE": "LOADER",
            "SNOWFLAKE_WAREHOUSE": "WH",
            "SNOWFLAKE_DATABASE": self.sf_database,
            "SNOWFLAKE_SCHEMA": self.sf_schema,
            "SNOWFLAKE_HOST": snowflake_server.host,
            "SNOWFLAKE_PORT": str(snowflake_server.port),
            "SNOWFLAKE_PROTOCOL": "http",
        }
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        self.resources = build_resources(Settings.from_environment("prod"))
        # One instance for the pipeline's runs, as a deployment has: the stage's retention reads its loads.
        self.instance = dg.DagsterInstance.ephemeral()

    # -- running ---------------------------------------------------------------------------------

    def materialize(
        self,
        first: str,
        last: str | None = None,
        *,
        raise_on_error: bool = True,
        selection=None,
        table: TablePipeline | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Materialize the stage and Snowflake assets of `table` (default: records) for one day, or the range
        [first, last] in one run."""
        tags = {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last or first,
        }
        table = table or records.RECORDS
        return dg.materialize(
            build_table_assets(table),
            resources=self.resources,
            selection=list(selection or (table.stage_key, table.snowflake_key)),
            tags=tags,
            raise_on_error=raise_on_error,
            instance=self.instance,
        )

    def with_resources(self, **overrides) -> "Pipeline":
        self.resources = {**self.resources, **overrides}
        return self

    # -- PostgreSQL ------------------------------------------------------------------------------

    def seed(self, days: list[date], rows_per_day: int, seed: int = 7):
        return seed_records(self.dsn, days, rows_per_day, seed=seed)

    def seed_retrievals(self, days: list[date], rows_per_day: int, seed: int = 7):
        return seed_retrieval_log(self.dsn, days, rows_per_day, seed=seed)

    def pg(self, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def insert(
        self,
        id_: str,
        created_at: datetime,
        ciphertext: bytes,
        owner_id: int = 1,
        key: str = "k",
        nonce: bytes = b"\x00" * 12,
    ) -> None:
        self.pg(
            "INSERT INTO records (id, owner_id, key, ciphertext, nonce, created_at) VALUES "
            "(%s,%s,%s,%s,%s,%s)",
            (id_, owner_id, key, ciphertext, nonce, created_at),
        )

    def source_rows(
        self, day: str, columns: str = "id::text, ciphertext, nonce, owner_id, key"
    ) -> list[tuple]:
        window = day_windows([day])[0]
        return self.pg(
            f"SELECT {columns} FROM records WHERE created_at >= %s AND created_at < %s ORDER BY id::text",  # noqa: S608
            (window.start, window.end),
        )

    def first_id(self, day: str) -> str:
        """The id of the day's first row, in id order."""
        return self.source_rows(day, columns="id::text")[0][0]

    def drift(self, erased: str, bumped: str, silent: str, backdated: str) -> None:
        """The four ways DataVault changes a day after its load, one per day: a row erased; a payload
        rewritten with updated_at bumped; a nonce rewritten in place, updated_at untouched (a re-encryption
        only the content can show); a row inserted late into a past day (a replayed ingest)."""
        self.pg("DELETE FROM records WHERE id = %s", (self.first_id(erased),))
        self.pg(
            "UPDATE records SET ciphertext = ciphertext || '\\x00'::bytea, updated_at = now() WHERE id = %s",
            (self.first_id(bumped),),
        )
        self.pg(
            "UPDATE records SET nonce = '\\x0102030405060708090a0b0c'::bytea WHERE id = %s",
            (self.first_id(silent),),
        )
        moment = datetime.fromisoformat(backdated).replace(hour=5, tzinfo=UTC)
        self.insert(str(uuid.uuid4()), moment, b"\x01replayed")

    # -- Snowflake -------------------------------------------------------------------------------

    def snowflake(self, sql: str, params=None) -> list[tuple]:
        """Runs `sql` as the pipeline's Snowflake user (SHOW TRANSACTIONS shows that user's own)."""
        import snowflake.connector

        args = self.snowflake_server.connection_args(self.sf_database, self.sf_schema)
        conn = snowflake.connector.connect(**{**args, "user": self.env["SNOWFLAKE_USER"]})
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            conn.close()

    def snowflake_rows(
        self, day: str, columns: str = '"ID", "CIPHERTEXT", "NONCE", "OWNER_ID", "KEY"'
    ) -> list[tuple]:
        window = day_windows([day])[0]
        rows = self.snowflake(
            f'SELECT {columns} FROM "RECORDS" WHERE "CREATED_AT" >= %s AND "CREATED_AT" < %s ORDER BY "ID"',  # noqa: S608
            (window.start_ntz, window.end_ntz),
        )
        return [tuple(bytes(v) if isinstance(v, bytearray) else v for v in row) for row in rows]

    def reconcile(self, days: list[str], source_read=None, table: TablePipeline | None = None):
        spec = (table or records.RECORDS).spec
        with self.configured("postgres", "snowflake", "snowflake_loader") as r:
            return reconcile(
                r.postgres.for_table(spec),
                r.snowflake_loader.for_table(spec),
                day_windows(days),
                source_read=source_read,
            )

    @contextmanager
    def configured(self, *keys: str, table: TablePipeline | None = None):
        """The pipeline's resources `keys`, with their environment variables resolved, those that read or write
        a table bound to `table` (default: records) once resolved, as its assets bind them."""
        spec = (table or records.RECORDS).spec
        with dg.build_resources({k: self.resources[k] for k in keys}) as built:
            yield SimpleNamespace(
                **{
                    k: getattr(built, k).for_table(spec) if k in TABLE_BOUND else getattr(built, k)
                    for k in keys
                }
            )

    # -- S3 --------------------------------------------------------------------------------------

    def stage_keys(self, day: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"analytics/records/dt={day}/")
        return sorted(obj["Key"] for obj in listing.get("Contents", []))


def loads_per_day(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey = records.SNOWFLAKE_KEY
) -> dict[str, int]:
    """How many times each day of the Snowflake table (or the stage) was loaded: its materializations."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key), limit=10_000
    ).records
    counts: dict[str, int] = {}
    for record in records:
        counts[record.partition_key] = counts.get(record.partition_key, 0) + 1
    return counts
