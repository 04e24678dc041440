"""Property tests (hypothesis): payload bytes, identifiers, partition keys and secrets.

- Any payload bytes (empty, NUL, 0xFF, invalid UTF-8, long) arrive byte for byte: through PostgreSQL's
  extract into staged Parquet (many examples, real PostgreSQL, a local stage), and through the whole
  pipeline into Snowflake (a few examples: real PostgreSQL, S3 and Snowflake).
- Any configured name is accepted exactly when it is a plain identifier; anything with a quote, a
  semicolon, a space, a dot, a NUL or a non-ASCII letter is refused, naming the setting.
- Any partition key is a day in YYYY-MM-DD form or refused; a day is a partition exactly when it lies
  between the first partition and the last ended day.
- A secret never survives redaction, whatever surrounds it.
"""

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import psycopg
import pyarrow.parquet as pq
import pytest
from dagster_aws.s3 import S3Resource
from dagster_snowflake import SnowflakeResource
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from datavault_analytics.identifiers import (
    InvalidIdentifierError,
    quote_postgres,
    quote_snowflake,
    validate_identifier,
)
from datavault_analytics.postgres.extract import SourceDay
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.redaction import redact
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.io_manager import S3StageIOManager
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.table.day_window import DayWindow, InvalidPartitionKeyError
from datavault_analytics.table.partitions import check_in_partitions
from datavault_analytics.table.spec import TableSpec
from datavault_analytics_tests.pipeline_harness import create_source_database
from datavault_analytics_tests.records import PARTITIONS, RECORDS_SPEC

# No example database in the repository; every run draws afresh (and reports the seed of a failure).
settings.register_profile("datavault", database=None, deadline=None, print_blob=True)
settings.load_profile("datavault")

DAY = "2026-11-01"
WINDOW = DayWindow.for_key(DAY)
PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
payloads = st.lists(st.binary(max_size=4096), min_size=1, max_size=40)
# Names with at least one character an identifier must not carry.
hostile_names = st.builds(
    lambda before, bad, after: before + bad + after,
    st.text(max_size=12),
    st.sampled_from(['"', "'", ";", " ", ".", "-", "\x00", "\\", "`", "(", "/*", "--", "\n", "é", "ß", "$"]),
    st.text(max_size=12),
)


def _insert(conn: psycopg.Connection, blobs: list[bytes]) -> list[tuple[str, bytes]]:
    rows = [(str(uuid.uuid4()), blob) for blob in blobs]
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO records (id, owner_id, key, ciphertext, nonce, created_at) VALUES (%s, 1, 'k', %s, "
            "%s, %s)",
            [
                (id_, blob, blob[:12], WINDOW.start + timedelta(seconds=i))
                for i, (id_, blob) in enumerate(rows)
            ],
        )
    return sorted(rows)


# -- payload bytes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source_dsn(pg_server) -> str:
    return create_source_database(pg_server, f"props_{uuid.uuid4().hex[:8]}")


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blobs=payloads)
def test_any_payload_bytes_are_staged_byte_for_byte(source_dsn, tmp_path_factory, blobs):
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE records")
        expected = _insert(conn, blobs)
    postgres = PostgresResource(table_spec=RECORDS_SPEC, dsn=source_dsn)
    stage = S3StageIOManager(
        stage=S3Stage(s3=S3Resource(), stage_uri=f"file://{tmp_path_factory.mktemp('stage')}"),
        locks=PartitionLocks(dsn=source_dsn),
        target_file_size_mb=1,
        row_group_rows=7,
    ).for_table(RECORDS_SPEC)
    storage = stage.stage.storage()

    manifest = stage.stage_day(storage, SourceDay(postgres, postgres.source_columns(), WINDOW))

    assert manifest.rows == len(blobs)
    tables = [pq.read_table(f.uri.removeprefix("file://")) for f in manifest.files]
    staged = sorted(
        (id_, blob)
        for table in tables
        for id_, blob in zip(table["id"].to_pylist(), table["ciphertext"].to_pylist(), strict=True)
    )
    assert staged == expected


@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blobs=st.lists(st.binary(max_size=2048), min_size=1, max_size=25))
def test_any_payload_bytes_reach_snowflake_byte_for_byte(pipeline, blobs):
    pipeline.pg("DELETE FROM records")
    with psycopg.connect(pipeline.dsn, autocommit=True) as conn:
        expected = _insert(conn, blobs)

    assert pipeline.materialize(DAY).success

    loaded = pipeline.snowflake_rows(DAY, columns='"ID", "CIPHERTEXT"')
    assert sorted(loaded) == expected
    [day] = pipeline.reconcile([DAY])
    assert day.matches, day.difference()


# -- identifiers -------------------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_a_name_is_accepted_exactly_when_it_is_a_plain_identifier(name):
    if PLAIN.fullmatch(name):
        assert validate_identifier(name, "setting") == name
        assert quote_postgres(name) == f'"{name.lower()}"' and quote_snowflake(name) == f'"{name.upper()}"'
    else:
        with pytest.raises(InvalidIdentifierError, match="setting="):
            validate_identifier(name, "setting")


@given(
    name=hostile_names,
    setting=st.sampled_from(sorted(TableSpec.model_fields)),
)
def test_a_hostile_name_in_the_table_settings_is_refused(name, setting):
    with pytest.raises(ValueError, match=re.escape(f"{setting}=")):
        TableSpec(**{**RECORDS_SPEC.model_dump(), setting: name})


@given(name=hostile_names, setting=st.sampled_from(["stage_name", "storage_integration"]))
def test_a_hostile_name_in_the_snowflake_settings_is_refused(name, setting):
    snowflake = SnowflakeResource(account="a", user="u", password="p")
    stage = S3Stage(s3=S3Resource(), stage_uri="s3://bucket/prefix")
    with pytest.raises(ValueError, match=re.escape(f"snowflake.{setting}=")):
        SnowflakeLoader(snowflake=snowflake, stage=stage, **{setting: name})


@given(name=hostile_names)
def test_a_hostile_stage_dataset_is_refused(name):
    with pytest.raises(ValueError, match=re.escape("s3_stage.dataset=")):
        S3Stage(s3=S3Resource(), stage_uri="file:///tmp/stage", dataset=name)


# -- partition keys ----------------------------------------------------------------------------------


@given(st.text(max_size=20))
def test_a_partition_key_is_a_day_or_refused(key):
    try:
        window = DayWindow.for_key(key)
    except InvalidPartitionKeyError:
        assert not re.fullmatch(r"\d{4}-\d{2}-\d{2}", key) or _not_a_date(key)
        return
    assert window.partition_key == key == date.fromisoformat(key).isoformat()
    assert window.end - window.start == timedelta(days=1) and window.start.tzinfo == UTC


def _not_a_date(key: str) -> bool:
    try:
        date.fromisoformat(key)
    except ValueError:
        return True
    return False


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_a_day_is_a_partition_exactly_between_the_first_day_and_the_last_ended_one(day):
    first = date.fromisoformat(PARTITIONS.get_first_partition_key())
    ended = datetime.now(UTC).date() - timedelta(days=1)
    if first <= day <= ended:
        check_in_partitions(PARTITIONS, [day.isoformat()])
    elif day < first or day > ended + timedelta(days=1):  # (near midnight, the last day may move on)
        with pytest.raises(InvalidPartitionKeyError, match="outside this pipeline's partitions"):
            check_in_partitions(PARTITIONS, [day.isoformat()])


# -- secrets -----------------------------------------------------------------------------------------

secrets = st.text(min_size=3, max_size=30).filter(lambda s: s.strip("*"))


@settings(max_examples=1000)
@example(before="", secret="://", after="")  # once taken for a URI without a password, and kept
@example(before="a", secret="a**", after="")  # a replacement next to a '*' once formed it again
@given(before=st.text(max_size=40), secret=secrets, after=st.text(max_size=40))
def test_a_secret_never_survives_redaction(before, secret, after):
    assert secret not in redact(before + secret + after, secret)


@given(secret=secrets, noise=st.text(max_size=30))
def test_a_dsn_password_never_survives_redaction_encoded_or_decoded(secret, noise):
    dsn = f"postgresql://reader:{quote(secret, safe='')}@db.internal:5432/datavault"
    message = f"could not connect with {dsn} {noise} (password {secret})"
    redacted = redact(message, dsn)
    assert secret not in redacted and quote(secret, safe="") not in redacted
