"""The content fingerprint (fingerprint.py): PostgreSQL, the Snowflake emulator and Python agree on it for
awkward rows, it covers every column, and it does not depend on row order."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datavault_analytics.day_window import DayWindow
from datavault_analytics.fingerprint import EMPTY, Fingerprint, canonical_text, python_fingerprint

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
