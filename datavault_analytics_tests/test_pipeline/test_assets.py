"""The three assets end to end on real PostgreSQL, S3 (moto) and Snowflake (fakesnow)."""

import re
import uuid
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq

from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.stage.io_manager import S3StageIOManager
from datavault_analytics_tests import records
from datavault_analytics_tests.pipeline_harness import RECORDS_COLUMNS


def small_files(pipeline) -> S3StageIOManager:
    """The pipeline's stage, cutting a day into files of about 1 MB."""
    return S3StageIOManager(
        stage=pipeline.resources["s3_stage"],
        locks=pipeline.resources["partition_locks"],
        target_file_size_mb=1,
        row_group_rows=1000,
    )


DAY = "2026-11-01"
DAY_DATE = date(2026, 11, 1)


def test_a_partition_moves_byte_for_byte(pipeline):
    pipeline.seed([DAY_DATE, DAY_DATE + timedelta(days=1)], rows_per_day=300)
    # Awkward payloads next to the seeded ciphertext: NUL, 0xFF, invalid UTF-8, rows at both edges of the day.
    start = datetime(2026, 11, 1, tzinfo=UTC)
    pipeline.insert(str(uuid.uuid4()), start, b"\x00\x00\xff\xfe\x80invalid\xc3\x28")
    pipeline.insert(
        str(uuid.uuid4()), start + timedelta(days=1) - timedelta(microseconds=1), bytes(range(256))
    )

    result = pipeline.materialize(DAY)

    assert result.success
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)
    assert len(pipeline.source_rows(DAY)) == 302
    # Only the day's rows: the neighbouring day was not loaded.
    assert pipeline.snowflake('SELECT COUNT(*) FROM "RECORDS"') == [(302,)]
    [day] = pipeline.reconcile([DAY])
    assert day.matches, day.difference()

    edges = pipeline.snowflake('SELECT MIN("CREATED_AT"), MAX("CREATED_AT") FROM "RECORDS"')[0]
    assert edges == (datetime(2026, 11, 1, 0, 0), datetime(2026, 11, 1, 23, 59, 59, 999999))


def test_materialization_records_standard_metadata(pipeline):
    pipeline.seed([DAY_DATE], rows_per_day=50)

    result = pipeline.materialize(DAY)

    [stage] = result.asset_materializations_for_node("s3__datavault__records")
    [loaded] = result.asset_materializations_for_node("snowflake__datavault__records")
    assert stage.partition == DAY and loaded.partition == DAY
    assert stage.metadata["dagster/row_count"].value == 50
    assert loaded.metadata["dagster/row_count"].value == 50
    assert stage.metadata["dagster/uri"].value == f"{pipeline.stage_uri}/records/dt={DAY}"
    [uri] = stage.metadata["staged_uris"].value
    assert re.fullmatch(rf"{pipeline.stage_uri}/records/dt={DAY}/part-00000-\w{{12}}\.parquet", uri)
    assert stage.metadata["staged_bytes"].value > 0
    assert (
        stage.metadata["partition_window"].value == "[2026-11-01T00:00:00+00:00, 2026-11-02T00:00:00+00:00)"
    )
    assert stage.metadata["stage_seconds"].value > 0 and loaded.metadata["load_seconds"].value > 0
    columns = {c.name: c.type for c in loaded.metadata["dagster/column_schema"].schema.columns}
    assert columns == {
        "id": "VARCHAR(36)",
        "owner_id": "NUMBER(19,0)",
        "key": "VARCHAR",
        "ciphertext": "BINARY",
        "nonce": "BINARY",
        "created_at": "TIMESTAMP_NTZ",
        "updated_at": "TIMESTAMP_NTZ",
    }


def test_rematerializing_reflects_deletes_updates_and_inserts_without_duplicates(pipeline):
    pipeline.seed([DAY_DATE], rows_per_day=200)
    assert pipeline.materialize(DAY).success
    deleted, updated = pipeline.pg("SELECT id::text FROM records ORDER BY id LIMIT 2")
    pipeline.pg("DELETE FROM records WHERE id = %s", deleted)
    pipeline.pg(
        "UPDATE records SET ciphertext = %s, updated_at = now() WHERE id = %s",
        (b"\x01new\x00payload", *updated),
    )
    pipeline.insert(str(uuid.uuid4()), datetime(2026, 11, 1, 12, tzinfo=UTC), b"late row")

    for _ in range(2):  # twice: a second identical run changes nothing
        assert pipeline.materialize(DAY).success
        assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)

    assert pipeline.snowflake('SELECT COUNT(*), COUNT(DISTINCT "ID") FROM "RECORDS"') == [(200, 200)]
    assert pipeline.snowflake('SELECT COUNT(*) FROM "RECORDS" WHERE "ID" = %s', deleted) == [(0,)]
    assert pipeline.snowflake('SELECT "CIPHERTEXT" FROM "RECORDS" WHERE "ID" = %s', updated) == [
        (bytearray(b"\x01new\x00payload"),)
    ]


def test_an_empty_day_loads_zero_rows_and_clears_rows_deleted_upstream(pipeline):
    assert pipeline.materialize(DAY).success  # never had rows: nothing to stage, nothing to load
    assert pipeline.stage_keys(DAY) == [f"analytics/records/dt={DAY}/_manifest.json"]

    pipeline.seed([DAY_DATE], rows_per_day=20)
    assert pipeline.materialize(DAY).success
    pipeline.pg("DELETE FROM records")
    result = pipeline.materialize(DAY)

    assert result.success
    assert pipeline.snowflake('SELECT COUNT(*) FROM "RECORDS"') == [(0,)]
    # The old part file is gone too, so nothing stale can be loaded later.
    assert pipeline.stage_keys(DAY) == [f"analytics/records/dt={DAY}/_manifest.json"]
    [loaded] = result.asset_materializations_for_node("snowflake__datavault__records")
    assert loaded.metadata["dagster/row_count"].value == 0


def test_a_day_larger_than_one_file_is_staged_as_several_files_and_all_are_loaded(pipeline):
    pipeline.seed([DAY_DATE], rows_per_day=12_000)  # ~4 MB of ciphertext
    pipeline.with_resources(s3_stage_io_manager=small_files(pipeline))

    result = pipeline.materialize(DAY)

    parts = [k for k in pipeline.stage_keys(DAY) if k.endswith(".parquet")]
    assert len(parts) >= 3
    [staging] = {re.fullmatch(r".*/part-\d{5}-(\w+)\.parquet", k)[1] for k in parts}  # one staging's files
    assert parts == [f"analytics/records/dt={DAY}/part-{i:05d}-{staging}.parquet" for i in range(len(parts))]
    [loaded] = result.asset_materializations_for_node("snowflake__datavault__records")
    assert loaded.metadata["files_loaded"].value == len(parts)
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)


def test_copy_names_a_days_files_in_batches_within_one_transaction(pipeline, snowflake_server, monkeypatch):
    """Snowflake takes at most 1,000 names in FILES=(...): a day with more is loaded by several COPY INTO
    statements in the day's one transaction. The limit is lowered to 2 here so that a small day shows it."""
    import re

    from datavault_analytics.snowflake import loader as snowflake_module
    from datavault_analytics_tests.test_faults.faultkit import HttpProxy

    pipeline.seed([DAY_DATE], rows_per_day=12_000)
    monkeypatch.setattr(snowflake_module, "MAX_FILES_PER_COPY", 2)
    with HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as proxy:
        monkeypatch.setenv("SNOWFLAKE_PORT", str(proxy.port))
        pipeline.resources = build_resources(Settings.from_environment("prod"))
        pipeline.with_resources(s3_stage_io_manager=small_files(pipeline))
        assert pipeline.materialize(DAY).success
        statements = [r.sql for r in proxy.requests if r.sql]

    parts = [k.rsplit("/", 1)[1] for k in pipeline.stage_keys(DAY) if k.endswith(".parquet")]
    assert len(parts) >= 3
    copies = [s for s in statements if s.startswith("COPY INTO")]
    named = [re.findall(r"'([^']+)'", re.search(r"FILES=\(([^)]*)\)", c).group(1)) for c in copies]
    assert [len(names) for names in named] == [len(parts[i : i + 2]) for i in range(0, len(parts), 2)]
    assert sorted(sum(named, [])) == sorted(parts)
    # All of them between the day's one BEGIN and its COMMIT.
    first, last = statements.index(copies[0]), statements.index(copies[-1])
    assert [
        s
        for s in statements[:first]
        if s
        == f"BEGIN TRANSACTION NAME DATAVAULT_LOAD_RECORDS_{DAY.replace('-', '')}_" + proxy_run_id(statements)
    ] and "COMMIT" in statements[last:]
    assert not [s for s in statements[first:last] if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)


def proxy_run_id(statements: list[str]) -> str:
    """The run id, upper case without dashes, as the load's QUERY_TAG names it."""
    import re

    [tag] = {
        m.group(1)
        for s in statements
        if (m := re.search(r"QUERY_TAG = 'datavault-analytics load \S+ run ([\w-]{36})", s))
    }
    return tag.replace("-", "").upper()


def test_a_new_nullable_column_flows_through_on_its_own(pipeline):
    pipeline.seed([DAY_DATE, DAY_DATE + timedelta(days=1)], rows_per_day=30)
    assert pipeline.materialize(DAY).success
    pipeline.pg("ALTER TABLE records ADD COLUMN region text")
    pipeline.pg("UPDATE records SET region = 'eu-west' WHERE created_at >= '2026-11-02'")

    assert pipeline.materialize("2026-11-02").success

    assert pipeline.snowflake(
        'SELECT "REGION", COUNT(*) FROM "RECORDS" GROUP BY 1 ORDER BY 1 NULLS FIRST'
    ) == [(None, 30), ("eu-west", 30)]
    # And re-running the earlier day now carries the column too, with nothing else changed.
    assert pipeline.materialize(DAY).success
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)


def test_a_range_of_days_runs_as_one_run_and_each_day_is_replaced_exactly(pipeline):
    days = [DAY_DATE + timedelta(days=i) for i in range(3)]
    pipeline.seed(days, rows_per_day=40)
    pipeline.seed(days[1:2], rows_per_day=7, seed=99)  # the middle day has more rows

    result = pipeline.materialize("2026-11-01", "2026-11-03")

    assert result.success
    loads = result.asset_materializations_for_node("snowflake__datavault__records")
    assert sorted(m.partition for m in loads) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    # Each day carries its own figures (the row-count plot of the schedule's 3-day runs) ...
    by_day = {m.partition: m.metadata for m in loads}
    assert {
        d: (m["dagster/row_count"].value, m["dagster/partition_row_count"].value) for d, m in by_day.items()
    } == {
        "2026-11-01": (40, 40),
        "2026-11-02": (47, 47),
        "2026-11-03": (40, 40),
    }
    # ... on both assets, and no run-wide figure stands on a day's page.
    staged = {
        m.partition: m.metadata for m in result.asset_materializations_for_node("s3__datavault__records")
    }
    assert {d: (m["dagster/row_count"].value, len(m["staged_uris"].value)) for d, m in staged.items()} == {
        "2026-11-01": (40, 1),
        "2026-11-02": (47, 1),
        "2026-11-03": (40, 1),
    }
    assert staged["2026-11-02"]["dagster/uri"].value.endswith("/records/dt=2026-11-02")
    assert staged["2026-11-02"]["staged_bytes"].value != staged["2026-11-01"]["staged_bytes"].value
    assert all("rows_in_run" not in m and "days" not in m for m in [*by_day.values(), *staged.values()])
    assert all("dagster/column_schema" in m for m in [*by_day.values(), *staged.values()])
    assert (
        by_day["2026-11-02"]["partition_window"].value
        == "[2026-11-02T00:00:00+00:00, 2026-11-03T00:00:00+00:00)"
    )
    assert by_day["2026-11-02"]["dagster/uri"].value.endswith("/records/dt=2026-11-02")
    assert all(day.matches for day in pipeline.reconcile(["2026-11-01", "2026-11-02", "2026-11-03"]))


def test_analysts_can_read_the_stage_as_a_lazy_polars_frame(pipeline):
    import dagster as dg
    import polars as pl

    pipeline.seed([DAY_DATE], rows_per_day=25)
    assert pipeline.materialize(DAY).success

    @dg.asset(partitions_def=records.PARTITIONS, ins={"staged": dg.AssetIn(key=records.STAGE_KEY)})
    def owners_per_day(staged: pl.LazyFrame) -> None:
        frame = staged.select(
            pl.len().alias("rows"), pl.col("ciphertext").bin.size().min().alias("smallest")
        ).collect()
        assert frame["rows"][0] == 25 and frame["smallest"][0] >= 200

    result = dg.materialize(
        [*pipeline_assets(), owners_per_day],
        resources=pipeline.resources,
        selection=[owners_per_day],
        partition_key=DAY,
    )
    assert result.success


def pipeline_assets():
    return records.ALL_ASSETS


def test_staged_files_are_parquet_with_the_source_schema_and_zstd_outside_the_payload(pipeline):
    import pyarrow.fs as pafs

    pipeline.seed([DAY_DATE], rows_per_day=10)
    assert pipeline.materialize(DAY, selection=[records.STAGE_KEY]).success
    fs = pafs.S3FileSystem(
        endpoint_override=pipeline.s3_endpoint.removeprefix("http://"),
        scheme="http",
        access_key="test",
        secret_key="test",
        region="us-east-1",
    )
    [part] = [k for k in pipeline.stage_keys(DAY) if k.endswith(".parquet")]
    metadata = pq.read_metadata(f"{pipeline.bucket}/{part}", filesystem=fs)
    assert metadata.num_rows == 10
    compression = {
        metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i).compression
        for i in range(metadata.num_columns)
    }
    # The random payload is stored as is; everything else is zstd.
    assert compression == {
        "id": "ZSTD",
        "owner_id": "ZSTD",
        "key": "ZSTD",
        "ciphertext": "UNCOMPRESSED",
        "nonce": "UNCOMPRESSED",
        "created_at": "ZSTD",
        "updated_at": "ZSTD",
    }
    assert metadata.schema.to_arrow_schema().names == RECORDS_COLUMNS


def test_observing_the_source_records_each_recent_day_with_its_rows_and_latest_created_at(pipeline):
    import dagster as dg

    from datavault_analytics.local_stack.seed import last_full_days

    [yesterday] = last_full_days(1)
    pipeline.seed([yesterday], rows_per_day=15)
    latest, latest_update = pipeline.pg("SELECT max(created_at), max(updated_at) FROM records")[0]

    result = dg.materialize(pipeline_assets(), resources=pipeline.resources, selection=[records.SOURCE_KEY])

    observations = {
        event.event_specific_data.asset_observation.partition: event.event_specific_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    }
    assert len(observations) == records.RECORDS.settings.observed_days
    seen = observations[yesterday.isoformat()]
    assert seen.metadata["dagster/row_count"].value == 15
    assert seen.metadata["latest_created_at"].value == latest.isoformat()
    assert seen.tags["dagster/data_version"] == (
        f"rows=15;latest={latest.isoformat()};updated={latest_update.isoformat() if latest_update else None}"
    )
    empty_days = [o for day, o in observations.items() if day != yesterday.isoformat()]
    assert all(o.metadata["dagster/row_count"].value == 0 for o in empty_days)


def test_every_asset_shows_the_columns_with_their_postgresql_comments(pipeline):
    import dagster as dg

    pipeline.seed([DAY_DATE], rows_per_day=5)
    pipeline.pg("COMMENT ON COLUMN records.ciphertext IS 'AES-GCM ciphertext, never decrypted here'")
    observed = dg.materialize(pipeline_assets(), resources=pipeline.resources, selection=[records.SOURCE_KEY])
    [observation] = [
        e.event_specific_data.asset_observation
        for e in observed.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ][-1:]
    assert pipeline.materialize(DAY).success
    [materialization] = pipeline.instance.fetch_materializations(records.SNOWFLAKE_KEY, limit=1).records
    [staged] = pipeline.instance.fetch_materializations(records.STAGE_KEY, limit=1).records
    schemas = {
        "postgres": observation.metadata["dagster/column_schema"].value,
        "s3": staged.asset_materialization.metadata["dagster/column_schema"].value,
        "snowflake": materialization.asset_materialization.metadata["dagster/column_schema"].value,
    }
    for system, schema in schemas.items():
        assert [c.name for c in schema.columns] == RECORDS_COLUMNS, system
        described = {c.name: c.description for c in schema.columns if c.description}
        assert described == {"ciphertext": "AES-GCM ciphertext, never decrypted here"}, system
    assert {c.name: c.type for c in schemas["snowflake"].columns}["ciphertext"] == "BINARY"
    assert {c.name: c.type for c in schemas["postgres"].columns}["ciphertext"] == "bytea"


def test_an_empty_day_reads_as_an_empty_lazy_frame_with_the_staged_columns(pipeline):
    import polars as pl

    assert pipeline.materialize(DAY, selection=[records.STAGE_KEY]).success

    with pipeline.configured("s3_stage") as r:
        frame = r.s3_stage.scan([r.s3_stage.read_manifest(r.s3_stage.storage(), DAY)]).collect()

    assert frame.height == 0
    assert frame.schema["ciphertext"] == pl.Binary and frame.schema["created_at"] == pl.Datetime("us", "UTC")
