"""The local Snowflake's own rules (snowflake_rules.py): each one fires as Snowflake's does, on the real
server the tests and the stack share, through the real Snowflake connector."""

import io
import threading
import time
import uuid
from datetime import UTC, datetime

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import snowflake.connector
import snowflake.connector.errors

from datavault_analytics.local_stack.s3_server import LOCAL_S3_CREDENTIALS
from datavault_analytics.local_stack.snowflake_rules import MAX_STRING_BYTES
from datavault_analytics.snowflake.loader import PARQUET_FILE_FORMAT

MIDNIGHT = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def stage(s3_endpoint):
    """A bucket to put Parquet files in, and a fresh Snowflake schema with a stage over it."""
    bucket = f"rules-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **LOCAL_S3_CREDENTIALS)
    s3.create_bucket(Bucket=bucket)

    def put(name: str, table: pa.Table) -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        s3.put_object(Bucket=bucket, Key=f"p/{name}", Body=buffer.getvalue())

    put.bucket = bucket
    put.schema = f"R_{uuid.uuid4().hex[:8].upper()}"
    return put


def connect(snowflake_server, schema: str, **parameters):
    args = snowflake_server.connection_args("RULES", schema)
    args["session_parameters"] = {**args["session_parameters"], **parameters}
    return snowflake.connector.connect(**args)


def run(conn, sql: str, params=None) -> list[tuple]:
    cursor = conn.cursor()
    cursor.execute(sql, params)
    return cursor.fetchall()


def copy(conn, table: str, file_format: str, files=("part-0.parquet",)) -> list[tuple]:
    names = ", ".join(f"'{f}'" for f in files)
    return run(
        conn,
        f"COPY INTO {table} FROM @rules_stage/ FILES=({names}) FILE_FORMAT=({file_format}) "
        "MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE FORCE=TRUE",
    )


def prepare(snowflake_server, stage, ddl: str, table: pa.Table, **parameters):
    stage("part-0.parquet", table)
    conn = connect(snowflake_server, stage.schema, **parameters)
    run(conn, ddl)
    run(conn, f"CREATE STAGE IF NOT EXISTS rules_stage URL='s3://{stage.bucket}/p/'")
    return conn


def test_parquet_binary_without_binary_as_text_false_fails_as_in_snowflake(snowflake_server, stage):
    payloads = [b"\x00\xff\xfe", b"\x9f\x80invalid utf-8 \xc3"]
    with prepare(
        snowflake_server,
        stage,
        "CREATE TABLE t (id INT, payload BINARY)",
        pa.table({"id": [1, 2], "payload": pa.array(payloads, pa.binary())}),
    ) as conn:
        with pytest.raises(
            snowflake.connector.errors.ProgrammingError, match="not a legal hex-encoded value"
        ) as e:
            copy(conn, "t", "TYPE=PARQUET")
        assert e.value.errno == 100115
        assert run(conn, "SELECT COUNT(*) FROM t") == [(0,)]
        # The loader's options pass, and the bytes arrive as they were.
        [(_, status, _, loaded, *_)] = copy(conn, "t", PARQUET_FILE_FORMAT)
        assert (status, loaded) == ("LOADED", 2)
        assert [bytes(p) for (p,) in run(conn, "SELECT payload FROM t ORDER BY id")] == payloads
        # The vectorized scanner implies BINARY_AS_TEXT=FALSE.
        assert copy(conn, "t", "TYPE=PARQUET USE_VECTORIZED_SCANNER=TRUE")[0][1] == "LOADED"


def test_a_files_list_of_more_than_1000_names_fails(snowflake_server, stage):
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT)", pa.table({"id": [1]})) as conn:
        files = [f"part-{n}.parquet" for n in range(1001)]
        with pytest.raises(
            snowflake.connector.errors.ProgrammingError, match="more than the maximum of 1000"
        ) as e:
            copy(conn, "t", PARQUET_FILE_FORMAT, files)
        assert e.value.errno == 1008
        assert copy(conn, "t", PARQUET_FILE_FORMAT)[0][1] == "LOADED"  # one name is fine


def test_a_result_string_over_16_mb_fails_and_one_under_passes(snowflake_server, stage):
    with connect(snowflake_server, stage.schema) as conn:
        [(under,)] = run(conn, f"SELECT REPEAT('x', {MAX_STRING_BYTES - 1})")
        assert len(under) == MAX_STRING_BYTES - 1
        with pytest.raises(
            snowflake.connector.errors.ProgrammingError, match="is too long and would be truncated"
        ):
            run(conn, f"SELECT REPEAT('x', {MAX_STRING_BYTES + 1})")


def test_a_staged_string_over_16_mb_fails_the_copy(snowflake_server, stage):
    table = pa.table({"id": [1, 2], "note": ["short", "y" * (MAX_STRING_BYTES + 1)]})
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT, note VARCHAR)", table) as conn:
        with pytest.raises(snowflake.connector.errors.ProgrammingError, match="Max LOB size"):
            copy(conn, "t", PARQUET_FILE_FORMAT)
        assert run(conn, "SELECT COUNT(*) FROM t") == [(0,)]


def test_parquet_timestamps_land_in_the_sessions_time_zone(snowflake_server, stage):
    """UTC-adjusted Parquet timestamps are TIMESTAMP_LTZ: an NTZ column gets the session zone's wall time."""
    table = pa.table({"id": [1], "loaded_at": pa.array([MIDNIGHT], pa.timestamp("us", tz="UTC"))})
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT, loaded_at TIMESTAMP_NTZ)", table) as conn:
        copy(conn, "t", PARQUET_FILE_FORMAT)  # the account default zone, America/Los_Angeles
        [(shifted,)] = run(conn, "SELECT loaded_at FROM t")
        assert shifted == datetime(2026, 10, 31, 17, 0)
        run(conn, "DELETE FROM t")
        run(conn, "ALTER SESSION SET TIMEZONE = 'UTC'")
        copy(conn, "t", PARQUET_FILE_FORMAT)
        assert run(conn, "SELECT loaded_at FROM t") == [(datetime(2026, 11, 1, 0, 0),)]


def test_session_parameters_are_set_and_shown(snowflake_server, stage):
    with connect(snowflake_server, stage.schema, LOCK_TIMEOUT=7) as conn:
        run(conn, "ALTER SESSION SET QUERY_TAG = 'run abc day 2026-11-01' TIMEZONE = 'UTC'")
        shown = {row[0]: row[1] for row in run(conn, "SHOW PARAMETERS IN SESSION")}
        assert shown["QUERY_TAG"] == "run abc day 2026-11-01"
        assert shown["LOCK_TIMEOUT"] == "7" and shown["TIMEZONE"] == "UTC"
        run(conn, "ALTER SESSION UNSET QUERY_TAG")
        assert run(conn, "SHOW PARAMETERS LIKE 'QUERY_TAG' IN SESSION")[0][1] == ""
        assert run(conn, "SHOW PARAMETERS LIKE 'TIMEZONE'")[0][2] == "America/Los_Angeles"  # the default


def test_md5_number_upper64_matches_snowflakes_documented_example(snowflake_server, stage):
    with connect(snowflake_server, stage.schema) as conn:
        assert run(conn, "SELECT MD5_NUMBER_UPPER64('Snowflake'), MD5_NUMBER_LOWER64('Snowflake')") == [
            (17145559544104499780, 9203306159527282910)
        ]


def test_a_delete_waits_for_another_transactions_lock_then_fails_naming_it(snowflake_server, stage):
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT)", pa.table({"id": [1, 2, 3]})) as holder:
        copy(holder, "t", PARQUET_FILE_FORMAT)
        run(holder, "BEGIN TRANSACTION NAME DATAVAULT_LOAD_TEST")
        run(holder, "DELETE FROM t WHERE id = 1")
        with connect(snowflake_server, stage.schema, LOCK_TIMEOUT=1) as waiter:
            started = time.monotonic()
            with pytest.raises(
                snowflake.connector.errors.ProgrammingError, match="has locked table 'T'"
            ) as e:
                run(waiter, "DELETE FROM t WHERE id = 2")
            assert e.value.errno == 625 and 1 <= time.monotonic() - started < 10
            [(transaction_id, _, _, name, *_)] = run(waiter, "SHOW TRANSACTIONS")
            assert name == "DATAVAULT_LOAD_TEST" and f"in transaction {transaction_id} " in e.value.msg
            [(resource, _, locked_by, *_)] = run(waiter, "SHOW LOCKS")
            assert resource.endswith(".T") and locked_by == transaction_id
            # The operator's way out: abort it. Its DELETE is undone, and the waiter goes ahead.
            [(aborted,)] = run(waiter, f"SELECT SYSTEM$ABORT_TRANSACTION({transaction_id})")
            assert str(transaction_id) in aborted
            assert run(waiter, "SHOW TRANSACTIONS") == []
            run(waiter, "DELETE FROM t WHERE id = 2")
            assert run(waiter, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]


def test_a_delete_waiting_for_a_lock_goes_ahead_once_the_holder_commits(snowflake_server, stage):
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT)", pa.table({"id": [1, 2, 3]})) as holder:
        copy(holder, "t", PARQUET_FILE_FORMAT)
        run(holder, "BEGIN")
        run(holder, "DELETE FROM t WHERE id = 1")
        with connect(snowflake_server, stage.schema, LOCK_TIMEOUT=30) as waiter:
            deleting = threading.Thread(target=run, args=(waiter, "DELETE FROM t WHERE id = 2"))
            deleting.start()
            deleting.join(timeout=1.0)
            assert deleting.is_alive()  # it waits for the holder's lock
            run(holder, "COMMIT")
            deleting.join(timeout=30)
            assert not deleting.is_alive()
            assert run(waiter, "SELECT id FROM t") == [(3,)]


def test_closing_a_session_rolls_its_transaction_back(snowflake_server, stage):
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT)", pa.table({"id": [1, 2]})) as conn:
        copy(conn, "t", PARQUET_FILE_FORMAT)
    conn = connect(snowflake_server, stage.schema)
    run(conn, "BEGIN")
    run(conn, "DELETE FROM t")
    conn.close()
    with connect(snowflake_server, stage.schema, LOCK_TIMEOUT=1) as other:
        assert run(other, "SELECT COUNT(*) FROM t") == [(2,)]
        run(other, "DELETE FROM t WHERE id = 1")  # no lock is left behind
        assert run(other, "SHOW TRANSACTIONS") == []


def test_a_null_timestamp_comes_back_as_null(snowflake_server, stage):
    with connect(snowflake_server, stage.schema) as conn:
        run(conn, "CREATE TABLE t (id INT, at_ntz TIMESTAMP_NTZ)")
        run(conn, "INSERT INTO t VALUES (1, NULL), (2, '2026-11-01 00:00:00.000001')")
        assert run(conn, "SELECT at_ntz FROM t ORDER BY id") == [
            (None,),
            (datetime(2026, 11, 1, 0, 0, 0, 1),),
        ]


def test_a_temporary_table_is_gone_when_its_session_ends(snowflake_server, stage):
    with connect(snowflake_server, stage.schema) as conn:
        run(conn, "CREATE TEMPORARY TABLE scratch (id INT)")
        run(conn, "INSERT INTO scratch VALUES (1)")
        assert run(conn, "SELECT COUNT(*) FROM scratch") == [(1,)]
    with connect(snowflake_server, stage.schema) as conn:
        assert [r for r in run(conn, "SHOW TABLES") if r[1] == "SCRATCH"] == []


def test_a_lock_wait_longer_than_a_request_is_answered_in_progress_and_still_fails_at_lock_timeout(
    snowflake_server, stage, monkeypatch
):
    """The connector gives up on a request after 60 s and sends it again; were each retry a new statement,
    a lock wait would start over every minute and never reach LOCK_TIMEOUT (it did: a load hung 30 min)."""
    from datavault_analytics_tests.test_faults.faultkit import HttpProxy

    monkeypatch.setattr(snowflake_server.rules, "in_progress_seconds", 0.5)
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT)", pa.table({"id": [1, 2, 3]})) as holder:
        copy(holder, "t", PARQUET_FILE_FORMAT)
        run(holder, "BEGIN")
        run(holder, "DELETE FROM t WHERE id = 1")
        with HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as proxy:
            args = {**snowflake_server.connection_args("RULES", stage.schema), "port": proxy.port}
            args["session_parameters"] = {**args["session_parameters"], "LOCK_TIMEOUT": 3}
            with snowflake.connector.connect(**args) as waiter:
                started = time.monotonic()
                with pytest.raises(snowflake.connector.errors.ProgrammingError) as e:
                    run(waiter, "DELETE FROM t WHERE id = 2")
                assert e.value.errno == 625 and 3 <= time.monotonic() - started < 20
        polls = [r for r in proxy.requests if r.method == "GET" and r.path.endswith("/result")]
        assert len(polls) >= 2  # answered "in progress", then polled until the lock wait ended
        run(holder, "ROLLBACK")


def test_a_request_sent_again_with_its_request_id_runs_once(snowflake_server, stage):
    """A retried request (a reset mid-answer, a timeout) must not run its statement twice: a COPY would load
    its rows twice."""
    import json
    import urllib.request

    with connect(snowflake_server, stage.schema) as conn:
        run(conn, "CREATE TABLE t (id INT)")
        token = conn.rest.token

        def send(request_id: str) -> dict:
            request = urllib.request.Request(
                f"http://{snowflake_server.host}:{snowflake_server.port}/queries/v1/query-request"
                f"?requestId={request_id}",
                data=json.dumps({"sqlText": "INSERT INTO t VALUES (1)", "asyncExec": False}).encode(),
                headers={"Authorization": f'Snowflake Token="{token}"', "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())

        first = str(uuid.uuid4())
        assert send(first)["success"] and send(first)["success"]
        assert run(conn, "SELECT COUNT(*) FROM t") == [(1,)]
        assert send(str(uuid.uuid4()))["success"]  # another request id is another statement
        assert run(conn, "SELECT COUNT(*) FROM t") == [(2,)]


def test_a_copy_whose_staged_file_cannot_be_read_fails_as_a_sql_error_not_an_http_error(
    snowflake_server, stage
):
    """An HTTP 500 would make the connector send the COPY again, joining the same failed execution, until
    its network_timeout: by default forever, with the day's transaction open (soak seed 20)."""
    table = pa.table({"id": [1], "note": ["x"]})
    with prepare(snowflake_server, stage, "CREATE TABLE t (id INT, note VARCHAR)", table) as conn:
        conn._network_timeout = 30  # without the rule, the test fails here instead of hanging
        started = time.monotonic()
        with pytest.raises(
            snowflake.connector.errors.ProgrammingError, match="Failure using stage area"
        ) as e:
            copy(conn, "t", PARQUET_FILE_FORMAT, files=("part-0.parquet", "gone.parquet"))
        assert e.value.errno == 91003 and time.monotonic() - started < 20
        assert run(conn, "SELECT COUNT(*) FROM t") == [(0,)]
