"""A naive `timestamp` partition column on a server whose TimeZone is not UTC: every per-day read (the source
observation, both drift tiers, the fingerprints) counts UTC wall-clock days, whole and in bursts."""

from datetime import UTC, datetime

import pytest

from datavault_analytics.components.datavault_table import DataVaultTable
from datavault_analytics.settings import Settings
from datavault_analytics.table.day_window import DayWindow, day_windows

DAYS = ["2026-03-07", "2026-03-08", "2026-03-09", "2026-10-31", "2026-11-01"]


@pytest.fixture
def events(pipeline):
    pipeline.pg(f"ALTER DATABASE {pipeline.database} SET timezone = 'America/New_York'")
    pipeline.pg(f"ALTER DATABASE {pipeline.database} SET datestyle = 'SQL, DMY'")
    pipeline.pg(
        "CREATE TABLE public.events (id bigint PRIMARY KEY, at timestamp NOT NULL, updated_at timestamp, "
        "note text); CREATE INDEX ON public.events (at) INCLUDE (updated_at)"
    )
    # dense rows from UTC midnight (slices reach their row limit), the last microsecond before it, the next
    # midnight, and New York's two DST changes (a wall-clock hour that does not exist there, one that repeats)
    pipeline.pg(
        "INSERT INTO public.events SELECT n, TIMESTAMP '2026-03-08 00:00:00' + n * INTERVAL '7 ms', "
        "TIMESTAMP '2026-03-10 12:00:00' - n * INTERVAL '1 s', 'n' || n FROM generate_series(0, 2999) AS n"
    )
    pipeline.pg(
        "INSERT INTO public.events VALUES (10001, '2026-03-07 23:59:59.999999', NULL, 'before'), "
        "(10002, '2026-03-09 00:00:00', '2026-03-09 00:00:00', 'next'), (10003, '2026-03-08 02:30:00', NULL, 'gap'), "
        "(10004, '2026-11-01 01:30:00', NULL, 'twice'), (10005, '2026-11-01 05:59:59', NULL, 'after'), "
        "(10006, '2026-10-31 23:30:00', NULL, 'eve')"
    )
    component = DataVaultTable.resolve_from_dict(
        {
            "table": "public.events",
            "partition_column": "at",
            "primary_key": ["id"],
            "updated_at_column": "updated_at",
            "start_date": "2026-01-01",
        }
    )
    return pipeline, component.pipeline(Settings.from_environment())


def wall_clock_days(pipeline) -> dict[str, tuple[int, datetime, datetime | None]]:
    """Grouped by the value's own date (to_char of a naive timestamp involves no time zone)."""
    rows = pipeline.pg(
        "SELECT to_char(at, 'YYYY-MM-DD'), count(*), max(at), max(updated_at) FROM public.events GROUP BY 1"
    )
    return {day: (n, latest, latest_update) for day, n, latest, latest_update in rows}


@pytest.mark.parametrize("max_burst_ms", [0.3, 0.0], ids=["bursts", "whole"])
def test_a_naive_partition_column_is_read_by_utc_days_on_a_new_york_server(events, max_burst_ms):
    pipeline, table = events
    expected = wall_clock_days(pipeline)
    assert expected["2026-03-08"][0] == 3001 and expected["2026-11-01"][0] == 2

    with pipeline.configured("postgres", table=table) as r:
        postgres = r.postgres.model_copy(update={"max_burst_ms": max_burst_ms})
        summaries = postgres.day_summaries(DayWindow.for_key(DAYS[0]), DayWindow.for_key(DAYS[-1]))
        stats = postgres.day_stats(day_windows(DAYS))
        fingerprints = postgres.fingerprints(day_windows(DAYS), postgres.source_columns())

    assert {day: s.rows for day, s in summaries.items()} == {d: n for d, (n, _, _) in expected.items()}
    for day in DAYS:
        rows, latest, latest_update = expected.get(day, (0, None, None))
        assert stats[day]["rows"] == rows == fingerprints[day].rows
        assert stats[day]["latest"] == (latest and latest.replace(tzinfo=UTC))
        assert stats[day]["latest_update"] == (latest_update and latest_update.replace(tzinfo=UTC))
    assert summaries["2026-03-08"].latest_update_us == int(
        datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp() * 1e6
    )


def test_the_checks_pass_for_a_naive_partition_column_loaded_on_a_new_york_server(events):
    import dagster as dg

    from datavault_analytics.components.datavault_table import build_table_definitions

    pipeline, table = events
    defs = build_table_definitions(table)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=pipeline.resources,
        selection=dg.AssetSelection.assets(table.stage_key, table.snowflake_key),
        tags={
            "dagster/asset_partition_range_start": "2026-03-07",
            "dagster/asset_partition_range_end": "2026-03-09",
        },
        instance=pipeline.instance,
    )
    evaluations = result.get_asset_check_evaluations()
    assert result.success and evaluations and all(e.passed for e in evaluations)
    days = pipeline.reconcile(["2026-03-07", "2026-03-08", "2026-03-09"], table=table)
    assert [d.snowflake_rows for d in days] == [1, 3001, 1] and all(d.matches for d in days)


@pytest.mark.parametrize(
    "max_burst_ms, alone_burst_ms",
    [(0.0, 0.0), (0.3, 0.0), (0.3, 25.0)],
    ids=["whole", "bursts", "alone: runs of days"],
)
def test_a_table_whose_columns_are_named_as_the_counts_own_names_is_counted_right(
    pipeline, max_burst_ms, alone_burst_ms
):
    """Every per-day count reads the day's bounds from its own list of days, never a column of the table: a
    date column named `d` made every day of such a table count 0 rows, so the drift scan found unloaded days
    equal and deletions unseen (the soak's table of the new types)."""
    pipeline.pg(
        "CREATE TABLE public.named (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, updated_at "
        "timestamptz, d date, s text, c integer, u integer, piece text, day_start timestamptz, "
        "datavault_days text); CREATE INDEX ON public.named (created_at) INCLUDE (updated_at)"
    )
    pipeline.pg(
        "INSERT INTO public.named SELECT n, TIMESTAMPTZ '2026-03-07 00:00:00+00' + n * INTERVAL '1 min', NULL, "
        "DATE '2001-01-01', 's', 1, 2, 'p', TIMESTAMPTZ '2001-01-01 00:00:00+00', 'x' "
        "FROM generate_series(0, 3 * 1440 - 1) AS n"
    )
    table = DataVaultTable.resolve_from_dict(
        {
            "table": "public.named",
            "partition_column": "created_at",
            "primary_key": ["id"],
            "updated_at_column": "updated_at",
            "start_date": "2026-01-01",
        }
    ).pipeline(Settings.from_environment())
    with pipeline.configured("postgres", table=table) as r:
        postgres = r.postgres.model_copy(
            update={"max_burst_ms": max_burst_ms, "alone_burst_ms": alone_burst_ms}
        )
        summaries = postgres.day_summaries(DayWindow.for_key(DAYS[0]), DayWindow.for_key(DAYS[2]))
        stats = postgres.day_stats(day_windows(DAYS[:3]))
    assert {day: s.rows for day, s in summaries.items()} == dict.fromkeys(DAYS[:3], 1440)
    assert [stats[day]["rows"] for day in DAYS[:3]] == [1440] * 3
