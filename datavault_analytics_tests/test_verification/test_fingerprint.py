"""The content fingerprint (fingerprint.py): PostgreSQL, the Snowflake emulator and Python agree on it for
awkward rows, it covers every column, and it does not depend on row order."""

import math
import random
import struct
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics.verification.fingerprint import (
    CANONICAL_FORMS,
    EMPTY,
    Fingerprint,
    canonical_text,
    python_fingerprint,
)

DAY = "2026-11-01"
WINDOW = DayWindow.for_key(DAY)
COLUMNS = [
    ("id", "uuid"),
    ("owner_id", "integer"),
    ("key", "text"),
    ("ciphertext", "bytes"),
    ("nonce", "bytes"),
    ("created_at", "timestamp"),
    ("updated_at", "timestamp"),
]

settings.register_profile("datavault", database=None, deadline=None, print_blob=True)
settings.load_profile("datavault")

# PostgreSQL text holds no NUL and no lone surrogate; everything else is fair game, separators included.
keys = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
) | st.sampled_from(["", "|", "~", "3:abc|", "ключ", "🔑"])
in_the_day = st.one_of(
    st.just(WINDOW.start),
    st.just(WINDOW.end - timedelta(microseconds=1)),
    st.integers(0, 86_400_000_000 - 1).map(lambda us: WINDOW.start + timedelta(microseconds=us)),
)
any_moment = st.integers(-(10**15), 4 * 10**15).map(
    lambda us: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "owner_id": st.integers(-(2**63), 2**63 - 1),
            "key": keys,
            "ciphertext": st.binary(max_size=600)
            | st.sampled_from([b"", b"\x00", b"\xff" * 3, b"\xc3\x28 not utf-8"]),
            "nonce": st.binary(max_size=12),
            "created_at": in_the_day,
            "updated_at": st.none() | any_moment,
        }
    ),
    min_size=1,
    max_size=20,
)


def insert(pipeline, drawn: list[dict]) -> list[dict]:
    records = [{"id": str(uuid.uuid4()), **row} for row in drawn]
    with psycopg.connect(pipeline.dsn, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("DELETE FROM records")
        cursor.executemany(
            "INSERT INTO records (id, owner_id, key, ciphertext, nonce, created_at, updated_at) VALUES "
            "(%(id)s, %(owner_id)s, %(key)s, %(ciphertext)s, %(nonce)s, %(created_at)s, "
            "%(updated_at)s)",
            records,
        )
    return records


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=rows)
def test_postgres_snowflake_and_python_agree_on_awkward_rows(pipeline, drawn):
    records = insert(pipeline, drawn)
    assert pipeline.materialize(DAY).success

    [day] = pipeline.reconcile([DAY])
    assert day.postgres == day.snowflake == python_fingerprint(records, COLUMNS), day.difference()
    assert day.postgres.rows == len(records) and day.surplus_rows == 0


def one_byte_changed(column: str, value):
    if isinstance(value, bytes | bytearray):
        return bytes(value[:-1]) + bytes([value[-1] ^ 1])
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1] != "0" else "1")
    if isinstance(value, int):
        return value + 1
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    raise AssertionError(f"{column}: {value!r}")


@pytest.mark.parametrize(
    "column", ["ID", "OWNER_ID", "KEY", "CIPHERTEXT", "NONCE", "CREATED_AT", "UPDATED_AT"]
)
def test_a_one_byte_change_in_any_column_changes_the_fingerprint(pipeline, column):
    pipeline.seed([WINDOW.start.date()], rows_per_day=25)
    pipeline.pg("UPDATE records SET updated_at = created_at + interval '1 hour'")
    assert pipeline.materialize(DAY).success
    [(victim, original)] = pipeline.snowflake(
        f'SELECT "ID", "{column}" FROM "RECORDS" ORDER BY "CREATED_AT" LIMIT 1 OFFSET 3'  # noqa: S608
    )
    original = bytes(original) if isinstance(original, bytearray) else original

    changed_value = one_byte_changed(column, original)
    pipeline.snowflake(
        f'UPDATE "RECORDS" SET "{column}" = %s WHERE "ID" = %s',  # noqa: S608
        (changed_value, victim),
    )
    [changed] = pipeline.reconcile([DAY])
    assert not changed.matches and changed.postgres.rows == changed.snowflake.rows

    pipeline.snowflake(
        f'UPDATE "RECORDS" SET "{column}" = %s WHERE "ID" = %s',  # noqa: S608
        (original, changed_value if column == "ID" else victim),
    )
    [restored] = pipeline.reconcile([DAY])
    assert restored.matches, restored.difference()


def test_the_python_fingerprint_ignores_row_order_and_tells_null_from_empty():
    drawn = [
        {
            "id": str(uuid.uuid4()),
            "owner_id": n,
            "key": f"k{n}",
            "ciphertext": bytes([n]) * n,
            "nonce": b"",
            "created_at": WINDOW.start + timedelta(seconds=n),
            "updated_at": None,
        }
        for n in range(50)
    ]
    shuffled = random.Random(3).sample(drawn, len(drawn))
    assert python_fingerprint(drawn, COLUMNS) == python_fingerprint(shuffled, COLUMNS) != EMPTY
    assert python_fingerprint([], COLUMNS) == EMPTY == Fingerprint(0, 0)
    assert canonical_text(None, "bytes") != canonical_text(b"", "bytes")
    assert canonical_text(None, "text") != canonical_text("", "text") != canonical_text("~", "text")
    # Columns are length-prefixed: moving a separator between two values changes the text.
    assert "|".join([canonical_text("a|b", "text"), canonical_text("c", "text")]) != "|".join(
        [canonical_text("a", "text"), canonical_text("b|c", "text")]
    )
    assert canonical_text(datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC), "timestamp") == "1"
    assert canonical_text(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "timestamp") == "-1"


# Floats whose printed text differs between engines: integral values (PostgreSQL prints 12, the emulator
# 12.0), huge and tiny ones (exponent notation), subnormals, the largest double, signed zeros, specials.
AWKWARD_FLOATS = [
    12.0, 1.0, -1.0, 0.0, -0.0, 0.1, 0.1 + 0.2, 1 / 3, 40.0, 123456789.0, 2.0**53, 2.0**53 + 2, 1e20, 1e-20,
    -3.75, 2.0**-1022, 5e-324, 3 * 5e-324, 1.7976931348623157e308, -2.5e-300,
    float("nan"), float("inf"), float("-inf"), None,
]  # fmt: skip


def float_texts(pipeline, values: list[float | None]) -> tuple[list[str], list[str]]:
    """Each float's canonical text as PostgreSQL and Snowflake compute it, after a real load of a
    retrieval_log day whose latency_ms column holds `values`."""
    log = configured_table("retrieval_log")
    pipeline.pg("TRUNCATE retrieval_log")
    for n, value in enumerate(values):
        pipeline.pg(
            "INSERT INTO retrieval_log (record_id, requested_by, found, client, latency_ms, retrieved_at) "
            "VALUES (gen_random_uuid(), 'svc', true, '{}', %s, %s)",
            (value, WINDOW.start + timedelta(seconds=n)),
        )
    assert pipeline.materialize(DAY, table=log).success
    [day] = pipeline.reconcile([DAY], table=log)
    assert day.matches, day.difference()

    postgres_form, snowflake_form = CANONICAL_FORMS["float"]
    postgres = pipeline.pg(
        f"SELECT {postgres_form.format(c='latency_ms')} FROM retrieval_log ORDER BY retrieved_at"  # noqa: S608
    )
    snowflake = pipeline.snowflake(
        f'SELECT {snowflake_form.format(c=chr(34) + "LATENCY_MS" + chr(34))} FROM "RETRIEVAL_LOG" '  # noqa: S608
        'ORDER BY "RETRIEVED_AT"'
    )
    return [text for (text,) in postgres], [text for (text,) in snowflake]


def test_floats_fingerprint_the_same_in_postgres_snowflake_and_python_however_each_prints_them(pipeline):
    postgres, snowflake = float_texts(pipeline, AWKWARD_FLOATS)
    python = [None if v is None else canonical_text(v, "float") for v in AWKWARD_FLOATS]
    assert postgres == snowflake == python
    assert python[:3] == ["6755399441055744p-49", "4503599627370496p-52", "-4503599627370496p-52"]
    assert python[3] == python[4] == "0" and python[-4:-1] == ["nan", "inf", "-inf"]
    # Distinct values keep distinct texts, so a changed float changes the fingerprint.
    finite = {v for v in AWKWARD_FLOATS if v is not None and math.isfinite(v) and v != 0}
    assert len({canonical_text(v, "float") for v in finite}) == len(finite)


@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(st.floats(width=64) | st.integers(-(10**6), 10**6).map(float), min_size=1, max_size=25))
def test_any_doubles_fingerprint_the_same_on_both_sides(pipeline, drawn):
    postgres, snowflake = float_texts(pipeline, drawn)
    assert postgres == snowflake == [canonical_text(v, "float") for v in drawn]


def test_a_real_column_is_fingerprinted_as_its_exact_widened_value(pipeline):
    """PostgreSQL prints real 0.1 as 0.1, but Parquet and Snowflake carry its float32 value widened to a
    double, 0.100000001490116…: the canonical form is that value on both sides."""
    reals = [0.1, 12.0, -1e-3, 3.4028234663852886e38, 1.401298464324817e-45]
    widened = [struct.unpack("f", struct.pack("f", v))[0] for v in reals]
    postgres_form = CANONICAL_FORMS["float"][0].format(c="x")
    literals = ", ".join(f"({v!r}::real)" for v in reals)
    texts = pipeline.pg(f"SELECT {postgres_form} FROM (VALUES {literals}) AS v (x)")  # noqa: S608
    assert [t for (t,) in texts] == [canonical_text(v, "float") for v in widened]
    assert canonical_text(widened[0], "float") != canonical_text(0.1, "float")
