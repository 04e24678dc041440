"""A source schema that changes under the daily runs: what Snowflake can do in place is done and recorded, the
rest stops the table's runs with one error, and nothing loaded changes."""

from decimal import Decimal

import pytest

from datavault_analytics.components.datavault_table import DataVaultTable
from datavault_analytics.settings import Settings

DAY1, DAY2 = "2026-04-01", "2026-04-02"


def orders(dropped_columns: str = "keep"):
    return DataVaultTable.resolve_from_dict(
        {
            "table": "public.orders",
            "partition_column": "created_at",
            "primary_key": ["id"],
            "start_date": "2026-01-01",
            "dropped_columns": dropped_columns,
        }
    ).pipeline(Settings.from_environment())


@pytest.fixture
def shop(pipeline):
    pipeline.pg(
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, qty integer, "
        "amount numeric(12,2), note text, code uuid)"
    )
    pipeline.pg(
        "INSERT INTO public.orders SELECT n, TIMESTAMPTZ '2026-04-01 00:00+00' + n * INTERVAL '1 hour', n, "
        "n * 1.25, 'note ' || n, md5(n::text)::uuid FROM generate_series(0, 47) AS n"
    )
    return pipeline


def column_types(pipeline) -> dict[str, tuple]:
    rows = pipeline.snowflake(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'ORDERS'",
        (pipeline.sf_schema,),
    )
    return {name: tuple(rest) for name, *rest in rows}


def load(pipeline, table, day: str):
    result = pipeline.materialize(day, table=table, raise_on_error=False)
    failures = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]
    return result, failures


def changes_recorded(result) -> list[str]:
    [materialization] = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if "snowflake" in str(e.asset_key)
    ]
    entry = materialization.metadata.get("schema_changes")
    return entry.value if entry else []


def test_widenings_snowflake_can_make_in_place_are_applied_and_the_day_loads(shop):
    table = orders()
    assert load(shop, table, DAY1)[0].success
    shop.pg("ALTER TABLE public.orders ALTER COLUMN qty TYPE bigint, ALTER COLUMN amount TYPE numeric(16,2)")
    shop.pg("UPDATE public.orders SET qty = 9000000000, amount = 12345678901234.56 WHERE id = 30")
    result, failures = load(shop, table, DAY2)
    assert result.success, failures
    assert column_types(shop)["QTY"] == ("NUMBER", 19, 0) and column_types(shop)["AMOUNT"] == (
        "NUMBER",
        16,
        2,
    )
    assert changes_recorded(result) == [
        "widened column QTY from NUMBER(10,0) to NUMBER(19,0)",
        "widened column AMOUNT from NUMBER(12,2) to NUMBER(16,2)",
    ]
    assert shop.snowflake('SELECT "QTY", "AMOUNT" FROM "ORDERS" WHERE "ID" = 30') == [
        (9000000000, Decimal("12345678901234.56"))
    ]
    days = shop.reconcile([DAY1, DAY2], table=table)
    assert all(d.matches for d in days) and [d.snowflake_rows for d in days] == [24, 24]


def test_a_day_staged_before_a_widening_still_loads_into_the_wider_table(shop):
    """A backfill's earlier day was staged before the migration; the later day widened the table."""
    table = orders()
    assert shop.materialize(DAY1, table=table, selection=[table.stage_key]).success  # staged as integer
    shop.pg("ALTER TABLE public.orders ALTER COLUMN qty TYPE bigint")
    assert load(shop, table, DAY2)[0].success
    result = shop.materialize(DAY1, table=table, selection=[table.snowflake_key], raise_on_error=False)
    assert result.success, [
        e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure
    ]
    assert column_types(shop)["QTY"] == ("NUMBER", 19, 0)
    assert all(d.matches for d in shop.reconcile([DAY1, DAY2], table=table))


def test_a_widening_made_while_a_backfill_runs_lands_and_every_day_of_the_range_matches(shop):
    """The migration lands between the backfill run's stage step and its load step: both days were staged
    with the old types, PostgreSQL now has the wider ones, and the run goes on."""
    table = orders()
    assert load(shop, table, DAY1)[0].success  # Snowflake's table exists with the old types
    assert shop.materialize(DAY1, DAY2, table=table, selection=[table.stage_key]).success
    shop.pg("ALTER TABLE public.orders ALTER COLUMN qty TYPE bigint, ALTER COLUMN note TYPE varchar(400)")
    result = shop.materialize(DAY1, DAY2, table=table, selection=[table.snowflake_key], raise_on_error=False)
    assert result.success, [
        e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure
    ]
    assert all(d.matches for d in shop.reconcile([DAY1, DAY2], table=table))  # by content, the new types read
    # The next day's run stages with the new types and widens Snowflake's table.
    shop.pg("UPDATE public.orders SET qty = 9000000000 WHERE id = 30")
    result, failures = load(shop, table, DAY2)
    assert result.success, failures
    assert changes_recorded(result) == ["widened column QTY from NUMBER(10,0) to NUMBER(19,0)"]
    assert column_types(shop)["QTY"] == ("NUMBER", 19, 0)
    assert all(d.matches for d in shop.reconcile([DAY1, DAY2], table=table))


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_a_dropped_column_is_kept_or_dropped_by_policy_and_the_days_match(shop, policy):
    table = orders(policy)
    assert load(shop, table, DAY1)[0].success
    shop.pg("ALTER TABLE public.orders DROP COLUMN note")
    result, failures = load(shop, table, DAY2)
    assert result.success, failures
    if policy == "keep":
        assert "NOTE" in column_types(shop)
        assert changes_recorded(result) == [
            "column NOTE is no longer in PostgreSQL: kept it in Snowflake, NULL in rows loaded from now on"
        ]
        notes = shop.snowflake(
            'SELECT TO_VARCHAR(TO_DATE("CREATED_AT")), COUNT("NOTE") FROM "ORDERS" GROUP BY 1 ORDER BY 1'
        )
        assert notes == [(DAY1, 24), (DAY2, 0)]  # old days keep their values
    else:
        assert "NOTE" not in column_types(shop)
        assert changes_recorded(result) == ["column NOTE is no longer in PostgreSQL: dropped it in Snowflake"]
    # the fingerprints and checks compare the source's current columns, on both days
    assert all(d.matches for d in shop.reconcile([DAY1, DAY2], table=table))


def test_a_rename_is_a_drop_and_an_add_and_is_said_to_be_one(shop):
    table = orders()
    assert load(shop, table, DAY1)[0].success
    shop.pg("ALTER TABLE public.orders RENAME COLUMN note TO remark")
    result, failures = load(shop, table, DAY2)
    assert result.success, failures
    recorded = changes_recorded(result)
    assert recorded[:2] == [
        "added column REMARK VARCHAR",
        "column NOTE is no longer in PostgreSQL: kept it in Snowflake, NULL in rows loaded from now on",
    ]
    assert "if REMARK is NOTE renamed, the rename is this drop and add" in recorded[2]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "ALTER TABLE public.orders ALTER COLUMN amount TYPE numeric(12,4)",
            "AMOUNT (NUMBER/12/2 in Snowflake, NUMBER(12,4)",
        ),
        (
            "ALTER TABLE public.orders ALTER COLUMN amount TYPE numeric(10,2)",
            "AMOUNT (NUMBER/12/2 in Snowflake, NUMBER(10,2)",
        ),
        (
            "ALTER TABLE public.orders ALTER COLUMN qty TYPE text",
            "QTY (NUMBER/10/0 in Snowflake, VARCHAR from PostgreSQL",
        ),
    ],
)
def test_a_change_snowflake_cannot_make_in_place_stops_the_table_and_changes_nothing(shop, change, expected):
    table = orders()
    assert load(shop, table, DAY1)[0].success
    before = shop.snowflake('SELECT * FROM "ORDERS" ORDER BY "ID"'), column_types(shop)
    shop.pg(change)
    result, [message] = load(shop, table, DAY1)
    assert not result.success and not [e for e in result.all_events if e.is_step_up_for_retry]
    assert f"Column type(s) changed for {expected}" in message and "Nothing was loaded" in message
    assert "alter-table-column" in message
    assert (shop.snowflake('SELECT * FROM "ORDERS" ORDER BY "ID"'), column_types(shop)) == before
