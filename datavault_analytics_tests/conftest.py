"""Real servers for the tests: started once per test session on free ports, stopped at its end.

- pg_server: a PostgreSQL cluster (fsync off) -> PostgresServer with `.dsn(dbname)` and
  `.create_database(name)`; each test module should create its own database.
- s3_endpoint: moto's S3 in a thread -> its endpoint URL, e.g. "http://127.0.0.1:41234"; any
  credentials work (LOCAL_S3_CREDENTIALS has the stack's).
- snowflake_server: fakesnow's HTTP server in a thread, reading `s3://` from s3_endpoint, its databases
  in a temporary folder -> SnowflakeServer with `.host`, `.port`, `.connection_args(database, schema)`
  and `.connect(database, schema)` (the real snowflake connector over http).

No mocks: the pipeline is tested against the same servers that the local stack runs.
"""

import os
from collections.abc import Iterator

import pytest

# Transient-failure retries stay on in tests (they are part of what is tested) but wait briefly.
os.environ.setdefault("DATAVAULT_MAX_RETRIES", "1")
os.environ.setdefault("DATAVAULT_RETRY_DELAY_SECONDS", "0.5")

from datavault_analytics.local_stack.postgres_server import PostgresServer
from datavault_analytics.local_stack.processes import free_port
from datavault_analytics.local_stack.s3_server import S3Server
from datavault_analytics.local_stack.snowflake_server import SnowflakeServer


def pytest_configure(config: pytest.Config) -> None:
    # fakesnow's own note to itself about an extra Arrow copy, raised on every query result.
    config.addinivalue_line("filterwarnings", "ignore:Arrow output on a DB-API result:UserWarning")


# `make test` spreads the tests over processes (pytest-xdist). These modules hold the longest tests (the real
# daemon, webserver and kills, minutes each): started first, they run beside the short ones instead of
# after them, which kept two cores idle for minutes at the end of a run.
LONGEST_FIRST = (
    "test_drift_daemon.py",
    "test_alerts_daemon.py",
    "test_daemon_and_webserver.py",
    "test_security.py",
    "test_concurrency.py",
    "test_backfill.py",
    "test_kills.py",
    "test_unreachable.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module, and of the other modules, is kept


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    folder = tmp_path_factory.mktemp("postgres")
    server = PostgresServer(folder / "data", free_port(), log_path=folder / "postgres.log", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with S3Server(port=0) as server:
        yield server.endpoint_url


@pytest.fixture(scope="session")
def snowflake_server(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[SnowflakeServer]:
    db_path = tmp_path_factory.mktemp("snowflake")
    with SnowflakeServer(db_path, s3_endpoint, port=0) as server:
        yield server


@pytest.fixture
def pipeline(pg_server, s3_endpoint, snowflake_server, monkeypatch):
    """A fresh, isolated pipeline (database, bucket, Snowflake schema) on the session's servers."""
    from datavault_analytics_tests.pipeline_harness import Pipeline

    return Pipeline(pg_server, s3_endpoint, snowflake_server, monkeypatch)
