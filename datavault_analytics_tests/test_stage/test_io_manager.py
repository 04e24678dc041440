"""The stage step's fast path (ADBC stream -> ParquetDayWriter) against a simple reference reader.

The reference is as plain as it gets: psycopg fetches the day's rows and pyarrow builds a table from
them with the types of type_mapping.py. Whatever the fast path does for speed (batch sizes, read-ahead,
row groups, per-column compression and dictionaries, multipart uploads), the Parquet it stages must hold
exactly that table, to the file:// stage and to S3 alike. No timings are asserted here: `make bench`
measures speed.
"""

import io
import os
import uuid
from datetime import UTC, date, datetime, timedelta

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster_aws.s3 import S3Resource

from datavault_analytics.local_stack.seed import seed_records
from datavault_analytics.postgres.extract import SourceDay
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.stage.io_manager import S3StageIOManager
from datavault_analytics.stage.resource import S3Stage, StagedPartition
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics_tests.pipeline_harness import create_source_database
from datavault_analytics_tests.records import RECORDS_SPEC

CREDENTIALS = {
    "aws_access_key_id": "fast-path",
    "aws_secret_access_key": "fast-path",
    "region_name": "us-east-1",
}
MICROSECOND = timedelta(microseconds=1)


AWKWARD_DAY, EMPTY_DAY, LARGE_DAY, SMALL_DAY, BATCHY_DAY = (
    "2025-03-10",
    "2025-03-20",
    "2025-03-12",
    "2025-03-14",
    "2025-03-16",
)
AWKWARD_START = datetime(2025, 3, 10, tzinfo=UTC)
AWKWARD_END = AWKWARD_START + timedelta(days=1)


@pytest.fixture(scope="module")
def dsn(pg_server) -> str:
    """This module's own database: DataVault's table plus a new nullable column, and every test's days."""
    dsn = create_source_database(pg_server, f"fast_path_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE records ADD COLUMN note text")  # a new nullable column flows through too
    start, end = AWKWARD_START, AWKWARD_END
    insert(
        dsn,
        [
            {"created_at": start, "ciphertext": b"", "nonce": b"", "key": "", "note": ""},  # 00:00:00.000000
            {
                "created_at": end - MICROSECOND,
                "ciphertext": os.urandom(1 << 20),
                "note": "last µs ✓",
            },  # 23:59:59.999999
            {
                "created_at": start + timedelta(hours=6),
                "ciphertext": os.urandom(1 << 20),
                "updated_at": start + timedelta(hours=7),
            },
            {
                "created_at": start + timedelta(hours=12),
                "ciphertext": b"\x00\xff\x80invalid\xc3\x28\x00",
                "note": "nul\x01bytes",
            },
            {
                "created_at": start + timedelta(hours=13),
                "owner_id": -(2**63),
                "updated_at": end + timedelta(days=400),
            },
            # Just outside the day, on both sides: never staged.
            {"created_at": start - MICROSECOND, "note": "the day before"},
            {"created_at": end, "note": "the day after"},
            # The empty day's neighbours, one microsecond away on each side.
            {"created_at": datetime(2025, 3, 19, 23, 59, 59, 999999, tzinfo=UTC)},
            {"created_at": datetime(2025, 3, 21, tzinfo=UTC)},
        ],
    )
    seed_records(dsn, [date(2025, 3, 10)], rows_per_day=2_000, seed=10)
    seed_records(dsn, [date(2025, 3, 12)], rows_per_day=8_000, seed=12)  # ~3.5 MB of row data
    seed_records(dsn, [date(2025, 3, 14)], rows_per_day=300, seed=14)
    seed_records(dsn, [date(2025, 3, 16)], rows_per_day=3_000, seed=16)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE records")  # as autovacuum would: the stage sizes files from the row estimate
    return dsn


@pytest.fixture(scope="module")
def bucket(s3_endpoint) -> str:
    name = f"fast-path-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def stage(request, tmp_path, s3_endpoint, bucket):
    """A function that builds the stage IO manager, to a local folder or to the S3 emulator."""
    if request.param == "file":
        uri = f"file://{tmp_path}/stage"
    else:
        uri = f"s3://{bucket}/{uuid.uuid4().hex[:8]}"

    def build(**settings) -> S3StageIOManager:
        s3 = S3Resource(
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )
        return S3StageIOManager(
            stage=S3Stage(s3=s3, stage_uri=uri), locks=PartitionLocks(dsn="unused"), **settings
        ).for_table(RECORDS_SPEC)

    return build


def insert(dsn: str, rows: list[dict]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for row in rows:
            values = {
                "id": uuid.uuid4(),
                "owner_id": 42,
                "key": "k",
                "ciphertext": b"c",
                "nonce": b"n" * 12,
                "updated_at": None,
                "note": None,
                **row,
            }
            conn.execute(
                "INSERT INTO records (id, owner_id, key, ciphertext, nonce, created_at, updated_at, note) "
                "VALUES (%(id)s, %(owner_id)s, %(key)s, %(ciphertext)s, %(nonce)s, %(created_at)s, "
                "%(updated_at)s, "
                "%(note)s)",
                values,
            )


def reference_table(dsn: str, day: str) -> pa.Table:
    """The day's rows by the simplest route: psycopg rows -> pyarrow, with the type mapping's types."""
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn)
    columns = postgres.source_columns()
    schema = postgres.arrow_schema(columns)
    window = DayWindow.for_key(day)
    select_list = ", ".join(c.select_sql for c in columns)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT {select_list} FROM records WHERE created_at >= %s AND created_at < %s",  # noqa: S608
            (window.start, window.end),
        ).fetchall()
    table = pa.table(
        {f.name: pa.array([row[i] for row in rows], type=f.type) for i, f in enumerate(schema)}, schema=schema
    )
    return table.sort_by("id")


def stage_day(io_manager: S3StageIOManager, dsn: str, day: str) -> tuple[StagedPartition, list[pa.Table]]:
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn)
    storage = io_manager.stage.storage()
    manifest = io_manager.stage_day(
        storage, SourceDay(postgres, postgres.source_columns(), DayWindow.for_key(day))
    )
    files = [pq.read_table(io.BytesIO(storage.read_bytes(f.name))) for f in manifest.files]
    return manifest, files


def staged_table(files: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(files).sort_by("id") if files else schema.empty_table()


def assert_identical(staged: pa.Table, reference: pa.Table) -> None:
    assert staged.schema.remove_metadata() == reference.schema.remove_metadata()
    assert staged.num_rows == reference.num_rows
    for name in reference.column_names:
        assert staged.column(name).to_pylist() == reference.column(name).to_pylist(), name


def test_awkward_rows_stage_exactly_as_the_reference_reads_them(dsn, stage):
    day, start, end = AWKWARD_DAY, AWKWARD_START, AWKWARD_END

    manifest, files = stage_day(stage(), dsn, day)
    reference = reference_table(dsn, day)
    staged = staged_table(files, reference.schema)

    assert_identical(staged, reference)
    assert manifest.rows == reference.num_rows == 2_005
    assert sum(t.num_rows for t in files) == manifest.rows
    created = staged.column("created_at").to_pylist()
    assert min(created) == start and max(created) == end - MICROSECOND
    assert {"the day before", "the day after"}.isdisjoint(staged.column("note").to_pylist())
    assert staged.column("note").null_count > 0 and staged.column("updated_at").null_count > 0
    assert sorted(len(c) for c in staged.column("ciphertext").to_pylist())[-2:] == [1 << 20, 1 << 20]
    assert b"" in staged.column("ciphertext").to_pylist()


def test_a_day_with_no_rows_stages_no_file_and_an_empty_manifest(dsn, stage):
    day = EMPTY_DAY

    manifest, files = stage_day(stage(), dsn, day)
    reference = reference_table(dsn, day)

    assert manifest.rows == 0 and manifest.files == [] and files == []
    assert reference.num_rows == 0
    assert_identical(staged_table(files, reference.schema), reference)


def test_a_large_day_rotates_into_several_files_by_size_with_the_same_content(dsn, stage):
    day = LARGE_DAY
    io_manager = stage(target_file_size_mb=1, row_group_rows=500)

    manifest, files = stage_day(io_manager, dsn, day)
    reference = reference_table(dsn, day)

    assert len(manifest.files) >= 3
    assert [f.name for f in manifest.files] == [
        f"records/dt={day}/part-{n:05d}-{manifest.staging_id}.parquet" for n in range(len(manifest.files))
    ]
    # Files are cut evenly at row group boundaries, between 2/3 and 1.6 targets (plus one row group); the
    # last may be smaller only if PostgreSQL's row estimate was far too high.
    one_row_group = max(
        pq.ParquetFile(io.BytesIO(io_manager.stage.storage().read_bytes(f.name)))
        .metadata.row_group(0)
        .total_byte_size
        for f in manifest.files
    )
    assert all(f.bytes <= 1.6 * 1024 * 1024 + one_row_group for f in manifest.files)
    assert all(f.bytes >= 1024 * 1024 / 1.5 for f in manifest.files)
    assert [t.num_rows for t in files] == [f.rows for f in manifest.files]
    assert_identical(staged_table(files, reference.schema), reference)

    # Staged again with the default settings, the day becomes one file; the extra parts are removed.
    manifest_again, files_again = stage_day(stage(), dsn, day)
    # Each staging's files carry its own id, so a load that pinned the older manifest cannot load a mix.
    one_file = f"records/dt={day}/part-00000-{manifest_again.staging_id}.parquet"
    assert manifest_again.staging_id != manifest.staging_id and [f.name for f in manifest_again.files] == [
        one_file
    ]
    assert sorted(io_manager.stage.storage().sizes(f"records/dt={day}/")) == sorted(
        [one_file, f"records/dt={day}/_manifest.json"]
    )
    assert_identical(staged_table(files_again, reference.schema), reference)


def test_a_small_day_makes_exactly_one_file(dsn, stage):
    day = SMALL_DAY

    manifest, files = stage_day(stage(), dsn, day)
    reference = reference_table(dsn, day)

    assert [f.name for f in manifest.files] == [f"records/dt={day}/part-00000-{manifest.staging_id}.parquet"]
    assert_identical(staged_table(files, reference.schema), reference)


def test_many_read_ahead_batches_and_row_groups_keep_the_content(dsn, stage):
    """Tiny ADBC batches and row groups: the reader runs far ahead, groups span batches and split them."""
    day = BATCHY_DAY
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=dsn, batch_size_hint_bytes=64 * 1024)
    io_manager = stage(row_group_rows=777, row_group_mb=1)
    storage = io_manager.stage.storage()

    manifest = io_manager.stage_day(
        storage, SourceDay(postgres, postgres.source_columns(), DayWindow.for_key(day))
    )
    [staged_file] = manifest.files
    parquet = pq.ParquetFile(io.BytesIO(storage.read_bytes(staged_file.name)))
    reference = reference_table(dsn, day)

    assert parquet.metadata.num_row_groups >= 3
    assert max(parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)) <= 777
    assert_identical(parquet.read().sort_by("id"), reference)
    # The random binary payload is stored uncompressed (zstd cannot shrink it); every other column is zstd.
    row_group = parquet.metadata.row_group(0)
    compression = {
        row_group.column(i).path_in_schema: row_group.column(i).compression
        for i in range(row_group.num_columns)
    }
    assert {name for name, codec in compression.items() if codec == "UNCOMPRESSED"} == {"ciphertext", "nonce"}
    assert {codec for name, codec in compression.items() if name not in ("ciphertext", "nonce")} == {"ZSTD"}
