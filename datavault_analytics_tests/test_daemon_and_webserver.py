"""Production-like, end to end: the code server, the Dagster daemon and the webserver as real processes.

One set of processes per module, on an instance stored in PostgreSQL (the local stack's dagster.yaml:
dagster-postgres, queued runs, pools, freshness), with the pipeline pointed at the session's PostgreSQL,
S3 (moto) and Snowflake (fakesnow) servers. The daemon ticks the daily schedule (every minute here) and
launches the run; everything a user sees is asserted through the webserver's GraphQL API, a backfill is
launched through it as the UI does, and headless Chromium (browser.py) reads and pictures the lineage, the
checks' Partitions tab and the asset page.

`make screenshot` runs this module with DATAVAULT_SCREENSHOT_DIR=docs: the pictures the README and
docs/operations.md show.
"""

import json
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import expect

from datavault_analytics.local_stack.processes import free_port, port_answers
from datavault_analytics.names import CONTENT_HASH
from datavault_analytics_tests import records
from datavault_analytics_tests.browser import HEIGHT, WIDTH, browser_page
from datavault_analytics_tests.dagster_processes import (
    BIN,
    daemon_command,
    local_dagster,
    report_old_load,
    settled,
    wait_for,
)
from datavault_analytics_tests.pipeline_harness import Pipeline
from datavault_analytics_tests.records import SNOWFLAKE_KEY, SOURCE_KEY, STAGE_KEY

SCHEDULE = "datavault_records_daily_schedule"
CIPHERTEXT_COMMENT = "AES-GCM ciphertext, never decrypted here"
DAYS_PER_BACKFILL_RUN = 2


@dataclass
class Deployment:
    pipeline: Pipeline
    instance: dg.DagsterInstance
    webserver_port: int
    logs: list[Path]
    scheduled_days: list[str]
    backfill_days: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webserver_port}"

    def graphql(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def wait(self, condition: Callable[[], object], what: str, timeout: float = 240) -> object:
        return wait_for(condition, what, timeout, self.logs)

    def scheduled_run(self) -> dg.DagsterRun:
        def finished():
            runs = self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/schedule_name": SCHEDULE}))
            return next((r for r in runs if r.is_finished), None)

        return self.wait(finished, "the daemon to tick the schedule and finish its run")

    def asset_nodes(self) -> dict[str, dict]:
        data = self.graphql(ASSET_NODES)
        return {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}


def next_minute_cron() -> str:
    """A daily cron for the next whole minute at least 20 s away (UTC), so the daemon sees it coming."""
    at = datetime.now(UTC) + timedelta(seconds=80)
    return f"{at.minute} {at.hour} * * *"


@pytest.fixture(scope="module")
def deployment(pg_server, s3_endpoint, snowflake_server, tmp_path_factory):
    with local_dagster(pg_server, tmp_path_factory.mktemp("deployment")) as dagster:
        pipeline = Pipeline(pg_server, s3_endpoint, snowflake_server, dagster.patch)
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        scheduled = [yesterday - timedelta(days=i) for i in (2, 1, 0)]
        backfill = [yesterday - timedelta(days=i) for i in (13, 12, 11, 10)]
        pipeline.seed(scheduled + backfill, rows_per_day=30)
        pipeline.pg(f"COMMENT ON COLUMN records.ciphertext IS '{CIPHERTEXT_COMMENT}'")

        dagster.setenv(
            {
                # The partitions start where the data does, as the local stack's do.
                "DATAVAULT_START_DATE": str(min(scheduled + backfill)),
                # The daily schedule, at the next whole minute: one tick while the test runs.
                "DATAVAULT_SCHEDULE_CRON": next_minute_cron(),
                "DATAVAULT_BACKFILL_DAYS_PER_RUN": str(DAYS_PER_BACKFILL_RUN),
                "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
            }
        )
        instance = dagster.open_instance()
        # Before today's run, the table's latest load is days old: the daemon must find it failing.
        report_old_load(instance, SNOWFLAKE_KEY, str(scheduled[0]), days_ago=3)

        webserver_port = free_port()
        dagster.serve_code_location("datavault_analytics")
        dagster.start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(webserver_port),
            ],
        )
        dagster.start("daemon", daemon_command())
        deployment = Deployment(
            pipeline,
            instance,
            webserver_port,
            dagster.logs,
            [str(d) for d in scheduled],
            [str(d) for d in backfill],
        )

        def location_loaded():
            if not port_answers(webserver_port):
                return False
            entries = deployment.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
            return any(
                e["loadStatus"] == "LOADED" and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                for e in entries
            )

        deployment.wait(location_loaded, "the webserver to load the code location", 180)
        # The local instance turns off the first-visit "Join the Dagster community" dialog.
        assert deployment.graphql("{ shouldShowNux }") == {"shouldShowNux": False}
        yield deployment


WORKSPACE = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

ASSET_NODES = """
{ assetNodes {
    assetKey { path } dependencyKeys { path } kinds groupName description
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    metadataEntries { label ... on TableSchemaMetadataEntry { schema { columns { name type } } } }
    freshnessStatusInfo { freshnessStatus }
    internalFreshnessPolicy { __typename ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone } }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
} }
"""

CHECK_EXECUTIONS = """
query ($path: [String!]!, $name: String!, $partition: String) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $name, partition: $partition, limit: 5) {
    runId status partition evaluation { success description partition }
  }
}
"""

CHECK_PARTITION_STATUSES = """
query ($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) { assetChecksOrError { ... on AssetChecks { checks {
    name partitionStatuses { __typename
      ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } }
  } } } }
}
"""

SOURCE_OBSERVATIONS = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) { ... on Asset { assetObservations(limit: 1) { timestamp runId } } }
}
"""

ENTRIES = """
  label
  ... on IntMetadataEntry { intValue }
  ... on TextMetadataEntry { text }
  ... on PathMetadataEntry { path }
  ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
"""

CATALOG = f"""
query ($path: [String!]!, $partitions: [String!]) {{
  assetOrError(assetKey: {{path: $path}}) {{ ... on Asset {{
    assetMaterializations(partitions: $partitions) {{ partition runId metadataEntries {{ {ENTRIES} }} }}
    assetObservations(limit: 1) {{ metadataEntries {{ {ENTRIES} }} }}
  }} }}
  assetNodes(assetKeys: [{{path: $path}}]) {{ metadataEntries {{ {ENTRIES} }} }}
}}
"""

LAUNCH_BACKFILL = """
mutation ($partitions: [String!]!, $assets: [AssetKeyInput!]!) {
  launchPartitionBackfill(backfillParams: {partitionNames: $partitions, assetSelection: $assets}) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}
"""

BACKFILL = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status numPartitions } }
}
"""


def test_the_asset_graph_shows_lineage_kinds_owners_group_descriptions_and_the_table_schema(deployment):
    nodes = deployment.asset_nodes()
    source, stage, table = (nodes[k.to_user_string()] for k in (SOURCE_KEY, STAGE_KEY, SNOWFLAKE_KEY))

    assert stage["dependencyKeys"] == [{"path": SOURCE_KEY.path}]
    assert table["dependencyKeys"] == [{"path": STAGE_KEY.path}]
    assert (source["kinds"], sorted(stage["kinds"]), table["kinds"]) == (
        ["postgres"],
        ["parquet", "s3"],
        ["snowflake"],
    )
    for node in (stage, table):
        assert node["groupName"] == "datavault"
        assert node["owners"] == [{"__typename": "TeamAssetOwner", "team": "data-platform"}]
        assert node["description"]
        # The column schema comes from each materialization (the catalog's columns when the day was read);
        # the definition names the table it was built for.
        assert "datavault/table" in [m["label"] for m in node["metadataEntries"]]
    assert "DataVault backend" in source["description"] and "public.records" in source["description"]
    assert table["internalFreshnessPolicy"] == {
        "__typename": "CronFreshnessPolicy",
        "deadlineCron": "0 6 * * *",
        "lowerBoundDeltaSeconds": 6 * 3600,
        "timezone": "UTC",
    }
    assert sorted(c["name"] for c in table["assetChecksOrError"]["checks"]) == sorted(
        s.name for s in records.CHECK_SPECS
    )


def catalog(deployment: Deployment, key: dg.AssetKey, days: list[str]) -> tuple[dict, dict, dict]:
    """What the UI's catalog reads of `key`: each day's latest materialization's metadata, the latest
    observation's, and the definition's, each as {label: value}."""

    def values(entries: list[dict]) -> dict:
        return {
            e["label"]: next(
                (e[k] for k in ("intValue", "text", "path") if k in e), e.get("schema", {}).get("columns")
            )
            for e in entries
        }

    data = deployment.graphql(CATALOG, path=key.path, partitions=days)
    asset = data["assetOrError"]
    by_day: dict[str, dict] = {}
    for materialization in asset["assetMaterializations"]:  # newest first
        by_day.setdefault(materialization["partition"], values(materialization["metadataEntries"]))
    observed = values(asset["assetObservations"][0]["metadataEntries"]) if asset["assetObservations"] else {}
    return by_day, observed, values(data["assetNodes"][0]["metadataEntries"])


def test_the_daemon_finds_the_table_late_then_its_schedule_tick_loads_yesterday_and_freshness_passes(
    deployment,
):
    def freshness() -> str:
        return deployment.asset_nodes()[SNOWFLAKE_KEY.to_user_string()]["freshnessStatusInfo"][
            "freshnessStatus"
        ]

    # The last load is three days old: the daemon's freshness evaluation fails the table.
    deployment.wait(lambda: freshness() == "DEGRADED", "the freshness daemon to fail the stale table")

    run = deployment.scheduled_run()

    assert run.status == dg.DagsterRunStatus.SUCCESS, deployment.logs
    first, *_, yesterday = deployment.scheduled_days
    assert run.tags["dagster/asset_partition_range_start"] == first
    assert run.tags["dagster/asset_partition_range_end"] == yesterday
    for day in deployment.scheduled_days:
        assert deployment.pipeline.snowflake_rows(day) == deployment.pipeline.source_rows(day)
    deployment.wait(lambda: freshness() == "HEALTHY", "the freshness daemon to pass the table after the load")


def test_the_catalog_shows_each_days_rows_and_every_assets_columns_with_their_comments(deployment):
    """Through the webserver's GraphQL, as the catalog reads it: after the schedule's multi-day run, each day
    of both assets has its own row count (the row-count plot), the columns carry PostgreSQL's comments on all
    three assets, and each end names its table."""
    run = deployment.scheduled_run()
    assert run.status == dg.DagsterRunStatus.SUCCESS, deployment.logs
    days = deployment.scheduled_days
    deployment.wait(lambda: catalog(deployment, SOURCE_KEY, days)[1], "the source to be observed")
    expected_rows = {day: len(deployment.pipeline.source_rows(day)) for day in days}
    assert all(expected_rows.values())  # a run-wide figure (their sum) would then differ from each

    for key in (STAGE_KEY, SNOWFLAKE_KEY):
        by_day, _, _ = catalog(deployment, key, days)
        assert {d: by_day[d]["dagster/row_count"] for d in days} == expected_rows, key
        assert {d: by_day[d]["dagster/partition_row_count"] for d in days} == expected_rows, key
        for day in days:
            assert by_day[day]["dagster/uri"].endswith(f"/records/dt={day}"), (key, by_day[day])
            assert "rows_in_run" not in by_day[day]
            columns = {c["name"]: c for c in by_day[day]["dagster/column_schema"]}
            assert columns["ciphertext"]["description"] == CIPHERTEXT_COMMENT, key
    snowflake_day = catalog(deployment, SNOWFLAKE_KEY, days)[0][days[-1]]
    assert snowflake_day["dagster/table_name"].endswith(".RECORDS")
    assert {c["name"]: c["type"] for c in snowflake_day["dagster/column_schema"]}["ciphertext"] == "BINARY"

    _, observed, definition = catalog(deployment, SOURCE_KEY, days)
    assert definition["dagster/table_name"].endswith("public.records")
    source_columns = {c["name"]: c for c in observed["dagster/column_schema"]}
    assert source_columns["ciphertext"] == {
        "name": "ciphertext",
        "type": "bytea",
        "description": CIPHERTEXT_COMMENT,
    }


def test_the_ui_shows_every_check_passing_for_every_day_of_the_scheduled_run(deployment):
    run = deployment.scheduled_run()
    for spec in records.CHECK_SPECS:
        for day in deployment.scheduled_days:
            [execution] = [
                e
                for e in deployment.graphql(
                    CHECK_EXECUTIONS, path=SNOWFLAKE_KEY.path, name=spec.name, partition=day
                )["assetCheckExecutions"]
                if e["runId"] == run.run_id
            ]
            assert execution["status"] == "SUCCEEDED", execution
            assert execution["evaluation"]["success"] is True
            assert execution["evaluation"]["partition"] == day
            assert execution["evaluation"]["description"].startswith(f"{day}: ")


def verified_days(deployment: Deployment, check: str) -> dict[str, str]:
    """The check's partition view as the UI builds it: each day's status, from Dagster's own ranges."""
    [node] = deployment.graphql(CHECK_PARTITION_STATUSES, path=SNOWFLAKE_KEY.path)["assetNodes"]
    [found] = [c for c in node["assetChecksOrError"]["checks"] if c["name"] == check]
    days: dict[str, str] = {}
    for status in (found["partitionStatuses"] or {}).get("ranges", []):
        day, last = date.fromisoformat(status["startKey"]), date.fromisoformat(status["endKey"])
        while day <= last:
            days[str(day)] = status["status"]
            day += timedelta(days=1)
    return days


def test_the_check_partition_view_shows_every_loaded_day_verified(deployment):
    deployment.scheduled_run()
    deployment.wait(lambda: settled(deployment.instance), "every run to finish")
    # The scheduled run's days, and the days the drift sensor found missing and loaded: every loaded day,
    # and only those, shows as passed.
    loaded = deployment.instance.get_materialized_partitions(SNOWFLAKE_KEY)
    assert set(deployment.scheduled_days) <= loaded
    for spec in records.CHECK_SPECS:
        assert verified_days(deployment, spec.name) == dict.fromkeys(sorted(loaded), "SUCCEEDED"), spec.name


def test_a_backfill_launched_from_the_ui_runs_several_days_per_run_and_loads_each_day(deployment):
    deployment.scheduled_run()  # one thing at a time on a small machine
    launched = deployment.graphql(
        LAUNCH_BACKFILL,
        partitions=deployment.backfill_days,
        assets=[{"path": STAGE_KEY.path}, {"path": SNOWFLAKE_KEY.path}],
    )
    backfill_id = launched["launchPartitionBackfill"]["backfillId"]

    status = deployment.wait(
        lambda: (
            (s := deployment.graphql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]["status"])
            in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "COMPLETED")
            and s
        ),
        "the daemon to run the backfill",
        timeout=300,
    )

    assert status in ("COMPLETED_SUCCESS", "COMPLETED")
    runs = deployment.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    ranges = sorted(
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in runs
    )
    days = deployment.backfill_days
    assert ranges == [(days[0], days[1]), (days[2], days[3])]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert all(d.matches for d in deployment.pipeline.reconcile(days))


def screenshot_target(tmp_path: Path, name: str) -> Path:
    """Where a picture goes: docs/ under `make screenshot` (DATAVAULT_SCREENSHOT_DIR), else tmp_path."""
    folder = Path(os.environ.get("DATAVAULT_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def assert_picture(target: Path) -> None:
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(png) > 40_000, "a blank or loading page compresses to almost nothing"


def test_the_lineage_page_in_chromium_tells_the_assets_apart_and_shows_the_source_observed(
    deployment, tmp_path
):
    deployment.scheduled_run()
    deployment.wait(lambda: settled(deployment.instance), "every run to finish before the picture")
    # The drift sensor's scans observe the source: the UI's "Observed" time comes from these.
    observed = deployment.graphql(SOURCE_OBSERVATIONS, path=SOURCE_KEY.path)["assetOrError"][
        "assetObservations"
    ]
    assert observed and observed[0]["timestamp"], "the source was never observed"

    target = screenshot_target(tmp_path, "asset-lineage.png")
    with browser_page() as page:
        page.goto(f"{deployment.url}/asset-groups/datavault")
        # As a user does: the graph's settings button, then the Description and Freshness facets.
        page.locator("button:has([aria-label='config'])").click()
        facets = page.get_by_role("dialog")
        for facet in ("Description", "Freshness"):
            facets.get_by_text(facet, exact=True).click()
        facets.get_by_role("button", name="Save").click()
        expect(page.get_by_text("4 / 4 Passed").first).to_be_visible()
        page.wait_for_timeout(2000)  # the other nodes' live data, drawn after the first
        graph = page.inner_text("body")
        page.screenshot(path=target)

    # Each node says which system it is in: its kinds under it, and its description in it.
    for shown in ("Postgres", "S3", "Parquet", "Snowflake", "Observed", "Freshness"):
        assert shown in graph, f"{shown!r} not on the page: {graph[:2000]}"
    for described in ("table in PostgreSQL", "as Parquet files in the S3 stage", "in Snowflake (RECORDS)"):
        assert described in graph, f"{described!r} not on the page: {graph[:2000]}"
    assert_picture(target)


def test_the_check_partitions_tab_in_chromium_shows_every_loaded_day_passed(deployment, tmp_path):
    deployment.scheduled_run()
    deployment.wait(lambda: settled(deployment.instance), "every run to finish before the picture")
    loaded = deployment.instance.get_materialized_partitions(SNOWFLAKE_KEY)
    assert set(deployment.scheduled_days) <= loaded

    target = screenshot_target(tmp_path, "check-partitions.png")
    with browser_page() as page:
        page.goto(
            f"{deployment.url}/assets/{'/'.join(SNOWFLAKE_KEY.path)}?view=checks&checkDetail={CONTENT_HASH}"
        )
        expect(page.get_by_role("tab", name="Execution history")).to_be_visible()  # the check's own tabs
        page.get_by_role("tab", name="Partitions").last.click()  # the check's tab, not the asset's
        expect(page.get_by_text(f"Passed ({len(loaded)})", exact=True)).to_be_visible()
        for none in ("Failed (0)", "Execution Failed (0)", "In Progress (0)"):
            expect(page.get_by_text(none, exact=True)).to_be_visible()
        page.screenshot(path=target)
    assert_picture(target)


def test_the_snowflake_asset_page_in_chromium_shows_its_columns_with_the_postgresql_comments(
    deployment, tmp_path
):
    deployment.scheduled_run()
    deployment.wait(lambda: settled(deployment.instance), "every run to finish before the picture")
    target = screenshot_target(tmp_path, "asset-columns.png")
    with browser_page() as page:
        page.goto(f"{deployment.url}/assets/{'/'.join(SNOWFLAKE_KEY.path)}?view=overview")
        expect(page.get_by_text(CIPHERTEXT_COMMENT).first).to_be_visible()
        expect(page.get_by_text("BINARY").first).to_be_visible()
        page.wait_for_timeout(1000)
        page.screenshot(path=target)
    assert_picture(target)


def test_freshness_shows_on_the_asset_page_and_not_in_the_lineage(deployment, tmp_path):
    """Dagster 1.13's open-source UI draws a FreshnessPolicy's status on the asset's page only: the lineage's
    Freshness facet reads the older policies' data, and the catalog has no freshness column (it comes with
    asset health, a Dagster+ feature). docs/operations.md says so; this fails when that changes."""
    deployment.scheduled_run()
    deployment.wait(
        lambda: (
            deployment.asset_nodes()[SNOWFLAKE_KEY.to_user_string()]["freshnessStatusInfo"]["freshnessStatus"]
            == "HEALTHY"
        ),
        "the freshness daemon to pass the table",
    )
    target = screenshot_target(tmp_path, "asset-freshness.png")
    with browser_page() as page:
        page.goto(f"{deployment.url}/assets/{'/'.join(SNOWFLAKE_KEY.path)}")
        expect(page.get_by_text("Freshness policy").first).to_be_visible()
        expect(page.get_by_text("Passing").first).to_be_visible()
        page.screenshot(path=target)

        page.goto(f"{deployment.url}/asset-groups/datavault")
        page.evaluate(
            "facets => localStorage.setItem('asset-node-facets', JSON.stringify(facets))", ["freshness"]
        )
        page.reload()
        expect(page.get_by_text("Freshness").first).to_be_visible()
        page.wait_for_timeout(2000)
        assert "Passing" not in page.inner_text("body")

        page.goto(f"{deployment.url}/assets")
        expect(page.get_by_text("snowflake / datavault / records").first).to_be_visible()
        page.wait_for_timeout(2000)
        catalog = page.inner_text("body")
        assert "Freshness" not in catalog and "Passing" not in catalog, catalog[:2000]
    assert_picture(target)
