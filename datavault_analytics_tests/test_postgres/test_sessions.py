"""Every session pins what the pipeline's reads rely on, so a server's or database's defaults change nothing."""

from datetime import date

import dagster as dg

from datavault_analytics.components.datavault_table import configured_table
from datavault_analytics.pipeline.assets import build_table_assets
from datavault_analytics.pipeline.checks import build_table_checks
from datavault_analytics.postgres.sessions import PINNED_PARAMETERS
from datavault_analytics_tests.records import RECORDS

HOSTILE_DEFAULTS = {
    "timezone": "Asia/Kathmandu",  # +05:45: no whole-hour offset hides a wrong day
    "datestyle": "German, DMY",
    "intervalstyle": "sql_standard",
    "bytea_output": "escape",
    "extra_float_digits": "-3",
}
DAYS = [date(2026, 3, 28), date(2026, 3, 29)]  # Europe's DST change on the second
KEYS = [d.isoformat() for d in DAYS]


def test_a_session_of_ours_pins_each_parameter_whatever_the_database_defaults(pipeline):
    for name, value in HOSTILE_DEFAULTS.items():
        pipeline.pg(f"ALTER DATABASE {pipeline.database} SET {name} = '{value}'")
    with pipeline.configured("postgres") as r, r.postgres.connect() as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in PINNED_PARAMETERS}
    assert shown == {
        "TimeZone": "UTC",
        "DateStyle": "ISO, YMD",
        "IntervalStyle": "iso_8601",
        "bytea_output": "hex",
        "extra_float_digits": "3",
    }


def test_both_shipped_tables_load_exact_from_a_database_whose_defaults_are_not_utc_or_iso(pipeline):
    for name, value in HOSTILE_DEFAULTS.items():
        pipeline.pg(f"ALTER DATABASE {pipeline.database} SET {name} = '{value}'")
    pipeline.seed(DAYS, rows_per_day=200)
    pipeline.seed_retrievals(DAYS, rows_per_day=150)
    for table in (RECORDS, configured_table("retrieval_log")):
        result = dg.materialize(
            [*build_table_assets(table), build_table_checks(table)],
            resources=pipeline.resources,
            selection=dg.AssetSelection.assets(table.stage_key, table.snowflake_key),
            tags={
                "dagster/asset_partition_range_start": KEYS[0],
                "dagster/asset_partition_range_end": KEYS[-1],
            },
            instance=pipeline.instance,
        )
        evaluations = result.get_asset_check_evaluations()
        assert result.success and len(evaluations) == 8 and all(e.passed for e in evaluations), table.name
        days = pipeline.reconcile(KEYS, table=table)
        assert all(d.matches and d.postgres_rows > 0 for d in days), [d.difference() for d in days]
    # and by a reader of its own: the payload, byte for byte, day by day
    for key in KEYS:
        assert pipeline.source_rows(key) == pipeline.snowflake_rows(key) != []
