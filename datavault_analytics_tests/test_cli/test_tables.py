"""`datavault-analytics tables check`: every problem of a table at once, before its first run."""

from datavault_analytics import cli
from datavault_analytics.cli.tables import check_table
from datavault_analytics.components.datavault_table import DataVaultTable
from datavault_analytics.settings import Settings


def orders_table(**attributes):
    return DataVaultTable.resolve_from_dict(
        {"table": "shop.orders", "partition_column": "created_at", "primary_key": ["id"], **attributes}
    ).pipeline(Settings.from_environment())


def test_the_shipped_tables_check_out_with_their_columns_listed(pipeline, capsys):
    code = cli.main(["tables", "check"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "records (public.records -> Snowflake RECORDS): ok" in out
    assert "column   ciphertext bytea -> BINARY" in out and "2 of 2 tables can be loaded" in out


def test_every_problem_of_a_new_table_is_reported_at_once(pipeline):
    pipeline.pg("CREATE SCHEMA shop")
    pipeline.pg(
        "CREATE TABLE shop.orders (order_id bigint, created_at timestamptz, total numeric(12,2), "
        'spot point, "Note" text, items text[])'
    )
    table = orders_table(primary_key=["id"], exclude_columns=["ssn"])
    with pipeline.configured("postgres", table=table) as r:
        report = check_table(table, r.postgres)
    text = "\n".join(report.lines())
    assert len(report.problems) == 5, text
    assert "primary_key='id' is not a column of shop.orders" in text
    assert "'ssn' (in exclude_columns or column_types) is not a column of shop.orders" in text
    assert "partition_column='created_at' is nullable" in text
    assert "Column 'spot' has PostgreSQL type 'point', which has no Snowflake mapping" in text
    assert "Column 'Note' of shop.orders is not a plain lower-case identifier" in text
    assert 'CREATE INDEX CONCURRENTLY orders_created_at_idx ON "shop"."orders" (created_at);' in text
    assert "no unique index covers primary_key ['id']" in text
    assert "column   total numeric(12,2) -> NUMBER(12,2)" in text
    assert "column   items text[] -> VARCHAR" in text


def test_a_table_fixed_as_told_checks_out_and_loads(pipeline):
    pipeline.pg("CREATE SCHEMA shop")
    pipeline.pg(
        "CREATE TABLE shop.orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, "
        "total numeric(12,2), ssn text)"
    )
    pipeline.pg("CREATE INDEX CONCURRENTLY orders_created_at_idx ON shop.orders (created_at)")
    pipeline.pg("INSERT INTO shop.orders VALUES (1, '2026-02-01 10:00+00', 12.50, '123-45-6789')")
    table = orders_table(exclude_columns=["ssn"], start_date="2026-01-01")
    with pipeline.configured("postgres", table=table) as r:
        report = check_table(table, r.postgres)
    assert (report.problems, report.warnings) == ([], []), report.lines()
    assert "ssn text -> excluded" in "\n".join(report.lines())
    assert pipeline.materialize("2026-02-01", table=table).success
    assert pipeline.snowflake('SELECT "ID", "TOTAL" FROM "ORDERS"') == [
        (1, __import__("decimal").Decimal("12.50"))
    ]
    columns = pipeline.snowflake(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'ORDERS'",
        (pipeline.sf_schema,),
    )
    assert "SSN" not in {c for (c,) in columns}


def test_a_view_is_checked_with_a_warning_that_its_nulls_cannot_be_seen(pipeline):
    pipeline.pg("CREATE SCHEMA shop")
    pipeline.pg(
        "CREATE TABLE shop.orders_data (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, ssn text)"
    )
    pipeline.pg("CREATE VIEW shop.orders AS SELECT id, created_at FROM shop.orders_data")
    table = orders_table()
    with pipeline.configured("postgres", table=table) as r:
        report = check_table(table, r.postgres)
        assert [c.name for c in r.postgres.source_columns()] == ["id", "created_at"]
    assert report.problems == [], report.lines()
    assert any("shop.orders is a view" in w for w in report.warnings), report.lines()
