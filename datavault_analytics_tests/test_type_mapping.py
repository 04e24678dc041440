"""Every PostgreSQL type of the matrix (docs/data-path.md, "How types travel"), carried by the real pipeline from
a database whose defaults are neither UTC nor ISO, and proven twice: by the all-column fingerprint on both sides,
and by a reader that compares the values with plain psycopg and the plain Snowflake connector."""

import json
import struct
from datetime import date, datetime, time
from decimal import Decimal

import dagster as dg
import pytest

from datavault_analytics.components.datavault_table import DataVaultTable
from datavault_analytics.settings import Settings
from datavault_analytics.type_mapping import mapping_for

DAY = "2026-03-08"  # a DST change in America/New_York, whose midnight is not UTC's
NEXT_DAY = "2026-03-09"

WIDE_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE DOMAIN price_eur AS numeric(9,2);
CREATE TABLE public.wide (
    id bigint PRIMARY KEY,
    created_at timestamp NOT NULL,
    amount numeric(12,2), big numeric(38,10), free numeric, huge numeric(50,5), eur price_eur,
    code char(5), label varchar(20), t time, t3 time(3), ttz timetz, span interval,
    tags text[], grid integer[][], moods mood[], feeling mood, qty positive_int,
    addr inet, net cidr, mac macaddr, mac8 macaddr8, flags bit(4), vflags varbit,
    doc xml, price money, payload jsonb, raw json,
    d date, ts timestamp(3), tstz timestamptz, r real, f double precision, b boolean, u uuid, bin bytea,
    s smallint
);
CREATE INDEX wide_created_at ON public.wide (created_at);
"""

ROWS = [
    # midnight of the day, UTC wall-clock time: in the day; nothing from 2026-03-07 23:59:59.999999
    """(1, '2026-03-08 00:00:00', 1234567890.12, 1234567890123456789012345678.0123456789, 12.500,
        123456789012345678901234567890123456789012345.12345, 19.99, 'ab', 'Ünïcode ✓', '00:00:00',
        '23:59:59.999', '12:30:00+02', '1 year 2 months 3 days 04:05:06', '{"a","b|c",NULL,""}',
        '{{1,2},{3,NULL}}', '{sad,happy}', 'ok', 7, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
        '08:00:2b:01:02:03:04:05', B'1010', B'101', '<a x="1">t</a>', 1234.56,
        '{"a": {"b": [1, 2.5, null]}, "s": "x\\ty"}', '{"k": 1, "k": 2}', '2026-03-08',
        '2026-03-08 02:30:00.123', '2026-03-08 07:00:00+00', 0.1, 1e308, true,
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', -32768)""",
    # the DST change's wall-clock gap in New York (02:00-03:00 does not exist there) is an ordinary UTC hour
    """(2, '2026-03-08 02:30:00', -0.01, -0.0000000001, 'NaN', -1, 0, '', '', '23:59:59.999999', '00:00:00',
        '00:00:00-11:30', '-1 days +00:00:00.000001', '{}', '{}', '{}', 'sad', 1, '::1', '::/0',
        'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00', B'0000', B'', '<x/>', -0.01, '[]', '"just text"',
        '0001-01-01', '9999-12-31 23:59:59.999', '1970-01-01 00:00:00+00', '-Infinity', 'NaN', false,
        '00000000-0000-0000-0000-000000000000', '\\x', 32767)""",
    """(3, '2026-03-08 23:59:59.999999', 0, 0, '-Infinity', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL)""",
    # the next day's midnight: not in the day
    """(4, '2026-03-09 00:00:00', 1, 1, '1', 1, 1, 'x', 'x', '01:00', '01:00', '01:00+00', '1 hour', '{x}',
        '{1}', '{ok}', 'ok', 1, '1.1.1.1', '1.1.1.0/24', '00:00:00:00:00:01', '00:00:00:00:00:00:00:01',
        B'1111', B'1', '<y/>', 1, '{}', '{}', '2026-03-09', '2026-03-09 00:00:00', '2026-03-09 00:00:00+00',
        1, 1, true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '\\x01', 1)""",
]

# What a server may default to: none of it may change a value (sessions pin each one).
HOSTILE_DEFAULTS = {
    "timezone": "America/New_York",
    "datestyle": "SQL, DMY",
    "intervalstyle": "postgres_verbose",
    "bytea_output": "escape",
    "extra_float_digits": "0",
}


def wide_table(attributes: dict | None = None):
    component = DataVaultTable.resolve_from_dict(
        {
            "table": "public.wide",
            "partition_column": "created_at",
            "primary_key": ["id"],
            "start_date": "2026-01-01",
            **(attributes or {}),
        }
    )
    return component.pipeline(Settings.from_environment())


def load_wide(pipeline, table, day: str = DAY) -> dg.ExecuteInProcessResult:
    return pipeline.materialize(day, table=table, raise_on_error=False)


@pytest.fixture
def wide(pipeline):
    for name, value in HOSTILE_DEFAULTS.items():
        pipeline.pg(f"ALTER DATABASE {pipeline.database} SET {name} = '{value}'")
    pipeline.pg(WIDE_DDL)
    pipeline.pg(f"INSERT INTO public.wide VALUES {', '.join(ROWS)}")  # noqa: S608
    return pipeline


# -- the independent reader ----------------------------------------------------------------------------

# Read with the reader's own settings and casts, then compared by what docs/data-path.md says each becomes.
SOURCE_SELECT = """
SELECT id, created_at, amount, big, free::text, huge::text, eur, code, label, t, t3, ttz::text, span::text,
    tags, grid, moods::text[], feeling::text, qty, addr::text, net::text, mac::text, mac8::text, flags::text,
    vflags::text, doc::text, price::numeric, payload, raw::text, d, ts, tstz, r, f, b, u::text, bin, s
FROM public.wide WHERE created_at >= '2026-03-08' AND created_at < '2026-03-09' ORDER BY id
"""


def _as_source_would_arrive(name: str, value):
    """What Snowflake should hold for a source value, as the matrix states it."""
    if value is None:
        return None
    if name == "code":  # char(n): its padding is not part of its value
        return value.rstrip(" ")
    if name == "tstz":  # TIMESTAMP_NTZ holds UTC wall-clock time
        return value.replace(tzinfo=None)
    if name == "r":  # a real is widened exactly to Snowflake's double
        return struct.unpack("f", struct.pack("f", value))[0]
    return value


def _as_snowflake_reads(name: str, value):
    if value is None:
        return None
    if name in ("tags", "grid", "moods"):  # JSON text of the array in the table
        return json.loads(value)
    if name == "payload":  # jsonb: its document
        return value if isinstance(value, dict | list) else json.loads(value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def source_values(pipeline) -> list[dict]:
    with __import__("psycopg").connect(pipeline.dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET IntervalStyle = 'iso_8601'")
        conn.execute("SET DateStyle = 'ISO'")
        cursor = conn.execute(SOURCE_SELECT)
        names = [d.name for d in cursor.description]
        return [{n: _as_source_would_arrive(n, v) for n, v in zip(names, row, strict=True)} for row in cursor]


def snowflake_values(pipeline, table: str = "WIDE") -> list[dict]:
    import snowflake.connector

    args = pipeline.snowflake_server.connection_args(pipeline.sf_database, pipeline.sf_schema)
    conn = snowflake.connector.connect(**args)
    try:
        cursor = conn.cursor()
        cursor.execute(f'SELECT * FROM "{table}" ORDER BY "ID"')  # noqa: S608
        names = [d[0].lower() for d in cursor.description]
        return [
            {n: _as_snowflake_reads(n, v) for n, v in zip(names, row, strict=True)}
            for row in cursor.fetchall()
        ]
    finally:
        conn.close()


def test_every_type_of_the_matrix_arrives_exact_from_a_server_with_hostile_defaults(wide):
    table = wide_table()
    result = load_wide(wide, table)
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]

    # 1. the all-column fingerprint, both sides, now
    [day] = wide.reconcile([DAY], table=table)
    assert day.matches and day.postgres_rows == day.snowflake_rows == 3, day

    # 2. an independent reader, value by value
    source, target = source_values(wide), snowflake_values(wide)
    assert [r["id"] for r in target] == [1, 2, 3]  # the next day's midnight row is not in the day
    for expected, found in zip(source, target, strict=True):
        for name, value in expected.items():
            got = found[name]
            if name in ("r", "f") and value is not None and value != value:  # NaN
                assert got != got, name
            elif name == "payload" and value is not None:
                assert got == value, name
            else:
                assert got == value, (expected["id"], name, value, got)

    # 3. values whose form the matrix states, written out
    first, second, third = target
    assert first["free"] == "12.500" and second["free"] == "NaN" and third["free"] == "-Infinity"
    assert first["huge"] == "123456789012345678901234567890123456789012345.12345"
    assert first["big"] == Decimal("1234567890123456789012345678.0123456789")
    assert first["span"] == "P1Y2M3DT4H5M6S" and second["span"] == "P-1DT0.000001S"
    assert first["ttz"] == "12:30:00+02" and first["t"] == time(0) and second["t"] == time(23, 59, 59, 999999)
    assert first["grid"] == [[1, 2], [3, None]] and first["tags"] == ["a", "b|c", None, ""]
    assert second["grid"] == [] and first["moods"] == ["sad", "happy"] and first["feeling"] == "ok"
    assert first["price"] == Decimal("1234.56") and first["eur"] == Decimal("19.99")
    assert first["addr"] == "192.168.0.1/24" and first["flags"] == "1010" and first["code"] == "ab"
    assert first["raw"] == '{"k": 1, "k": 2}'  # json keeps its text, duplicate keys included
    assert first["ts"] == datetime(2026, 3, 8, 2, 30, 0, 123000) and second["d"] == date(1, 1, 1)
    assert first["created_at"] == datetime(2026, 3, 8) and third["created_at"] == datetime(
        2026, 3, 8, 23, 59, 59, 999999
    )

    # 4. the typed view beside the table: JSON a VARIANT, arrays ARRAYs, read without PARSE_JSON
    view = wide.snowflake('SELECT "PAYLOAD":a:b[1], "GRID"[1], "TAGS"[1] FROM "WIDE_TYPED" WHERE "ID" = 1')
    assert [tuple(json.loads(v) for v in row) for row in view] == [(2.5, [3, None], "b|c")]


def test_a_day_reloads_exact_and_the_checks_pass_on_the_hostile_server(wide):
    """Loaded twice, the day is the same rows: the window is the same 24 hours on both sides."""
    table = wide_table()
    assert load_wide(wide, table).success
    assert load_wide(wide, table).success
    assert load_wide(wide, table, NEXT_DAY).success
    days = wide.reconcile([DAY, NEXT_DAY], table=table)
    assert [d.snowflake_rows for d in days] == [3, 1] and all(d.matches for d in days)


def test_a_drift_in_a_new_type_is_seen_by_the_fingerprint(wide):
    table = wide_table()
    assert load_wide(wide, table).success
    wide.pg(
        "UPDATE public.wide SET span = span + interval '1 microsecond', grid = '{{1,2},{3,4}}' WHERE id = 1"
    )
    [day] = wide.reconcile([DAY], table=table)
    assert not day.matches and day.postgres_rows == day.snowflake_rows == 3


@pytest.mark.parametrize(
    ("change", "column", "why"),
    [
        (
            "UPDATE public.wide SET amount = 'NaN' WHERE id = 2",
            "amount",
            "'NaN' of column 'amount' in the row id=2",
        ),
        (
            "UPDATE public.wide SET ts = 'infinity' WHERE id = 1",
            "ts",
            "column 'ts' in the row id=1 is outside years 1",
        ),
        (
            "UPDATE public.wide SET d = '10000-01-01' WHERE id = 3",
            "d",
            "column 'd' in the row id=3 is outside years",
        ),
        (
            "UPDATE public.wide SET tstz = '-infinity' WHERE id = 2",
            "tstz",
            "column 'tstz' in the row id=2 is outside",
        ),
    ],
)
def test_a_value_snowflake_cannot_hold_fails_its_day_naming_column_row_and_value(wide, change, column, why):
    wide.pg(change)
    result = load_wide(wide, wide_table())
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "public.wide, 2026-03-08" in message and why in message
    assert "nothing of the day was loaded" in message
    tables = wide.snowflake(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'WIDE'",
        (wide.sf_schema,),
    )
    assert tables == [(0,)]


def test_an_overridden_numeric_is_exact_or_its_day_fails_never_rounded(wide):
    table = wide_table({"column_types": {"free": "NUMBER(20,3)"}, "exclude_columns": ["huge", "doc"]})
    wide.pg("UPDATE public.wide SET free = NULL WHERE id IN (2, 3)")
    assert load_wide(wide, table).success
    target = snowflake_values(wide)
    assert [r["free"] for r in target] == [Decimal("12.500"), None, None]
    assert "huge" not in target[0] and "doc" not in target[0]  # excluded: never read, never loaded
    [day] = wide.reconcile([DAY], table=table)
    assert day.matches

    wide.pg("UPDATE public.wide SET free = 1.2345 WHERE id = 2")
    result = load_wide(wide, table)
    message = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.to_string()
    assert (
        "the value '1.2345' of column 'free' in the row id=2 does not fit Snowflake's NUMBER(20,3)" in message
    )
    assert [r["free"] for r in snowflake_values(wide)] == [Decimal("12.500"), None, None]  # nothing changed


def test_a_manifest_edited_in_s3_is_refused_before_it_reaches_snowflake(wide):
    table = wide_table()
    assert load_wide(wide, table).success
    key = f"analytics/wide/dt={DAY}/_manifest.json"
    manifest = json.loads(wide.s3.get_object(Bucket=wide.bucket, Key=key)["Body"].read())
    before = repr(snowflake_values(wide))  # by text: a NaN is not equal to itself
    for edit in (
        lambda m: m.update(directory="wide/dt=2026-03-08' FILES=('x"),
        lambda m: m["columns"][2].update(snowflake_type="NUMBER(12,2)) ; DROP TABLE WIDE; --"),
        lambda m: m["files"][0].update(name="other/dt=2026-03-08/part-00000.parquet"),
    ):
        edited = json.loads(json.dumps(manifest))
        edit(edited)
        wide.s3.put_object(Bucket=wide.bucket, Key=key, Body=json.dumps(edited).encode())
        result = wide.materialize(DAY, table=table, raise_on_error=False, selection=[table.snowflake_key])
        message = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.to_string()
        assert "is not one our staging wrote" in message and "Nothing was loaded from it" in message
        assert repr(snowflake_values(wide)) == before


@pytest.mark.parametrize(
    ("postgres_type", "snowflake_type", "canonical"),
    [
        ("numeric(12,2)", "NUMBER(12,2)", "numeric"),
        ("numeric(38,0)", "NUMBER(38,0)", "numeric"),
        ("numeric(39,0)", "VARCHAR", "text"),
        ("numeric", "VARCHAR", "text"),
        ("character(3)", "VARCHAR", "text"),
        ("time(3) without time zone", "TIME", "time"),
        ("timestamp(3) with time zone", "TIMESTAMP_NTZ", "timestamp"),
        ("integer[]", "VARCHAR", "text"),
        ("mood (enum)", "VARCHAR", "text"),
        ("money", "NUMBER(22,3)", "numeric"),
    ],
)
def test_the_matrix_reads_type_modifiers(postgres_type, snowflake_type, canonical):
    mapping = mapping_for("c", postgres_type)
    assert (mapping.snowflake_type, mapping.canonical) == (snowflake_type, canonical)
