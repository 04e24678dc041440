"""The server parts on their own: what the shared fixtures and the stack rely on."""

import io
import socket
import uuid
from pathlib import Path

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datavault_analytics.local_stack.errors import LocalStackError, PortInUseError
from datavault_analytics.local_stack.postgres_server import DEBIAN_BIN_DIR, PostgresServer
from datavault_analytics.local_stack.processes import free_port, wait_until
from datavault_analytics.local_stack.s3_server import LOCAL_S3_CREDENTIALS, S3Server
from datavault_analytics.local_stack.seed import RECORDS_SQL


def test_pg_server_applies_records_ddl_idempotently(pg_server: PostgresServer) -> None:
    pg_server.create_database("servers_ddl")
    pg_server.create_database("servers_ddl")  # a second time is a no-op
    pg_server.execute_sql_file("servers_ddl", RECORDS_SQL)
    pg_server.execute_sql_file("servers_ddl", RECORDS_SQL)

    with psycopg.connect(pg_server.dsn("servers_ddl")) as conn:
        columns = conn.execute(
            "select column_name, data_type, is_nullable from information_schema.columns where table_schema "
            "= 'public' and table_name = 'records' order by ordinal_position"
        ).fetchall()
        indexes = [
            row[0] for row in conn.execute("select indexname from pg_indexes where tablename = 'records'")
        ]
    assert columns == [
        ("id", "uuid", "NO"),
        ("owner_id", "bigint", "NO"),
        ("key", "text", "NO"),
        ("ciphertext", "bytea", "NO"),
        ("nonce", "bytea", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
        ("updated_at", "timestamp with time zone", "YES"),
    ]
    assert sorted(indexes) == ["records_created_at_updated_at_idx", "records_pkey"]
    assert pg_server.dsn("x") == f"postgresql://postgres@127.0.0.1:{pg_server.port}/x"
    assert pg_server.is_running()


def test_postgres_from_the_pgserver_wheel_binaries_listens_on_tcp(tmp_path: Path) -> None:
    """The fallback where Debian's binaries are missing: the wheel's PostgreSQL 16, same interface."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations
    bundled_bin = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    assert bundled_bin != DEBIAN_BIN_DIR

    server = PostgresServer(tmp_path / "data", free_port(), bin_dir=bundled_bin, durable=False)
    with server:
        assert server.is_running()
        server.create_database("fallback")
        with psycopg.connect(server.dsn("fallback")) as conn:
            assert conn.info.server_version // 10000 == 16
    assert not server.is_running()
    assert server.pid() is None


def test_postgres_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port}"):
            PostgresServer(tmp_path / "data", port).start()


def test_wait_until_names_the_part_its_address_and_log(tmp_path: Path) -> None:
    log = tmp_path / "part.log"
    log.write_text("first\nthe real reason\n")
    with pytest.raises(LocalStackError) as raised:
        wait_until(lambda: False, part="Widget", address="127.0.0.1:9", log_path=log, timeout=0.2)
    message = str(raised.value)
    assert "Widget" in message and "127.0.0.1:9" in message and str(log) in message
    assert "the real reason" in message


def test_s3_server_refuses_a_port_in_use_instead_of_hanging() -> None:
    with S3Server(port=0) as running, pytest.raises(PortInUseError):
        S3Server(port=running.port).start()


def test_snowflake_copies_parquet_from_an_s3_stage_byte_for_byte(s3_endpoint: str, snowflake_server) -> None:
    """COPY INTO from an `s3://` stage goes through the filesystem registered on fakesnow's DuckDB."""
    payloads = [b"\x00\xff\xfe", bytes(range(256)), b"plain"]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"ID": [1, 2, 3], "PAYLOAD": pa.array(payloads, pa.binary())}), buffer)
    bucket = f"servers-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **LOCAL_S3_CREDENTIALS)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="prefix/day=1/part-0.parquet", Body=buffer.getvalue())

    with snowflake_server.connect("SERVERS_TEST", "RAW") as conn:
        cursor = conn.cursor()
        cursor.execute("create or replace table payloads (id int, payload binary)")
        cursor.execute(f"create or replace stage servers_stage url='s3://{bucket}/prefix/'")
        loaded = cursor.execute(
            "copy into payloads from @servers_stage/day=1/ files=('part-0.parquet') "
            "file_format=(type=parquet binary_as_text=false) match_by_column_name=case_insensitive "
            "force=true"
        ).fetchall()
        rows = cursor.execute("select id, payload from payloads order by id").fetchall()
    assert [(row[1], row[3]) for row in loaded] == [("LOADED", 3)]
    assert [bytes(payload) for _, payload in rows] == payloads
